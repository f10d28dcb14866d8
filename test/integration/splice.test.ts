// The splice moves bytes, nothing else: each direction's FIN is forwarded on its own (half-close), large
// transfers arrive byte-identical, a client that stops reading stops the server (backpressure instead of
// buffering), and IPv6 and Unix-socket servers work like IPv4 ones.
import test from 'ava';
import { createHash, type Hash } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  listenServer,
  sha256,
  startBackend,
  startBackendAt,
  startProxy,
  type Backend,
  type RunningProxy,
} from '../helpers/proxy-harness.js';

const MiB = 1024 * 1024;

// A full collection before each memory reading, so freed chunks do not count as held ones (the flag can
// be set at run time; a fresh context then exposes `gc`).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Two full collections a turn apart: freed buffers' backing stores are released asynchronously. */
async function collect(): Promise<void> {
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
}
const CHUNK = 64 * 1024;

/** Every connection is plaintext HTTP/1 (a request head first), routed to pool `web`. */
async function proxyTo(server: string, bind = '127.0.0.1:0'): Promise<RunningProxy> {
  return startProxy(`
listeners:
  - name: main
    bind: "${bind}"
    timeouts: { peek: 300ms, connect: 300ms, idle: 30s }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["${server}"]
`);
}

const HEAD = Buffer.from('POST /stream HTTP/1.1\r\nHost: splice.example\r\n\r\n');

/**
 * A deterministic byte stream of `total` bytes: a 64 KiB block derived from `seed`, with the chunk's
 * index stamped in front so no two chunks are alike (a reordering or a repeated chunk changes the hash).
 * Yields fresh buffers: a socket keeps a reference to each until it is written.
 */
function* pattern(total: number, seed: string): Generator<Buffer> {
  const block = Buffer.alloc(CHUNK);
  let h = createHash('sha512').update(seed).digest();
  for (let at = 0; at < CHUNK; at += h.length) {
    h.copy(block, at);
    h = createHash('sha512').update(h).digest();
  }
  for (let i = 0, at = 0; at < total; i++, at += CHUNK) {
    const b = Buffer.from(block.subarray(0, Math.min(CHUNK, total - at)));
    if (b.length >= 4) b.writeUInt32BE(i, 0);
    yield b;
  }
}

/** Writes `total` pattern bytes with backpressure; resolves with their sha256 (does not end). */
async function sendPattern(socket: Socket, total: number, seed: string): Promise<string> {
  const hash = createHash('sha256');
  for (const b of pattern(total, seed)) {
    hash.update(b);
    if (socket.destroyed) throw new Error('socket destroyed while sending');
    if (!socket.write(b)) await new Promise((r) => socket.once('drain', r));
  }
  return hash.digest('hex');
}

/** Hashes everything a socket receives from now on (optionally after skipping `skip` bytes). */
function hashIncoming(socket: Socket, skip = 0): { readonly done: Promise<{ sha: string; bytes: number }> } {
  const hash: Hash = createHash('sha256');
  let bytes = 0;
  let toSkip = skip;
  socket.on('data', (c: Buffer) => {
    if (toSkip > 0) {
      const n = Math.min(toSkip, c.length);
      toSkip -= n;
      c = c.subarray(n);
    }
    bytes += c.length;
    hash.update(c);
  });
  return { done: new Promise((resolve) => socket.once('end', () => resolve({ sha: hash.digest('hex'), bytes }))) };
}

