import test from 'ava';
import { ChunkPool } from '../../src/io/chunk-pool.js';

test('a returned buffer is handed out again; beyond maxFree returned buffers are dropped', (t) => {
  const pool = new ChunkPool(1024, 2);
  const a = pool.take();
  const b = pool.take();
  const c = pool.take();
  t.is(a.length, 1024);
  t.not(a, b);
  pool.give(a);
  pool.give(b);
  pool.give(c); // over maxFree: left to the GC
  t.is(pool.available, 2);
  const again = [pool.take(), pool.take()];
  t.true(again.includes(a) && again.includes(b));
  t.is(pool.available, 0);
  t.not(pool.take(), c, 'the dropped buffer is not kept');
});
