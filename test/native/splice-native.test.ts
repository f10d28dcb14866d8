// The `native` engine's own promises (docs/native.md), on real sockets through the whole proxy: the pair
// really is carried by the addon, every way a pair can end gives the JavaScript splice's close line, no
// descriptor or pair outlives its connection, thousands of idle pairs are held, and random chunking,
// half-closes and resets (a fast-check property) deliver exactly the bytes sent, in order.
// The in-process proxy suites (test/integration) also run on this engine: it is auto's choice where it
// builds, and scripts/test.mjs runs them again on libuv and streams.
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NATIVE } from '../../src/io/native.js';
import { spawnTwinport } from '../helpers/cli-process.js';
import { SANITIZER_ENV, startBackend, startProxy, type RecordedConnection } from '../helpers/proxy-harness.js';
import type { HolderMessage, HolderStats } from './pair-holder.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const engine = NATIVE.engine;

/** The addon is built by npm install where g++, make and python3 are present; CI has them. */
function nativeTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (engine !== undefined) test.serial(title, fn);
  else if (process.env['CI'] === 'true') test(title, (t) => t.fail(`native engine unavailable under CI: ${NATIVE.why}`));
  else test.skip(`${title} — needs the native addon (apt-get install -y g++ make python3, then npm install): ${NATIVE.why}`, () => {});
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Descriptors are closed synchronously, uv handles a loop turn later: wait until both settle. */
async function settled(t: ExecutionContext, fdsBefore: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((engine!.live() !== 0 || openFds() > fdsBefore) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is(engine!.live(), 0, 'no pair left in the addon');
  t.true(openFds() <= fdsBefore, `descriptors: ${openFds()} now, ${fdsBefore} before`);
}

function proxyConfig(server: string, idle = '5s', peek = '500ms'): string {
  return `
io_engine: native
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: ${peek}, connect: 5s, idle: ${idle} }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["${server}"]
`;
}

const head = (path: string): Buffer => Buffer.from(`POST ${path} HTTP/1.1\r\nHost: native.example\r\n\r\n`);

function connectClient(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function collect(s: Socket): { data: Buffer[]; ended: Promise<boolean> } {
  const data: Buffer[] = [];
  s.on('data', (b: Buffer) => data.push(b));
  const ended = new Promise<boolean>((resolve) => {
    s.on('end', () => resolve(true));
    s.on('error', () => resolve(false));
    s.on('close', () => resolve(false));
  });
  return { data, ended };
}

/** Resolves once `n` bytes were recorded on this backend connection. */
async function backendGot(rec: RecordedConnection, n: number): Promise<void> {
  while (rec.received.reduce((a, b) => a + b.length, 0) < n) await new Promise((r) => setTimeout(r, 5));
}

nativeTest('io_engine native: the start line says so, and a spliced pair is carried by the addon', async (t) => {
  const backend = await startBackend('b', (socket) => socket.on('data', (d) => socket.write(d)));
  const proxy = await startProxy(proxyConfig(backend.address));
  try {
    const line = proxy.logs.lines.find((l) => l.msg === 'io engine');
    t.is(line?.['engine'], 'native');
    t.regex(String(line?.['why']), /self-check passed/);
    const c = await connectClient(proxy.port());
    const got = collect(c);
    c.write(head('/live'));
    const rec = await backend.connection(1);
    await backendGot(rec, head('/live').length);
    t.is(engine!.live(), 1);
    c.write('ping');
    while (Buffer.concat(got.data).length < head('/live').length + 4) await new Promise((r) => setTimeout(r, 5));
    t.is(Buffer.concat(got.data).toString(), `${head('/live').toString()}ping`);
    c.end();
    const close = await proxy.logs.waitForClose();
    t.is(close['reason'], 'done');
    t.is(close['bytesIn'], head('/live').length + 4);
    t.is(close['bytesOut'], head('/live').length + 4);
    t.is(engine!.live(), 0);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

nativeTest('every ending, 300 connections: done, client reset, server reset, idle timeout — one close line each, no descriptor or pair left', async (t) => {
  const kinds = ['done', 'client-reset', 'server-reset', 'idle-timeout'] as const;
  const backend = await startBackend('b', (socket) => {
    socket.on('data', (d: Buffer) => {
      const text = d.toString();
      if (text.includes('/server-reset')) socket.resetAndDestroy();
      else if (text.includes('/done')) socket.write('answer');
      else if (text.includes('/client-reset') || text.includes('/idle-timeout')) socket.write('x');
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => {});
  });
  // Long enough that a loaded machine (the sanitizer pass) does not turn a slow reset into an idle timeout.
  const proxy = await startProxy(proxyConfig(backend.address, '1s'));
  const before = openFds();
  try {
    const N = 300;
    const runs: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      const kind = kinds[i % kinds.length]!;
      runs.push(
        (async () => {
          const c = await connectClient(proxy.port());
          c.on('error', () => {});
          const got = collect(c);
          c.write(head(`/${kind}`));
          if (kind === 'done') {
            while (Buffer.concat(got.data).length < 6) await new Promise((r) => setTimeout(r, 5));
            c.end();
            await got.ended;
          } else if (kind === 'client-reset') {
            while (got.data.length === 0) await new Promise((r) => setTimeout(r, 5));
            c.resetAndDestroy();
          } else {
            await got.ended;
          }
          c.destroy();
        })(),
      );
    }
    await Promise.all(runs);
    const lines = await Promise.all(Array.from({ length: N }, (_, i) => proxy.logs.waitForClose((l) => l['conn'] === i + 1)));
    t.is(proxy.logs.closes().length, N, 'one close line per connection');
    for (const [i, l] of lines.entries()) t.is(l['reason'], kinds[i % kinds.length], `conn ${i + 1}`);
    t.true(
      lines.filter((l) => l['reason'] === 'server-reset').every((l) => l['detail'] === 'ECONNRESET'),
      'server resets name ECONNRESET',
    );
    t.is(proxy.runtime.activeConnections, 0);
    await settled(t, before);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

/**
 * Processes holding `N` pairs: each pair costs the addon's process two descriptors (the duplicates) and
 * the backend one, and the parent one per client. Under this machine's hard limit of 20 000 (no
 * CAP_SYS_RESOURCE to raise it) 10 000 pairs, 20 000 descriptors, cannot be in one addon: they are
 * spread over as few holders as the limit allows (one where it is above 30 000).
 */
function holdersFor(n: number): number {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const hard = Number(/^Max open files\s+\d+\s+(\d+)/m.exec(limits)?.[1] ?? 1024);
  if (hard < n + 1000) throw new Error(`the descriptor limit (${hard}) cannot hold ${n} clients in this process`);
  return Math.ceil((3 * n) / (hard - 1000));
}

interface Holder {
  readonly child: ChildProcess;
  readonly ready: HolderStats;
  stats(): Promise<HolderStats>;
}

async function startHolder(): Promise<Holder> {
  const child = fork(fileURLToPath(new URL('./pair-holder.js', import.meta.url)), [], {
    env: { ...process.env, ...SANITIZER_ENV },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = (): Promise<HolderStats> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`pair holder exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (m: HolderMessage) => {
        child.off('exit', onExit);
        if ('error' in m) reject(new Error(m.error));
        else resolve('ready' in m ? m.ready : m.stats);
      });
    });
  const ready = await next();
  return {
    child,
    ready,
    stats: () => {
      const got = next();
      child.send('stats');
      return got;
    },
  };
}

async function stopHolder(h: Holder): Promise<number | null> {
  if (h.child.exitCode !== null) return h.child.exitCode;
  const exited = new Promise<number | null>((r) => h.child.once('exit', (code) => r(code)));
  h.child.send('stop');
  const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 10_000))]);
  if (code !== 'late') return code;
  h.child.kill('SIGKILL');
  return exited;
}

/** Polls every holder until `done` says their stats are there, or the deadline passes; the last stats. */
async function pollHolders(holders: Holder[], done: (s: HolderStats[]) => boolean, ms: number): Promise<HolderStats[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const stats = await Promise.all(holders.map((h) => h.stats()));
    if (done(stats) || Date.now() > deadline) return stats;
    await new Promise((r) => setTimeout(r, 100));
  }
}

nativeTest('10 000 idle spliced pairs are held by the native engine (in as few processes as the descriptor limit allows), each still forwards a byte both ways, then all close cleanly', async (t) => {
  t.timeout(120_000);
  const N = 10_000;
  const k = holdersFor(N);
  const holders = await Promise.all(Array.from({ length: k }, () => startHolder()));
  const before = openFds();
  const clients: Socket[] = [];
  const started = Date.now();
  try {
    for (const h of holders) t.is(h.ready.live, 0);
    for (let i = 0; i < N; i += 200) {
      const batch = await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, j) => connectClient(holders[(i + j) % k]!.ready.port)));
      for (const c of batch) {
        c.on('error', () => {});
        c.write(head('/idle'));
      }
      clients.push(...batch);
      // The addon connects to the backend as fast as clients come; the backend, JavaScript in the same
      // process, accepts slower (several-fold under the sanitizers). Past its accept queue (somaxconn)
      // the kernel drops handshakes and the retransmissions take seconds: let it catch up now and then.
      if (clients.length % 2000 === 0 || clients.length === N) {
        const want = clients.length;
        const caught = await pollHolders(holders, (s) => s.reduce((a, b) => a + b.accepted, 0) >= want, 30_000);
        t.is(caught.reduce((a, b) => a + b.accepted, 0), want, `the backends accepted the first ${want} connections`);
      }
    }
    const held = await pollHolders(holders, (s) => s.reduce((a, b) => a + b.live, 0) >= N, 40_000);
    const early = held.flatMap((s) => s.notDone);
    t.is(
      held.reduce((a, b) => a + b.live, 0),
      N,
      `every pair is in an addon (${held.map((s) => s.live).join(' + ')}, over ${k} process(es); closed early: ${early.length} ${[...new Set(early)].join(', ')})`,
    );
    t.true(held.every((s) => s.closes === 0), 'no pair ended while idle');
    t.log(`${N} pairs held by ${k} addon(s) in ${Date.now() - started} ms: ${held.map((s) => `${s.live} pairs, ${s.fds - s.fdsAtStart} descriptors`).join('; ')}`);

    // Every pair still forwards, both ways: a byte to the backend, echoed back to the client.
    const echoed = await Promise.all(
      clients.map(
        (c) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), 20_000);
            c.once('data', (d: Buffer) => {
              clearTimeout(timer);
              resolve(d.toString() === '!');
            });
            c.write('!');
          }),
      ),
    );
    t.is(echoed.filter(Boolean).length, N, 'every pair echoed its byte');

    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            c.once('close', () => resolve());
            c.on('end', () => c.destroy());
            c.end();
          }),
      ),
    );
    const after = await pollHolders(holders, (s) => s.reduce((a, b) => a + b.closes, 0) >= N && s.every((x) => x.live === 0 && x.fds <= x.fdsAtStart), 20_000);
    t.deepEqual(after.map((s) => s.live), holders.map(() => 0), 'no pair left in any addon');
    t.is(after.reduce((a, b) => a + b.closes, 0), N, 'one close line per connection');
    t.deepEqual(after.flatMap((s) => s.notDone), [], 'every pair ended done');
    t.true(after.every((s) => s.activeConnections === 0));
    t.true(after.every((s) => s.fds <= s.fdsAtStart), `holder descriptors: ${after.map((s) => `${s.fds} now, ${s.fdsAtStart} at start`).join('; ')}`);
    t.true(openFds() <= before, `client descriptors: ${openFds()} now, ${before} before`);
  } finally {
    for (const c of clients) c.destroy();
    const codes = await Promise.all(holders.map(stopHolder));
    t.deepEqual(codes, holders.map(() => 0), 'the holders stopped cleanly');
  }
});

nativeTest('affinity: tls pools: JavaScript reads the server\'s first flight, then the addon carries the pair (TLS 1.2 and 1.3)', async (t) => {
  const { generate } = await import('selfsigned');
  const pem = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const server = tls.createServer({ key: pem.private, cert: pem.cert, maxVersion }, (s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => s.write(`echo ${d.toString()}`));
      s.on('end', () => s.end());
    });
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
    const proxy = await startProxy(`
io_engine: native
listeners:
  - name: front
    bind: "127.0.0.1:0"
    timeouts: { peek: 5s, connect: 2s, idle: 30s }
    routes:
      - match: { protocol: tls }
        to: backends
pools:
  backends:
    affinity: tls
    servers: ["127.0.0.1:${port}"]
`);
    try {
      const c = tls.connect({ host: '127.0.0.1', port: proxy.port(), rejectUnauthorized: false, maxVersion });
      c.on('error', () => {});
      await new Promise((r) => c.once('secureConnect', r));
      const echoed = new Promise<string>((resolve) => c.once('data', (d: Buffer) => resolve(d.toString())));
      c.write('after the handshake');
      t.is(await echoed, 'echo after the handshake', maxVersion);
      const deadline = Date.now() + 5000;
      while (engine!.live() !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      t.is(engine!.live(), 1, `${maxVersion}: handed to the addon once the first flight was read`);
      c.end();
      const line = await proxy.logs.waitForClose();
      t.is(line['reason'], 'done', maxVersion);
      t.is(engine!.live(), 0);
    } finally {
      await proxy.stop();
      server.close();
    }
  }
});

/** How one fuzzed pair ends. */
type Ending = 'client-fin-first' | 'server-fin-first' | 'client-reset' | 'server-reset';

nativeTest('property: random chunks, half-close orders and resets — the bytes that arrive are exactly those sent, in order', async (t) => {
  const backend = await startBackend('fuzz', (socket) => socket.on('error', () => {}));
  const proxy = await startProxy(proxyConfig(backend.address));
  const before = openFds();
  let served = 0;
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 0, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 0, maxLength: 6 }),
        fc.constantFrom<Ending>('client-fin-first', 'server-fin-first', 'client-reset', 'server-reset'),
        fc.integer({ min: 0, max: 255 }),
        async (up, down, ending, seed) => {
          const upBytes = up.map((n, i) => Buffer.alloc(n, (seed + i) & 0xff));
          const downBytes = down.map((n, i) => Buffer.alloc(n, (seed + 7 * i + 1) & 0xff));
          const first = head(`/fuzz/${served + 1}`);
          const upWant = Buffer.concat([first, ...upBytes]);
          const downWant = Buffer.concat(downBytes);
          const c = await connectClient(proxy.port());
          c.on('error', () => {});
          const got = collect(c);
          c.write(first);
          const rec = await backend.connection(served + 1);
          const server = rec.socket;
          const serverEnded = new Promise<void>((r) => (rec.ended ? r() : server.once('end', () => r())));
          await backendGot(rec, first.length);
          for (const b of upBytes) if (!c.write(b)) await new Promise((r) => c.once('drain', r));
          for (const b of downBytes) if (!server.write(b)) await new Promise((r) => server.once('drain', r));
          // Resets only once the reader has every byte: what a RST discards is not the engine's to deliver.
          await backendGot(rec, upWant.length);
          while (Buffer.concat(got.data).length < downWant.length) await new Promise((r) => setTimeout(r, 2));
          switch (ending) {
            case 'client-reset':
              c.resetAndDestroy();
              break;
            case 'server-reset':
              server.resetAndDestroy();
              break;
            case 'client-fin-first':
              c.end();
              await serverEnded;
              server.end();
              await got.ended;
              break;
            case 'server-fin-first':
              server.end();
              await got.ended;
              c.end();
              await serverEnded;
              break;
          }
          served++;
          const line = await proxy.logs.waitForClose((l) => l['conn'] === served);
          c.destroy();
          const expected = ending === 'client-reset' || ending === 'server-reset' ? ending : 'done';
          return (
            line['reason'] === expected &&
            Buffer.concat(rec.received).equals(upWant) &&
            Buffer.concat(got.data).equals(downWant) &&
            line['bytesIn'] === upWant.length &&
            line['bytesOut'] === downWant.length
          );
        },
      ),
      { numRuns: 40 },
    );
    t.is(proxy.runtime.activeConnections, 0);
    await settled(t, before);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

nativeTest('io_engine native without the addon is a startup error naming why; auto falls back to libuv and says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twp-native-'));
  const yaml = (engineName: string): string => `
io_engine: ${engineName}
listeners:
  - name: main
    bind: "127.0.0.1:0"
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["127.0.0.1:1"]
`;
  const saved = process.env['TWINPORT_NATIVE_ADDON'];
  // spawnTwinport's child inherits this process's environment (the test is serial).
  process.env['TWINPORT_NATIVE_ADDON'] = join(dir, 'missing.node');
  try {
    const explicit = join(dir, 'native.yaml');
    writeFileSync(explicit, yaml('native'));
    const failed = spawnTwinport(['--config', explicit]);
    const exit = await failed.exited;
    t.not(exit.code, 0);
    const said = JSON.stringify(failed.lines) + failed.stderr();
    t.regex(said, /TWP_ERR_IO_ENGINE/);
    t.regex(said, /addon not built/);

    const auto = join(dir, 'auto.yaml');
    writeFileSync(auto, yaml('auto'));
    const p = spawnTwinport(['--config', auto]);
    try {
      const line = await p.waitFor((l) => l.msg === 'io engine');
      t.is(line['engine'], 'libuv');
      t.regex(String(line['why']), /native unavailable, addon not built/);
      await p.waitFor((l) => l.msg === 'listening');
    } finally {
      p.kill('SIGTERM');
      await p.exited;
    }
  } finally {
    if (saved === undefined) delete process.env['TWINPORT_NATIVE_ADDON'];
    else process.env['TWINPORT_NATIVE_ADDON'] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a native build that fails does not fail the install script, and leaves no addon behind', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twp-native-build-'));
  try {
    cpSync(join(ROOT, 'src/native'), dir, { recursive: true, filter: (src) => !src.includes('/build') });
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build-native.mjs')], {
      env: { ...process.env, TWINPORT_NATIVE_DIR: dir, CC: '/bin/false', CXX: '/bin/false' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    t.is(r.status, 0, r.stdout + r.stderr);
    t.regex(r.stdout, /build failed .*the libuv engine will run/);
    t.false(readdirSync(dir).includes('build'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
