// Stage 2 of the `native` engine (docs/native.md): the addon accepts, reads the first bytes and connects.
// These tests prove the path is really taken (the listening line, the addon's socket and pair counts),
// that every way off the fast path (an answer written by twinport, a refused or silent server, a
// silent client, an IPv6 pair, a host-name server) still behaves as on the other engines, and that no
// descriptor or socket outlives its connection. The in-process proxy suites run on this path too.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NATIVE } from '../../src/io/native.js';
import { spawnTwinport } from '../helpers/cli-process.js';
import { startBackend, startProxy, type RunningProxy } from '../helpers/proxy-harness.js';

const engine = NATIVE.engine;
const sockets = engine?.sockets;

function nativeTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (sockets !== undefined) test.serial(title, fn);
  else if (process.env['CI'] === 'true') test(title, (t) => t.fail(`native accept unavailable under CI: ${NATIVE.why}`));
  else test.skip(`${title} — needs the native addon (apt-get install -y g++ make python3, then npm install): ${NATIVE.why}`, () => {});
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** Listening sockets stay in the addon; everything else must be gone once the connections are. */
async function settled(t: ExecutionContext, fdsBefore: number, listening: number): Promise<void> {
  const deadline = Date.now() + 5000;
  const busy = (): boolean => engine!.live() !== 0 || sockets!.live() !== listening || openFds() > fdsBefore;
  while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is(engine!.live(), 0, 'no pair left in the addon');
  t.is(sockets!.live(), listening, 'only the listening sockets left in the addon');
  t.true(openFds() <= fdsBefore, `descriptors: ${openFds()} now, ${fdsBefore} before`);
}

function config(servers: string, extra = '', bind = '127.0.0.1:0'): string {
  return `
io_engine: native
listeners:
  - name: main
    bind: "${bind}"
    timeouts: { peek: 300ms, connect: 400ms, idle: 5s }
${extra}    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    retries: 0
    servers: [${servers}]
`;
}

/** Sends `data` and half-closes, collects what comes back until the proxy closes. */
function exchange(port: number, data: string, host = '127.0.0.1'): Promise<{ answer: string; error?: string }> {
  return new Promise((resolve) => {
    const s: Socket = net.connect({ port, host, allowHalfOpen: true });
    const got: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('end', () => s.end());
    s.on('close', () => resolve({ answer: Buffer.concat(got).toString(), ...(error !== undefined && { error }) }));
    s.on('connect', () => s.end(data));
  });
}

const request = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: accept.example\r\n\r\n`;

async function echoBackend(): Promise<Awaited<ReturnType<typeof startBackend>>> {
  return startBackend('b', (socket) => {
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('end', () => socket.end());
    socket.on('error', () => {});
  });
}

function accepts(proxy: RunningProxy): unknown {
  return proxy.logs.lines.find((l) => l.msg === 'listening')?.['accepts'];
}

nativeTest('the addon accepts, reads and connects: 200 requests are carried from accept to close without a libuv handle, every byte echoed', async (t) => {
  const backend = await echoBackend();
  const proxy = await startProxy(config(`"${backend.address}"`));
  // After the start: the listener and the migration store hold descriptors of their own.
  const before = openFds();
  try {
    t.is(accepts(proxy), 'native', 'the listening line says who accepts');
    t.is(sockets!.live(), 1, 'the listening socket is the addon’s');
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => exchange(proxy.port(), request(`/n${i}`))));
    answers.forEach((a, i) => t.is(a.answer, request(`/n${i}`), `connection ${i}`));
    const closes = proxy.logs.closes();
    t.is(closes.length, 200);
    t.true(closes.every((c) => c['reason'] === 'done' && c['pool'] === 'web' && c['bytesIn'] === c['bytesOut']));
    t.true(closes.every((c) => c['client'] !== undefined && String(c['client']).startsWith('127.0.0.1:')), 'the client address comes from accept4');
    t.is(backend.connections.length, 200);
    await settled(t, before, 1);
  } finally {
    await proxy.stop();
    await backend.close();
  }
  t.is(sockets!.live(), 0, 'the listening socket closes with the runtime');
});

nativeTest('twinport’s own answers (a 308 redirect) move the accepted socket into a Node handle, and the client reads the answer', async (t) => {
  const backend = await echoBackend();
  const proxy = await startProxy(config(`"${backend.address}"`, '    migration: { phase: redirect }\n'));
  const before = openFds();
  try {
    t.is(accepts(proxy), 'native');
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => exchange(proxy.port(), request(`/old${i}`))));
    for (const [i, g] of got.entries()) {
      t.regex(g.answer, /^HTTP\/1\.1 308 /, `answer ${i}`);
      t.regex(g.answer, new RegExp(`Location: https://accept\\.example:\\d+/old${i}\\r\\n`));
    }
    const closes = proxy.logs.closes();
    t.is(closes.length, 20);
    t.true(closes.every((c) => c['reason'] === 'redirected'));
    t.is(backend.connections.length, 0, 'no server was connected');
    await settled(t, before, 1);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

