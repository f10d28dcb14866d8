// ByteReader's limit-narrowing reads (enter/leave, wholeVec*, take): a length that lies rejects with the
// caller's reason, bytes not yet seen need more, and leaving a vector puts the reader after it.
import test from 'ava';
import { ByteReader, runParser } from '../../src/protocol/byte-reader.js';

const R = 'test.bad-length';

function run<T>(body: () => T): T | string {
  const res = runParser(body);
  return res.ok ? res.value : (res.reason ?? 'need-more');
}

test('enter narrows reads to the vector; leave skips what is left and restores the outer limit', (t) => {
  // <3 bytes: 01 02 03> then 09
  const r = new ByteReader(Buffer.from([0x00, 0x03, 1, 2, 3, 9]));
  const outer = r.enter16(R);
  t.is(r.remaining, 3);
  t.is(r.u8(R), 1);
  r.leave(outer);
  t.is(r.offset, 5);
  t.is(r.u8(R), 9);
  t.true(r.atEnd);
});

test('a read past the entered vector rejects even when the buffer goes on', (t) => {
  const bytes = Buffer.from([0x00, 0x01, 7, 8, 9]);
  t.is(
    run(() => {
      const r = new ByteReader(bytes);
      r.enter16(R);
      return r.u16(R);
    }),
    R,
  );
  // A vector longer than its enclosing one (limit 4), though the buffer holds it.
  t.is(run(() => new ByteReader(Buffer.from([0x00, 0x03, 7, 8, 9]), 0, 4).enter16(R)), R);
});

test('leaving a vector whose bytes have not all arrived needs more', (t) => {
  // Declared 4 bytes, 2 seen so far; the outer limit is unknown (a stream).
  const bytes = Buffer.from([0x00, 0x04, 1, 2]);
  t.is(
    run(() => {
      const r = new ByteReader(bytes, 0, Number.POSITIVE_INFINITY, bytes.length);
      const outer = r.enter16(R);
      r.leave(outer);
      return 'left';
    }),
    'need-more',
  );
});

test('wholeVec: the length must equal what is left, neither more nor less', (t) => {
  const exact = Buffer.from([0x00, 0x02, 5, 6]);
  t.is(run(() => new ByteReader(exact).wholeVec16(R)), 2);
  t.is(run(() => new ByteReader(Buffer.from([0x00, 0x01, 5, 6])).wholeVec16(R)), R);
  t.is(run(() => new ByteReader(Buffer.from([0x00, 0x03, 5, 6])).wholeVec16(R)), R);
  t.is(run(() => new ByteReader(Buffer.from([0x01, 5])).wholeVec8(R)), 1);
  t.is(run(() => new ByteReader(Buffer.from([0x02, 5])).wholeVec8(R)), R);
});

test('take returns where the bytes start and moves past them', (t) => {
  const r = new ByteReader(Buffer.from([1, 2, 3, 4, 5]), 1);
  t.is(r.take(3, R), 1);
  t.is(r.offset, 4);
  t.is(run(() => r.take(2, R)), R);
});
