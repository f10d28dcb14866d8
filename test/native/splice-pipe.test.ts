// The native engine's splice(2) path (docs/native.md): bulk moves socket → pipe → socket. Each test sets
// the addon's mode (this file's worker has an addon of its own) and proves the path was taken with the
// addon's pipe counters, then checks what both ends saw: every byte, sha256-identical, FIN only after the
// pipe emptied (both half-close orders), a reader that stops holds at most a pipe's worth in twinport,
// resets mid-splice end the pair with the right reason, and no descriptor (pipes included) outlives it.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import net, { type Server, type Socket } from 'node:net';
import { NATIVE, spliceSetting, type SpliceMode } from '../../src/io/native.js';
import { chooseIoEngine } from '../../src/io/io-engine.js';
import { sha256, startProxy, type RunningProxy } from '../helpers/proxy-harness.js';

const engine = NATIVE.engine;

function spliceTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (engine !== undefined) test.serial(title, fn);
  else if (process.env['CI'] === 'true') test(title, (t) => t.fail(`native engine unavailable under CI: ${NATIVE.why}`));
  else test.skip(`${title} — needs the native addon (apt-get install -y g++ make python3, then npm install): ${NATIVE.why}`, () => {});
}

const MiB = 1024 * 1024;
/** A pipe's default capacity: what one blocked direction may hold in twinport. */
const PIPE_CAPACITY = 64 * 1024;

const openFds = (): number => readdirSync('/proc/self/fd').length;
function openPipes(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:')) n++;
    } catch {
      // closed between the listing and the readlink
    }
  }
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Descriptors close at once, uv handles a loop turn later: wait until both settle, then compare. */
async function settled(t: ExecutionContext, fdsBefore: number, pipesBefore: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((engine!.live() !== 0 || openFds() > fdsBefore) && Date.now() < deadline) await sleep(20);
  t.is(engine!.live(), 0, 'no pair left in the addon');
  t.is(engine!.spliceStats().pipesOpen, 0, 'no pipe left open');
  t.true(openPipes() <= pipesBefore, `pipe descriptors: ${openPipes()} now, ${pipesBefore} before`);
  t.true(openFds() <= fdsBefore, `descriptors: ${openFds()} now, ${fdsBefore} before`);
}

/** The live pair's counts (one pair at a time in these tests): slots are small integers. */
function livePairCounts(): ReturnType<NonNullable<typeof engine>['countsOf']> {
  for (let slot = 0; slot < 4096; slot++) {
    const c = engine!.countsOf(slot);
    if (c !== undefined) return c;
  }
  return undefined;
}

interface Peer {
  socket: Socket;
  data: Buffer[];
  bytes: number;
  ended: boolean;
  error: string | undefined;
  closed: Promise<void>;
}

function track(socket: Socket): Peer {
  let done!: () => void;
  const p: Peer = { socket, data: [], bytes: 0, ended: false, error: undefined, closed: new Promise((r) => (done = r)) };
  socket.on('data', (b: Buffer) => {
    p.data.push(b);
    p.bytes += b.length;
  });
  socket.on('end', () => (p.ended = true));
  socket.on('error', (e: NodeJS.ErrnoException) => (p.error = e.code ?? e.message));
  socket.on('close', () => done());
  return p;
}

interface Rig {
  proxy: RunningProxy;
  server: Server;
  /** The backend's side of the n-th connection. */
  backend(n: number): Promise<Peer>;
  connect(): Promise<Peer>;
  close(): Promise<void>;
}