nativeTest('connect failures in C: refused → connect-failed, a retry to the next server succeeds, a blackholed server → connect-timeout; nothing leaks', async (t) => {
  const backend = await echoBackend();
  const refused = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  // 192.0.2.1 (TEST-NET-1) is unroutable from a sandbox: the SYN goes nowhere, or fails at once.
  const proxy = await startProxy(config(`"127.0.0.1:${refused}"`));
  const retrying = await startProxy(config(`"127.0.0.1:${refused}", "${backend.address}"`).replace('retries: 0', 'retries: 1\n    balance: first'));
  const blackhole = await startProxy(config('"192.0.2.1:9"'));
  const before = openFds();
  try {
    const r = await exchange(proxy.port(), request('/refused'));
    t.is(r.answer, '');
    t.like(await proxy.logs.waitForClose(), { reason: 'connect-failed' });
    const ok = await exchange(retrying.port(), request('/retried'));
    t.is(ok.answer, request('/retried'));
    t.like(await retrying.logs.waitForClose(), { reason: 'done', server: backend.address });
    const b = await exchange(blackhole.port(), request('/blackhole'));
    t.is(b.answer, '');
    const close = await blackhole.logs.waitForClose();
    t.true(close['reason'] === 'connect-timeout' || close['reason'] === 'connect-failed', String(close['reason']));
    await settled(t, before, 3);
  } finally {
    await proxy.stop();
    await retrying.stop();
    await blackhole.stop();
    await backend.close();
  }
});

nativeTest('silent and vanishing clients on the native accept: peek-timeout, peek-eof, a reset before a byte — one close line each', async (t) => {
  const backend = await echoBackend();
  const proxy = await startProxy(config(`"${backend.address}"`));
  const before = openFds();
  try {
    const silent = net.connect({ port: proxy.port(), host: '127.0.0.1' });
    silent.on('error', () => {});
    t.like(await proxy.logs.waitForClose(), { reason: 'peek-timeout' });
    silent.destroy();
    await exchange(proxy.port(), '');
    t.like(await proxy.logs.waitForClose((l) => l['conn'] === 2), { reason: 'peek-eof' });
    const rst = net.connect({ port: proxy.port(), host: '127.0.0.1' }, () => rst.resetAndDestroy());
    rst.on('error', () => {});
    const third = await proxy.logs.waitForClose((l) => l['conn'] === 3);
    t.true(third['reason'] === 'client-reset' || third['reason'] === 'peek-eof', String(third['reason']));
    t.is(proxy.logs.closes().length, 3);
    await settled(t, before, 1);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

nativeTest('IPv6 on both sides (::1), and a server named by host name (net.connect, then the descriptors are handed over)', async (t) => {
  const v6 = await new Promise<boolean>((resolve) => {
    const s = net.createServer().once('error', () => resolve(false)).listen(0, '::1', () => s.close(() => resolve(true)));
  });
  if (!v6) {
    t.log('no ::1 on this host: IPv6 part skipped');
  }
  const backend = await echoBackend();
  const port = Number(backend.address.split(':').pop());
  // An echo server on ::1 (the harness's backends listen on 127.0.0.1).
  const six = v6
    ? await new Promise<net.Server>((resolve) => {
        const s = net.createServer((c) => c.on('data', (d) => c.write(d)).on('end', () => c.end()).on('error', () => {}));
        s.listen(0, '::1', () => resolve(s));
      })
    : undefined;
  const named = await startProxy(config(`"localhost:${port}"`));
  const proxy6 = six !== undefined ? await startProxy(config(`"[::1]:${(six.address() as net.AddressInfo).port}"`, '', '[::1]:0')) : undefined;
  try {
    const a = await exchange(named.port(), request('/named'));
    t.is(a.answer, request('/named'));
    t.like(await named.logs.waitForClose(), { reason: 'done' });
    if (proxy6 !== undefined) {
      t.is(accepts(proxy6), 'native');
      const b = await exchange(proxy6.port(), request('/six'), '::1');
      t.is(b.answer, request('/six'));
      const close = await proxy6.logs.waitForClose();
      t.like(close, { reason: 'done' });
      t.regex(String(close['client']), /::1/);
    }
  } finally {
    await named.stop();
    await proxy6?.stop();
    await new Promise((r) => (six === undefined ? r(undefined) : six.close(r)));
    await backend.close();
  }
});

nativeTest('TWINPORT_NATIVE_ACCEPT=off keeps stage 1: Node accepts and connects, the addon only splices', async (t) => {
  const backend = await echoBackend();
  const dir = mkdtempSync(join(tmpdir(), 'twp-stage1-'));
  const file = join(dir, 'stage1.yaml');
  writeFileSync(file, config(`"${backend.address}"`));
  const p = spawnTwinport(['--config', file], { env: { ...process.env, TWINPORT_NATIVE_ACCEPT: 'off' } });
  try {
    const listening = await p.waitFor((l) => l.msg === 'listening');
    t.is(listening['engine'], 'native');
    t.is(listening['accepts'], 'node');
    const port = Number(String(listening['address']).split(':').pop());
    t.is((await exchange(port, request('/stage1'))).answer, request('/stage1'));
    t.like(await p.waitFor((l) => l.msg === 'close'), { reason: 'done' });
  } finally {
    p.kill('SIGTERM');
    await p.exited;
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
