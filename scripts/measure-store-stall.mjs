#!/usr/bin/env node
// Measures what a stalled Redis costs the affinity store (docs/affinity.md, security review F2): starts a
// redis-server, stops it with SIGSTOP, sends N lookups of PSK-stuffed hellos (1150 identities each, the
// most a 64 KiB hello carries) plus one lesson (SET) per connection through PoolAffinity, as the proxy
// does, and reports the Redis client's queue, heap, array buffers and RSS at the peak and after the
// stall bound. Needs redis-server; run after a build:
//
//   node --expose-gc scripts/measure-store-stall.mjs [dist-dir] [lookups]
//
// dist-dir defaults to this checkout's dist/ (point it at an older build to compare).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = resolvePath(process.argv[2] ?? fileURLToPath(new URL('../dist/', import.meta.url)));
const N = Number(process.argv[3] ?? 20000);
const { PoolAffinity } = await import(`${dist}/src/affinity/affinity-pool.js`);
const { AffinityStore } = await import(`${dist}/src/affinity/affinity-store.js`);
const { PoolState } = await import(`${dist}/src/routing/pool-state.js`);
const { pino } = await import('pino');

const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
process.on('exit', () => {
  redis.kill('SIGCONT');
  redis.kill();
});
// An out-of-memory abort (the old store with large N) skips 'exit' handlers: a watchdog ends Redis then.
spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -CONT ${redis.pid}; kill ${redis.pid}`], {
  stdio: 'ignore',
  detached: true,
}).unref();
await new Promise((resolve) => {
  let out = '';
  redis.stdout.on('data', (d) => {
    out += d;
    if (out.includes('Ready to accept connections')) resolve();
  });
});
redis.stdout.resume();

const url = `redis://127.0.0.1:${port}/0`;
const store = new AffinityStore(url, pino({ level: 'silent' }));
await store.firstAttempt;
const config = {
  name: 'https',
  balance: 'round-robin',
  affinity: 'tls',
  retries: 1,
  affinityTable: { size: 100_000, ttl: 3_600_000, sidTtl: 300_000 },
  affinityStore: { redis: url, timeout: 5, prefix: 'measure:' },
  servers: [1, 2].map((i) => ({ address: { text: `127.0.0.1:${5000 + i}`, host: '127.0.0.1', port: 5000 + i }, weight: 1, backup: false })),
};
const pool = { config, state: new PoolState(config) };
const affinity = new PoolAffinity(config, store);

// Internals read for the report only: the ioredis client and its socket.
const client = store['client'];
const gc = globalThis.gc ?? (() => {});
const mb = (n) => (n / 1024 / 1024).toFixed(1);
function report(when) {
  gc();
  const m = process.memoryUsage();
  console.log(
    `${when.padEnd(28)} commandQueue=${String(client.commandQueue.length).padStart(6)}  socket buffered=${mb(client.stream?.writableLength ?? 0).padStart(6)} MB  ` +
      `heapUsed=${mb(m.heapUsed).padStart(7)} MB  arrayBuffers=${mb(m.arrayBuffers).padStart(6)} MB  rss=${mb(m.rss).padStart(7)} MB`,
  );
}

const ids = Array.from({ length: 1150 }, (_, i) => {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(i + 1);
  return b;
});
report('Redis up, before');
redis.kill('SIGSTOP');
let done = 0;
let maxQueue = 0;
for (let i = 0; i < N; i++) {
  const sid = Buffer.alloc(32);
  sid.writeUInt32BE(i + 1);
  const hello = { sessionId: sid, supportedVersions: [0x0304, 0x0303], pskIdentities: ids };
  affinity.choose(hello, pool, (choice) => {
    done++;
    // The handshake teaches the session ID the server assigned: one SET per connection.
    const assigned = Buffer.from(sid).fill(7, 4);
    // Both field names: the flight of this checkout and of builds before the streaming parser.
    const flight = { version: 0x0303, sessionId: assigned, helloRetryRequest: false, newSessionTicketPrefixes: [], newSessionTickets: [] };
    affinity.observe(choice, flight, '127.0.0.1:5001');
  });
  // Like traffic: let timers (the 5 ms lookup timeout) run between batches.
  if (i % 500 === 499) {
    maxQueue = Math.max(maxQueue, client.commandQueue.length);
    await new Promise((r) => setImmediate(r));
  }
}
await new Promise((r) => setTimeout(r, 50));
report(`stopped, ${N} lookups`);
console.log(`  largest commandQueue seen: ${maxQueue}; lookups answered: ${done}; counters: ${JSON.stringify(affinity.stats())}`);
await new Promise((r) => setTimeout(r, 3000));
report('stopped, 3 s later');
redis.kill('SIGCONT');
await new Promise((r) => setTimeout(r, 3000));
report('continued, 3 s later');
store.close();
redis.kill();
await once(redis, 'exit');
process.exit(0);