/** A backend that only records (each test drives both ends itself) behind a native-engine proxy. */
async function rig(): Promise<Rig> {
  const peers: Peer[] = [];
  const waiting = new Map<number, (p: Peer) => void>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const p = track(s);
    peers.push(p);
    waiting.get(peers.length)?.(p);
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
  const proxy = await startProxy(`
io_engine: native
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 2s, connect: 5s, idle: 60s }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["127.0.0.1:${port}"]
`);
  return {
    proxy,
    server,
    backend: (n) => (peers[n - 1] !== undefined ? Promise.resolve(peers[n - 1]!) : new Promise((r) => waiting.set(n, r))),
    connect: () =>
      new Promise((resolve, reject) => {
        const s = net.connect({ port: proxy.port(), host: '127.0.0.1', allowHalfOpen: true, noDelay: true }, () => resolve(track(s)));
        s.once('error', reject);
      }),
    close: async () => {
      for (const p of peers) p.socket.destroy();
      await proxy.stop();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const head = (path: string): Buffer => Buffer.from(`POST ${path} HTTP/1.1\r\nHost: splice.example\r\n\r\n`);

/** Writes `data` in 1 MiB pieces, honouring backpressure; resolves when all was handed to the kernel. */
async function writeAll(s: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += MiB) {
    if (!s.write(data.subarray(off, off + MiB))) await new Promise((r) => s.once('drain', r));
  }
}

function withMode(mode: SpliceMode): void {
  const set = engine!.setSplice(mode);
  if (set.why !== undefined) throw new Error(`splice(2) unusable here: ${set.why}`);
}

for (const mode of ['auto', 'always'] as const) {
  spliceTest(`${mode}: 64 MiB each way at once through the pipes, sha256-identical, close counts exact`, async (t) => {
    withMode(mode);
    const r = await rig();
    const fds = openFds();
    const pipes = openPipes();
    const stats = engine!.spliceStats();
    try {
      const up = Buffer.concat([head('/up'), randomBytes(64 * MiB)]);
      const down = randomBytes(64 * MiB);
      const c = await r.connect();
      c.socket.write(up.subarray(0, head('/up').length));
      const b = await r.backend(1);
      await Promise.all([
        writeAll(c.socket, up.subarray(head('/up').length)).then(() => c.socket.end()),
        writeAll(b.socket, down).then(() => b.socket.end()),
      ]);
      await until(() => c.ended && b.ended, 'both FINs');
      t.is(b.bytes, up.length);
      t.is(sha256(Buffer.concat(b.data)), sha256(up), 'client → server identical');
      t.is(c.bytes, down.length);
      t.is(sha256(Buffer.concat(c.data)), sha256(down), 'server → client identical');
      const close = await r.proxy.logs.waitForClose();
      t.is(close['reason'], 'done');
      t.is(close['bytesIn'], up.length);
      t.is(close['bytesOut'], down.length);
      const after = engine!.spliceStats();
      t.is(after.pipesOpened - stats.pipesOpened, 2, 'one pipe per direction');
      // auto starts each direction on recv/send and switches after a full 64 KiB read.
      t.true(after.splicedBytes - stats.splicedBytes > up.length + down.length - 4 * MiB, `spliced ${after.splicedBytes - stats.splicedBytes}`);
      c.socket.destroy();
      await settled(t, fds, pipes);
    } finally {
      await r.close();
    }
  });
}

spliceTest('auto: a small exchange stays on recv/send (no pipe), off never opens one', async (t) => {
  for (const mode of ['auto', 'off'] as const) {
    withMode(mode);
    const r = await rig();
    const stats = engine!.spliceStats();
    try {
      const c = await r.connect();
      c.socket.write(head('/small'));
      const b = await r.backend(1);
      await until(() => b.bytes === head('/small').length, 'the request');
      b.socket.end('a small answer');
      await until(() => c.ended, 'the answer');
      c.socket.end();
      t.is(Buffer.concat(c.data).toString(), 'a small answer');
      t.is((await r.proxy.logs.waitForClose())['reason'], 'done');
      // off: also for a bulk one.
      if (mode === 'off') {
        const c2 = await r.connect();
        c2.socket.write(head('/bulk'));
        const b2 = await r.backend(2);
        const down = randomBytes(8 * MiB);
        await writeAll(b2.socket, down);
        b2.socket.end();
        await until(() => c2.ended, 'the bulk answer');
        t.is(sha256(Buffer.concat(c2.data)), sha256(down));
        c2.socket.end();
      }
      t.is(engine!.spliceStats().pipesOpened, stats.pipesOpened, `${mode}: no pipe`);
    } finally {
      await r.close();
    }
  }
});

// Both orders: the FIN that arrives while its direction's bytes wait in the pipe must follow them, and the
// other direction keeps flowing meanwhile.
for (const first of ['client', 'server'] as const) {
  spliceTest(`half-close, ${first} FIN first while its bytes still wait in the pipe: FIN follows the last byte`, async (t) => {
    withMode('always');
    const r = await rig();
    const fds = openFds();
    const pipes = openPipes();
    try {
      const c = await r.connect();
      c.socket.write(head('/half'));
      const b = await r.backend(1);
      await until(() => b.bytes === head('/half').length, 'the request');
      const [sender, receiver] = first === 'client' ? [c, b] : [b, c];
      const before = receiver.bytes;
      receiver.socket.pause();
      const bulk = randomBytes(16 * MiB);
      // Not awaited as a whole: the receiver is paused, so this stalls until it resumes.
      const written = writeAll(sender.socket, bulk).then(() => sender.socket.end());
      await until(() => {
        const n = livePairCounts();
        return n !== undefined && (first === 'client' ? n.clientRead - n.serverWritten : n.serverRead - n.clientWritten) > 0;
      }, 'bytes waiting in the pipe');
      await sleep(100);
      const n = livePairCounts()!;
      const waiting = first === 'client' ? n.clientRead - n.serverWritten : n.serverRead - n.clientWritten;
      t.true(waiting > 0 && waiting <= PIPE_CAPACITY, `bytes in the pipe: ${waiting}`);
      t.false(receiver.ended, 'no FIN before the bytes');
      // The other direction is not held up by the blocked one.
      receiver.socket.write('the other way');
      await until(() => Buffer.concat(sender.data).toString().endsWith('the other way'), 'the other direction');
      receiver.socket.resume();
      await written;
      await until(() => receiver.ended, 'the FIN');
      t.is(receiver.bytes - before, bulk.length);
      t.is(sha256(Buffer.concat(receiver.data).subarray(before)), sha256(bulk));
      t.false(sender.ended, 'the other direction is still open');
      receiver.socket.end('last words');
      await until(() => sender.ended, 'the second FIN');
      t.true(Buffer.concat(sender.data).toString().endsWith('the other waylast words'));
      const close = await r.proxy.logs.waitForClose();
      t.is(close['reason'], 'done');
      c.socket.destroy();
      await settled(t, fds, pipes);
    } finally {
      await r.close();
    }
  });
}

spliceTest('a reader that stops: the pipe holds at most its capacity, the sender is held back, then every byte arrives', async (t) => {
  withMode('auto');
  const r = await rig();
  const fds = openFds();
  const pipes = openPipes();
  try {
    const c = await r.connect();
    c.socket.write(head('/stop'));
    const b = await r.backend(1);
    await until(() => b.bytes === head('/stop').length, 'the request');
    // The stream is one random MiB repeated: each arriving chunk is checked at its offset, nothing kept.
    const piece = randomBytes(MiB);
    const total = 128 * MiB;
    let got = 0;
    let wrong = 0;
    c.socket.removeAllListeners('data');
    c.socket.on('data', (d: Buffer) => {
      for (let off = 0; off < d.length; ) {
        const at = (got + off) % MiB;
        const n = Math.min(d.length - off, MiB - at);
        if (!d.subarray(off, off + n).equals(piece.subarray(at, at + n))) wrong++;
        off += n;
      }
      got += d.length;
    });
    c.socket.pause();
    let offered = 0;
    let blocked = false;
    // The backend writes until its socket says stop: Node never queues more than a piece.
    const pump = (): void => {
      while (offered < total) {
        offered += piece.length;
        if (!b.socket.write(piece)) {
          blocked = true;
          b.socket.once('drain', () => {
            blocked = false;
            pump();
          });
          return;
        }
      }
      b.socket.end();
    };
    pump();
    let last = -1;
    await until(() => {
      const n = livePairCounts();
      if (n === undefined || !blocked) return false;
      const stalled = n.serverRead === last;
      last = n.serverRead;
      return stalled;
    }, 'the stall', 30_000);
    await sleep(300);
    const n = livePairCounts()!;
    t.true(n.serverRead - n.clientWritten <= PIPE_CAPACITY, `held in twinport: ${n.serverRead - n.clientWritten}`);
    t.true(n.serverRead < 64 * MiB, `the sender is held back: ${n.serverRead} of ${total} read`);
    t.true(blocked && offered < total, 'the backend was stopped by backpressure');
    t.is(engine!.spliceStats().pipesOpen, 1, 'one pipe: only the bulk direction switched');
    c.socket.resume();
    await until(() => c.ended, 'the end of the stream', 60_000);
    t.is(got, total);
    t.is(wrong, 0, 'every byte in order');
    c.socket.end();
    t.is((await r.proxy.logs.waitForClose())['reason'], 'done');
    c.socket.destroy();
    await settled(t, fds, pipes);
  } finally {
    await r.close();
  }
});

for (const who of ['client', 'server'] as const) {
  spliceTest(`RST mid-splice from the ${who}: ${who}-reset, the other side is reset too, no descriptor left`, async (t) => {
    withMode('always');
    const r = await rig();
    const fds = openFds();
    const pipes = openPipes();
    try {
      const c = await r.connect();
      c.socket.write(head('/rst'));
      const b = await r.backend(1);
      await until(() => b.bytes === head('/rst').length, 'the request');
      // Bulk towards the side that resets, which stopped reading: bytes sit in the pipe when it goes.
      const [victim, sender] = who === 'client' ? [c, b] : [b, c];
      victim.socket.pause();
      void writeAll(sender.socket, randomBytes(16 * MiB)).catch(() => {});
      await until(() => {
        const n = livePairCounts();
        return n !== undefined && (who === 'client' ? n.serverRead : n.clientRead) > MiB && engine!.spliceStats().pipesOpen > 0;
      }, 'bulk moving');
      victim.socket.resetAndDestroy();
      const close = await r.proxy.logs.waitForClose();
      t.is(close['reason'], `${who}-reset`);
      t.regex(String(close['detail']), /^E[A-Z]+$/);
      await sender.closed;
      t.regex(String(sender.error), /ECONNRESET|EPIPE/, 'the other side was reset');
      await settled(t, fds, pipes);
    } finally {
      await r.close();
    }
  });
}

// The FIN bounds (timeouts.client_fin / server_fin) start when a FIN is read: through a pipe as well.
for (const first of ['client', 'server'] as const) {
  spliceTest(`always: the ${first}'s FIN read through its pipe starts ${first}_fin while bytes keep flowing the other way`, async (t) => {
    withMode('always');
    const accepted: Socket[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      accepted.push(s);
      s.on('error', () => {});
      s.once('data', () => {
        if (first === 'server') s.end('bye');
        else {
          const tick = setInterval(() => (s.destroyed ? clearInterval(tick) : s.write('tick')), 50);
          s.on('close', () => clearInterval(tick));
        }
      });
    });
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
    const proxy = await startProxy(`
io_engine: native
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 2s, connect: 5s, idle: 10s, ${first}_fin: 400ms }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["127.0.0.1:${port}"]
`);
    const opened = engine!.spliceStats().pipesOpened;
    const c = await new Promise<Peer>((resolve, reject) => {
      const s = net.connect({ port: proxy.port(), host: '127.0.0.1', allowHalfOpen: true }, () => resolve(track(s)));
      s.once('error', reject);
    });
    try {
      c.socket.write(head('/fin'));
      await until(() => engine!.live() === 1, 'the pair in the addon');
      if (first === 'client') {
        await sleep(50);
        c.socket.end();
      }
      // The other direction stays busy (the server's ticks, or the client's): only the FIN bound can end
      // the pair before idle.
      const ticker = setInterval(() => {
        if (first === 'server' && !c.socket.destroyed) c.socket.write('tick');
      }, 50);
      const close = await Promise.race([
        proxy.logs.waitForClose(),
        sleep(5000).then(() => ({ reason: 'none within 5 s (the FIN bound never started)' }) as Record<string, unknown>),
      ]);
      clearInterval(ticker);
      t.is(close['reason'], 'fin-timeout');
      t.is(close['detail'], `${first}_fin`);
      t.true(engine!.spliceStats().pipesOpened > opened, 'the FIN came through a pipe');
    } finally {
      c.socket.destroy();
      // A half-closed backend socket that reads nothing more would keep server.close waiting.
      for (const s of accepted) s.destroy();
      await proxy.stop();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
}

spliceTest('TWINPORT_NATIVE_SPLICE: off, auto, always, else a start error naming the value', (t) => {
  t.deepEqual(spliceSetting({}), { mode: 'auto' });
  t.deepEqual(spliceSetting({ TWINPORT_NATIVE_SPLICE: 'ALWAYS' }), { mode: 'always' });
  t.deepEqual(spliceSetting({ TWINPORT_NATIVE_SPLICE: 'off' }), { mode: 'off' });
  const bad = spliceSetting({ TWINPORT_NATIVE_SPLICE: 'sometimes' });
  t.true('error' in bad);
  const err = t.throws(() => chooseIoEngine('auto', true, { engine, why: 'loaded', spliceError: (bad as { error: string }).error }));
  t.is((err as { code?: string }).code, 'TWP_ERR_NATIVE_SPLICE');
  t.regex(err!.message, /"sometimes"/);
  t.is(chooseIoEngine('libuv', true, { engine, why: 'loaded', spliceError: 'x' }).engine, 'libuv', 'other engines do not care');
  return Promise.resolve();
});

spliceTest('a small RLIMIT_NOFILE: pipes stay within their budget (a quarter of it), the pairs beyond it run on recv/send, every byte right', async (t) => {
  const { spawnTwinport } = await import('../helpers/cli-process.js');
  const { freePort } = await import('../helpers/proxy-harness.js');
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const N = 24;
  const SIZE = 2 * MiB;
  const down = randomBytes(SIZE);
  const got: Buffer[][] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const seen: Buffer[] = [];
    got.push(seen);
    s.on('data', (d: Buffer) => seen.push(d));
    s.on('end', () => s.end());
    s.on('error', () => {});
    s.write(down);
  });
  const backendPort = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
  const dir = mkdtempSync(join(tmpdir(), 'twp-splice-'));
  const port = await freePort();
  const file = join(dir, 'twinport.yaml');
  writeFileSync(
    file,
    `io_engine: native
listeners:
  - name: main
    bind: "127.0.0.1:${port}"
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["127.0.0.1:${backendPort}"]
`,
  );
  // 160 descriptors: a budget of 20 pipes, 10 pairs' worth; 24 pairs at once, each bulk both ways.
  const p = spawnTwinport(['--config', file, '--log-level', 'info'], { prefix: ['prlimit', '--nofile=160:160'], env: { ...process.env, TWINPORT_NATIVE_SPLICE: 'always' } });
  const pipesOf = (): number => {
    let n = 0;
    for (const fd of readdirSync(`/proc/${p.child.pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${p.child.pid}/fd/${fd}`).startsWith('pipe:')) n++;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  };
  try {
    const engineLine = await p.waitFor((l) => l.msg === 'io engine');
    t.regex(String(engineLine['why']), /splice\(2\) always/);
    await p.waitFor((l) => l.msg === 'ready');
    const base = pipesOf();
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, pipesOf())), 2);
    const up = Array.from({ length: N }, () => Buffer.concat([head('/budget'), randomBytes(SIZE)]));
    const clients = await Promise.all(
      up.map(
        (data) =>
          new Promise<Peer>((resolve, reject) => {
            const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
              s.write(data);
              resolve(track(s));
            });
            s.once('error', reject);
          }),
      ),
    );
    // Every pair lives until all have their answer: they hold their pipes at the same time.
    await until(() => clients.every((c) => c.bytes === SIZE) && got.length === N && got.every((g) => g.reduce((a, b) => a + b.length, 0) === up[0]!.length), 'every transfer', 60_000);
    clearInterval(sampler);
    for (const c of clients) c.socket.end();
    await until(() => clients.every((c) => c.ended), 'every FIN back');
    for (const c of clients) t.is(sha256(Buffer.concat(c.data)), sha256(down));
    t.deepEqual(
      got.map((g) => sha256(Buffer.concat(g))).sort(),
      up.map((u) => sha256(u)).sort(),
      'every upload arrived whole',
    );
    t.true(peak > base, `pipes were used (${base} → ${peak})`);
    // Two descriptors a pipe: at most 20 pipes, while the 24 pairs wanted 48.
    t.true(peak - base <= 40, `at most 20 pipes at once: ${(peak - base) / 2}`);
    const closes = await Promise.all(Array.from({ length: N }, (_, i) => p.waitFor((l) => l.msg === 'close' && l['conn'] === i + 1)));
    t.true(closes.every((l) => l['reason'] === 'done'), closes.map((l) => l['reason']).join(' '));
    for (const c of clients) c.socket.destroy();
    await until(() => pipesOf() === base, 'the pipes closed');
  } finally {
    p.kill('SIGKILL');
    await p.exited;
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});
