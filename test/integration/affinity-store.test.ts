// The Redis affinity store in-process (src/affinity/affinity-store.ts) against a real redis-server that is
// stopped with SIGSTOP: the connection stays up and nothing answers. What ioredis holds must stay
// bounded however many lookups and lessons arrive (security review F2), the connection must be dropped
// and its queue flushed once Redis has been silent for the stall bound, and the store must come back.
import test, { type ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { PoolConfig, ServerConfig } from '../../src/config/types.js';
import { PoolAffinity } from '../../src/affinity/affinity-pool.js';
import { AffinityStore, MAX_COMMANDS_IN_FLIGHT, type StoreCounters } from '../../src/affinity/affinity-store.js';
import { startRedis } from '../helpers/redis-server.js';
import { testWithTools } from '../helpers/tools.js';

const NEEDS = { 'redis-server': 'redis-server' };
const silent = pino({ level: 'silent' });

function counters(): StoreCounters {
  return { storeErrors: 0, storeTimeouts: 0, storeSkipped: 0 };
}

async function openStore(t: ExecutionContext, port: number, opts: { stallMs?: number } = {}): Promise<AffinityStore> {
  const store = new AffinityStore(`redis://127.0.0.1:${port}/0`, silent, opts);
  t.teardown(() => store.close());
  await store.firstAttempt;
  await until(() => store.ready, 'the store connects');
  return store;
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Four keys, the most a hello can look up (routing/affinity.ts MAX_HELLO_KEYS). */
function helloKeys(i: number): string[] {
  return [`t:tkt:${i}a`, `t:tkt:${i}b`, `t:tkt:${i}c`, `t:sid:${i}`];
}

testWithTools(NEEDS, 'a stopped Redis: ioredis holds at most MAX_COMMANDS_IN_FLIGHT commands, the rest are skipped and counted', async (t) => {
  const redis = await startRedis(t);
  // A long stall bound, so that only the in-flight cap is at work here.
  const store = await openStore(t, redis.port, { stallMs: 60_000 });
  const c = counters();
  t.deepEqual(await store.get(helloKeys(0), 1000, c), [null, null, null, null]);
  t.is(store.inFlight, 0);

  redis.pause();
  const reads: Promise<unknown>[] = [];
  const rounds = 3000;
  for (let i = 0; i < rounds; i++) {
    reads.push(store.get(helloKeys(i), 5, c));
    store.set(`t:sid:${i}`, '127.0.0.1:1', 60_000, c);
    store.unlearn(`t:tkt:${i}`, '127.0.0.1:1', c);
  }
  // Without the cap every one of the 9000 commands stays queued in ioredis until Redis answers.
  t.is(store.inFlight, MAX_COMMANDS_IN_FLIGHT);
  t.is(c.storeSkipped, 3 * rounds - MAX_COMMANDS_IN_FLIGHT);
  // Every read settles (without the store) after its timeout, although its command is still queued.
  t.true((await Promise.all(reads)).every((v) => v === undefined));
  t.true(c.storeTimeouts > 0 && c.storeTimeouts <= MAX_COMMANDS_IN_FLIGHT, JSON.stringify(c));
  // Rejected promises (commandTimeout) would not release them either: the count is ioredis's own queue.
  for (let i = 0; i < 500; i++) store.set(`t:more:${i}`, '127.0.0.1:1', 60_000, c);
  t.is(store.inFlight, MAX_COMMANDS_IN_FLIGHT);
  t.is(c.storeErrors, 0, 'the connection itself never failed');

  // Redis continues: it answers what was queued, and the store is usable again.
  redis.resume();
  await until(() => store.inFlight === 0, 'ioredis drains its queue');
  const after = counters();
  t.deepEqual(await store.get(['t:sid:1', 't:sid:2999', 't:nothing'], 1000, after), ['127.0.0.1:1', null, null]);
  t.deepEqual(after, counters());
});

testWithTools(NEEDS, 'a Redis silent for the stall bound: the connection is dropped, its queue flushed, and the store comes back', async (t) => {
  const redis = await startRedis(t);
  const store = await openStore(t, redis.port, { stallMs: 300 });
  const c = counters();
  redis.pause();
  for (let i = 0; i < 200; i++) store.set(`t:sid:${i}`, '127.0.0.1:1', 60_000, c);
  t.is(store.inFlight, 200);
  // Redis stays stopped: no reply will ever shift those out; the socket timeout flushes them.
  await until(() => store.inFlight === 0 && !store.ready, 'the queue is flushed while Redis is still stopped');
  t.true(c.storeErrors >= 200, JSON.stringify(c));
  // While it reconnects (to a Redis that still does not answer), nothing is queued at all.
  const during = counters();
  t.is(await store.get(['t:sid:1'], 5, during), undefined);
  t.like(during, { storeErrors: 1, storeSkipped: 0 });
  t.is(store.inFlight, 0);

  redis.resume();
  await until(() => store.ready, 'the store reconnects');
  // Usable again. (The flushed SETs may still have landed: their bytes were in Redis's socket buffer
  // before the client gave up, and a fire-and-forget write with a TTL landing late is harmless.)
  const back = counters();
  store.set('t:back', '127.0.0.1:2', 60_000, back);
  t.deepEqual(await store.get(['t:back', 't:nothing'], 1000, back), ['127.0.0.1:2', null]);
  t.deepEqual(back, counters());
});

function serverAt(port: number): ServerConfig {
  return { address: { text: `127.0.0.1:${port}`, host: '127.0.0.1', port }, weight: 1, backup: false };
}

testWithTools(NEEDS, 'session IDs are written to Redis with sid_ttl, ticket key names with ttl (F10)', async (t) => {
  const redis = await startRedis(t);
  const store = await openStore(t, redis.port);
  const config: PoolConfig = {
    name: 'p',
    balance: 'round-robin',
    affinity: 'tls',
    retries: 0,
    affinityTable: { size: 100, ttl: 3_600_000, sidTtl: 300_000 },
    affinityStore: { redis: `redis://127.0.0.1:${redis.port}/0`, timeout: 50, prefix: 'ttl-test:' },
    servers: [serverAt(5001)],
  };
  const affinity = new PoolAffinity(config, store);
  const sid = Buffer.alloc(32, 0x31);
  const name = Buffer.alloc(16, 0x32);
  affinity.observe(
    { hello: { sessionId: Buffer.alloc(0) } },
    { version: 0x0303, sessionId: sid, helloRetryRequest: false, newSessionTicketPrefixes: [name] },
    '127.0.0.1:5001',
  );
  const client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 0 });
  t.teardown(() => client.disconnect());
  const sidKey = `ttl-test:p:sid:${sid.toString('hex')}`;
  const tktKey = `ttl-test:p:tkt:${name.toString('hex')}`;
  let sidTtl = -2;
  for (let i = 0; i < 200 && sidTtl < 0; i++) sidTtl = await client.pttl(sidKey);
  const tktTtl = await client.pttl(tktKey);
  t.true(sidTtl > 290_000 && sidTtl <= 300_000, `sid PTTL ${sidTtl}`);
  t.true(tktTtl > 3_590_000 && tktTtl <= 3_600_000, `tkt PTTL ${tktTtl}`);
  t.is(await client.get(sidKey), '127.0.0.1:5001');
});
