// Learned TLS affinity shared through a real redis-server (docs/affinity.md, `affinity_store`): a
// session learned by one twinport instance is routed right by another; a slow Redis costs at most the
// lookup timeout and a stopped one nothing but a counter — routing goes on from the local tables.
//
// Backends: three node:tls servers (TLS 1.2, distinct ticketKeys), so the first handshake already
// teaches the ticket key name (NewSessionTicket in the clear, RFC 5077 §3.3). Instance B lists the
// servers in the opposite order: its fallback pick differs from A's, and what Redis holds is the
// server's address text, which both instances share.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { generate } from 'selfsigned';
import { listenServer, startProxy, type RunningProxy } from '../helpers/proxy-harness.js';
import { startRedis } from '../helpers/redis-server.js';
import { testWithTools } from '../helpers/tools.js';

const PREFIX = 'twp-test:';

async function nodeServers(t: ExecutionContext): Promise<number[]> {
  const p = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
  return Promise.all(
    [0, 1, 2].map(async () => {
      const sockets = new Set<Socket>();
      const server = tls.createServer({ key: p.private, cert: p.cert, maxVersion: 'TLSv1.2', ticketKeys: randomBytes(48) }, (s) => {
        s.on('error', () => {});
        s.end('hello\n');
      });
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      const port = await listenServer(server);
      t.teardown(() => {
        for (const s of sockets) s.destroy();
        server.close();
      });
      return port;
    }),
  );
}

interface NodeResult {
  readonly reused: boolean;
  readonly session: Buffer | undefined;
  readonly answer: string;
}

/** One TLS connection through twinport: whether it resumed, the session it ended with, what the server said. */
function connect(port: number, session?: Buffer): Promise<NodeResult> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(session === undefined ? {} : { session }) });
    let latest: Buffer | undefined;
    let reused = false;
    let answer = '';
    c.on('session', (s: Buffer) => (latest = s));
    c.on('secureConnect', () => (reused = c.isSessionReused()));
    c.on('data', (d: Buffer) => (answer += d.toString('utf8')));
    c.on('error', reject);
    c.on('end', () => c.end());
    c.on('close', () => resolve({ reused, session: latest ?? session, answer }));
  });
}

async function instance(t: ExecutionContext, servers: readonly number[], redisPort: number): Promise<RunningProxy> {
  const proxy = await startProxy(`
listeners:
  - name: front
    bind: "127.0.0.1:0"
    timeouts: { peek: 5s, connect: 2s, idle: 30s }
    routes:
      - match: { protocol: tls }
        to: backends
pools:
  backends:
    balance: round-robin
    affinity: tls
    affinity_store: { redis: "redis://127.0.0.1:${redisPort}", timeout: 50ms, prefix: "${PREFIX}" }
    servers: [${servers.map((p) => `"127.0.0.1:${p}"`).join(', ')}]
`);
  t.teardown(() => proxy.stop());
  return proxy;
}

function stats(proxy: RunningProxy): Record<string, number> {
  const s = proxy.runtime.affinityStats()['backends'];
  if (s === undefined) throw new Error('no affinity stats');
  return { ...s };
}

/** The learned keys Redis holds, once A's fire-and-forget write has landed (each try is a round trip). */
async function storedKeys(redis: Redis, atLeast: number): Promise<string[]> {
  let keys: string[] = [];
  for (let i = 0; i < 200 && keys.length < atLeast; i++) keys = await redis.keys(`${PREFIX}*`);
  return keys;
}

testWithTools({ 'redis-server': 'redis-server' }, 'two instances share learned affinity through Redis; slow or stopped Redis only costs a counter', async (t) => {
  const redisServer = await startRedis(t);
  const redis = new Redis({ host: '127.0.0.1', port: redisServer.port, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  t.teardown(() => redis.disconnect());
  const servers = await nodeServers(t);
  const a = await instance(t, servers, redisServer.port);
  const b = await instance(t, [...servers].reverse(), redisServer.port);

  // A learns the session's ticket key name (and session ID) and writes them to Redis.
  const s1 = await connect(a.port());
  t.false(s1.reused);
  const keys = await storedKeys(redis, 1);
  t.true(keys.some((k) => k.startsWith(`${PREFIX}backends:tkt:`)), keys.join(' '));
  const learnedAt = await a.logs.waitForClose((l) => l['conn'] === 1);
  t.is(await redis.get(keys.find((k) => k.includes(':tkt:'))!), learnedAt['server'] as string);

  // B has never seen it: its local table misses, Redis answers, and the session resumes on A's server.
  for (let i = 0; i < 3; i++) t.true((await connect(b.port(), s1.session)).reused, `B resumption ${i + 1}`);
  t.like(stats(b), { hit: 3, storeHits: 1, learned: 0, storeErrors: 0, storeTimeouts: 0 });
  t.is((await b.logs.waitForClose((l) => l['conn'] === 1))['server'], learnedAt['server']);

  // A slow Redis: every client paused; B's lookup of a key it does not hold gives up after the timeout
  // and the connection goes on through the balance.
  const s2 = await connect(a.port());
  await storedKeys(redis, keys.length + 1);
  await redis.call('CLIENT', 'PAUSE', '5000', 'ALL');
  const slow = await connect(b.port(), s2.session);
  t.is(slow.answer, 'hello\n');
  t.like(stats(b), { storeTimeouts: 1 });
  await redis.call('CLIENT', 'UNPAUSE');

  // Redis stopped: both keep routing; sessions known locally still resume; lookups that would have
  // needed Redis are counted as store errors and fall back to the balance.
  await redisServer.stop();
  t.true((await connect(a.port(), s1.session)).reused, 'A: local table');
  t.true((await connect(b.port(), s1.session)).reused, 'B: cached from Redis earlier');
  // A fresh hello offering TLS 1.3 and 1.2 carries a random legacy ID: unknown locally, so Redis is asked.
  const before = stats(a)['storeErrors']!;
  t.is((await connect(a.port())).answer, 'hello\n');
  // The failed read, and the failed writes of what that handshake taught.
  t.true(stats(a)['storeErrors']! > before, JSON.stringify(stats(a)));
  // B never learned s2's server (its lookup timed out above): local miss, Redis down, balance.
  const onB = await connect(b.port(), s2.session);
  t.is(onB.answer, 'hello\n');
  t.true(stats(b)['storeErrors']! >= 1, JSON.stringify(stats(b)));
  for (const p of [a, b]) {
    const warned = await p.logs.waitFor((l) => l.msg === 'affinity store unavailable');
    t.is(warned['store'], `127.0.0.1:${redisServer.port}`);
  }
});