function connect(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: true, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const closedOf = (s: Socket): Promise<void> => new Promise((r) => (s.closed ? r() : s.once('close', () => r())));

test('half-close: the client sends and FINs, the backend answers after the FIN, the client gets all of it', async (t) => {
  const answer = Buffer.concat([...pattern(MiB + 123, 'answer')]);
  const backend = await startBackend('late', (socket) => {
    // Answer only once the client's FIN has arrived: the proxy must not close the pair on one FIN.
    socket.on('end', () => socket.end(answer));
  });
  const proxy = await proxyTo(backend.address);
  try {
    const s = await connect(proxy.port());
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    const ended = new Promise((r) => s.once('end', r));
    s.end(HEAD);
    await ended;
    t.is(sha256(Buffer.concat(got)), sha256(answer));
    const rec = await backend.connection(1);
    await rec.closed;
    t.true(rec.ended);
    t.is(Buffer.concat(rec.received).toString(), HEAD.toString());
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(line['bytesIn'], HEAD.length);
    t.is(line['bytesOut'], answer.length);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('half-close, reversed: the server FINs first, the client keeps sending, the backend gets it all', async (t) => {
  const backend = await startBackend('banner', (socket) => socket.once('data', () => socket.end('bye for now\n')));
  const proxy = await proxyTo(backend.address);
  try {
    const s = await connect(proxy.port());
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    const ended = new Promise((r) => s.once('end', r));
    s.write(HEAD);
    await ended;
    t.is(Buffer.concat(got).toString(), 'bye for now\n');
    // The server's half is closed; ours is not: keep sending, then FIN.
    const more = await sendPattern(s, 3 * MiB + 7, 'after-fin');
    s.end();
    await closedOf(s);
    const rec = await backend.connection(1);
    await rec.closed;
    t.true(rec.ended, 'the client FIN reached the backend');
    const received = Buffer.concat(rec.received);
    t.is(received.subarray(0, HEAD.length).toString(), HEAD.toString());
    t.is(sha256(received.subarray(HEAD.length)), more);
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(line['bytesIn'], received.length);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('100 MiB each way at once arrives byte-identical (sha256 at both ends)', async (t) => {
  const SIZE = 100 * MiB;
  let backendSent!: Promise<string>;
  let backendGot!: Promise<{ sha: string; bytes: number }>;
  // A plain server rather than startBackend, which ends its side as soon as the client's FIN arrives:
  // here the upload may finish first, and the download must still run to its end.
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    backendGot = hashIncoming(socket, HEAD.length).done;
    backendSent = sendPattern(socket, SIZE, 'down').then((sha) => {
      socket.end();
      return sha;
    });
  });
  const backend = { address: `127.0.0.1:${await listenServer(server)}`, close: () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  } };
  const proxy = await proxyTo(backend.address);
  try {
    const s = await connect(proxy.port());
    const clientGot = hashIncoming(s).done;
    s.write(HEAD);
    const clientSent = await sendPattern(s, SIZE, 'up');
    s.end();
    const [down, up] = await Promise.all([clientGot, backendGot]);
    t.is(up.bytes, SIZE);
    t.is(up.sha, clientSent);
    t.is(down.bytes, SIZE);
    t.is(down.sha, await backendSent);
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(line['bytesIn'], HEAD.length + SIZE);
    t.is(line['bytesOut'], SIZE);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('12 downloads at once, clients reading in bursts: every stream byte-identical (read buffers are shared and recycled)', async (t) => {
  // twinport reads every server into one shared buffer and copies big reads into recycled buffers that
  // return to a pool when their write completes (src/io/chunk-pool.ts). Slow, bursty readers keep
  // writes pending while other connections read, so a buffer reused too early would corrupt a stream.
  const N = 12;
  const SIZE = 16 * MiB;
  const sent = new Map<string, Promise<string>>();
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('data', (head: Buffer) => {
      const seed = /seed=(\w+)/.exec(head.toString('latin1'))?.[1] ?? 'none';
      sent.set(seed, sendPattern(socket, SIZE, seed).then((sha) => (socket.end(), sha)));
    });
  });
  const backendAddress = `127.0.0.1:${await listenServer(server)}`;
  const proxy = await proxyTo(backendAddress);
  try {
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const seed = `dl${i}`;
        const s = await connect(proxy.port());
        const got = hashIncoming(s).done;
        // Bursty reader: pause for a few ms every ~1 MiB so the proxy's writes to it back up.
        let sinceBreak = 0;
        s.on('data', (c: Buffer) => {
          sinceBreak += c.length;
          if (sinceBreak > MiB) {
            sinceBreak = 0;
            s.pause();
            setTimeout(() => s.resume(), 2 + (i % 5));
          }
        });
        s.write(`GET /?seed=${seed} HTTP/1.1\r\nHost: splice.example\r\n\r\n`);
        s.end();
        return { seed, got: await got };
      }),
    );
    for (const r of results) {
      t.is(r.got.bytes, SIZE, r.seed);
      t.is(r.got.sha, await sent.get(r.seed)!, r.seed);
    }
  } finally {
    await proxy.stop();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

// Serial (ava runs serial tests first, alone): the memory reading must not see other tests' buffers.
test.serial('backpressure: a client that does not read stops a backend writing 50 MiB; nothing piles up in twinport', async (t) => {
  const SIZE = 50 * MiB;
  // The backend writes with backpressure and counts what its socket took; `flushed` is what left its
  // user-space buffer for the kernel (and so for twinport).
  const progress = { accepted: 0, writableLength: 0, done: false };
  let sent!: Promise<string>;
  const backend = await startBackend('flood', (socket) => {
    socket.once('data', () => {
      const hash = createHash('sha256');
      sent = (async () => {
        for (const b of pattern(SIZE, 'flood')) {
          hash.update(b);
          progress.accepted += b.length;
          if (!socket.write(b)) await new Promise((r) => socket.once('drain', r));
        }
        progress.done = true;
        socket.end();
        return hash.digest('hex');
      })();
    });
  });
  const proxy = await proxyTo(backend.address);
  try {
    const s = await connect(proxy.port());
    s.pause();
    await collect();
    const before = process.memoryUsage().arrayBuffers;
    s.write(HEAD);
    // A stall is the absence of progress, so it can only be seen by waiting: sample until the backend
    // made no progress for 20 samples in a row (or the flood got through, which fails below).
    let last = -1;
    let still = 0;
    for (let i = 0; i < 2000 && still < 20 && !progress.done; i++) {
      await new Promise((r) => setTimeout(r, 10));
      still = progress.accepted === last ? still + 1 : 0;
      last = progress.accepted;
    }
    await collect();
    const growth = process.memoryUsage().arrayBuffers - before;
    t.false(progress.done, 'the backend could not write 50 MiB to a client that reads nothing');
    // Kernel socket buffers on the way (backend send, twinport receive, twinport send, client receive)
    // hold a few MiB on loopback; twinport itself holds at most a high-water mark per direction.
    t.true(progress.accepted < 24 * MiB, `backend got ${(progress.accepted / MiB).toFixed(1)} MiB out`);
    // Loose on purpose (other allocations of this process count too): buffering the flood would show
    // as at least 50 MiB minus what the kernel holds, i.e. well over 30 MiB.
    t.true(growth < 20 * MiB, `arrayBuffers grew ${(growth / MiB).toFixed(1)} MiB`);
    t.log(`stalled after ${(progress.accepted / MiB).toFixed(1)} MiB; arrayBuffers +${(growth / MiB).toFixed(1)} MiB`);
    // Reading again releases the flood, all of it, intact.
    const got = hashIncoming(s).done;
    s.resume();
    const { sha, bytes } = await got;
    t.is(bytes, SIZE);
    t.is(sha, await sent);
    s.end();
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(line['bytesOut'], SIZE);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

/** Sends HEAD + a body through the proxy and checks the backend got exactly that and the client its tag. */
async function roundTrip(proxy: RunningProxy, backend: Backend, clientHost: string): Promise<{ answer: string; received: Buffer }> {
  const s = await connect(proxy.port(), clientHost);
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.end(Buffer.concat([HEAD, Buffer.from('body bytes')]));
  await closedOf(s);
  const rec = await backend.connection(1);
  await rec.closed;
  return { answer: Buffer.concat(got).toString(), received: Buffer.concat(rec.received) };
}

// Tests are declared synchronously, so ask the interface table (a listen attempt is asynchronous).
const hasIPv6 = Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address === '::1'));
(hasIPv6 ? test : test.skip)(`IPv6: [::1] listener and [::1] server${hasIPv6 ? '' : ' (skipped: ::1 is not available here)'}`, async (t) => {
  const backend = await startBackendAt('v6', { host: '::1' });
  const proxy = await proxyTo(backend.address, '[::1]:0');
  try {
    const { answer, received } = await roundTrip(proxy, backend, '::1');
    t.is(answer, 'v6\n');
    t.is(received.toString(), `${HEAD.toString()}body bytes`);
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.regex(String(line['client']), /^\[::1\]:\d+$/);
    t.is(line['server'], backend.address);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('Unix socket server: unix:/path in a pool', async (t) => {
  const path = join(tmpdir(), `twinport-splice-${process.pid}-${Date.now()}.sock`);
  const backend = await startBackendAt('unix', { path });
  const proxy = await proxyTo(backend.address);
  try {
    t.is(backend.address, `unix:${path}`);
    const { answer, received } = await roundTrip(proxy, backend, '127.0.0.1');
    t.is(answer, 'unix\n');
    t.is(received.toString(), `${HEAD.toString()}body bytes`);
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(line['server'], `unix:${path}`);
    t.is(proxy.runtime.activeConnections, 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});
