// The security review's reproductions (docs/security.md), as regression tests through real listeners: what
// a client, a trusted balancer or a fault inside twinport can make it do. Each test asserts what the client
// saw, what the backend received, the close line, and that everything else carried on.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildProxyV1, buildProxyV2 } from '../../src/protocol/proxy-header-build.js';
import { PROXY_V2_SIGNATURE } from '../../src/protocol/proxy-header.js';
import { spawnTwinport } from '../helpers/cli-process.js';
import { clientHelloRecords, extAlpn, extSni } from '../helpers/tls-build.js';
import { exchange, startBackend, startProxy, type Backend, type LogLine, type RunningProxy } from '../helpers/proxy-harness.js';

const GET = (host: string, path = '/'): Buffer => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 'latin1');

/** The review's F1 request: 65 525 bytes, a 65 499-byte Host, under a 64 KiB max_client_hello. */
const HUGE_HOST = Buffer.from(`GET / HTTP/1.1\r\nHost: ${'a'.repeat(65_499)}\r\n\r\n`, 'latin1');

/** Writes `data` from `localAddress`, half-closes, returns what came back and how the socket ended. */
function sendFrom(port: number, data: Buffer, localAddress = '127.0.0.1'): Promise<{ answer: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const s: Socket = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
    const got: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => resolve({ answer: Buffer.concat(got), ...(error !== undefined && { error }) }));
    s.on('connect', () => s.end(data));
  });
}

// ----------------------------------------------------------------------------------------------------- F1

test('F1: a 64 KiB Host to a send_proxy v2 pool (the shipped example\'s shape) is refused; the process lives and serves on', async (t) => {
  const backend = await startBackend('web');
  const dir = mkdtempSync(join(tmpdir(), 'twp-sec-'));
  const file = join(dir, 'pp2.yaml');
  for (const cap of ['64KiB', '1MiB']) {
    writeFileSync(
      file,
      `listeners:
  - name: main
    bind: "127.0.0.1:0"
    max_client_hello: ${cap}
    routes:
      - match: { protocol: [http, h2c] }
        to: haproxy-http
pools:
  haproxy-http:
    servers: [{ address: "${backend.address}", send_proxy: v2 }]
`,
    );
    const p = spawnTwinport(['--config', file]);
    try {
      const listening = await p.waitFor((l) => l.msg === 'listening');
      const port = Number(String(listening['address']).split(':').pop());
      const before = backend.connections.length;
      await sendFrom(port, HUGE_HOST);
      const close = await p.waitFor((l) => l.msg === 'close' && l['reason'] !== 'done');
      t.like(close, { reason: 'rejected', detail: 'http.host.too-long', protocol: 'http' });
      t.is(backend.connections.length, before, 'nothing reached the backend');
      // Still alive, still serving: a normal request gets its PROXY header and its bytes through.
      const ok = await sendFrom(port, GET('ok.example'));
      t.is(ok.answer.toString(), 'web\n');
      t.is(p.child.exitCode, null);
    } finally {
      p.kill();
      await p.exited;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  await backend.close();
});

test('F1: a trusted balancer\'s PROXY v2 UNIX header with a 108-byte path is refused (proxy.v2.bad-address), not a crash', async (t) => {
  const backend = await startBackend('web');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    timeouts: { peek: 500ms }
    proxy_protocol: { trusted: ["127.0.0.2/32"] }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web: { servers: [{ address: "${backend.address}", send_proxy: v2 }] }
`);
  try {
    const path = Buffer.alloc(108, 0x61);
    path[0] = 0x2f;
    const fixed = Buffer.from([0x21, 0x31, 0, 216]);
    const header = Buffer.concat([PROXY_V2_SIGNATURE, fixed, path, Buffer.concat([Buffer.from('/b'), Buffer.alloc(106)])]);
    await sendFrom(proxy.port(), Buffer.concat([header, GET('a.example')]), '127.0.0.2');
    t.like(await proxy.logs.waitForClose(), { reason: 'rejected', detail: 'proxy.v2.bad-address' });
    t.is(backend.connections.length, 0);
    // A path that fits is forwarded as a UNIX header.
    const good = buildProxyV2({ source: { address: '/run/lb.sock', port: 0 }, destination: { address: '/run/tw.sock', port: 0 } });
    const r = await sendFrom(proxy.port(), Buffer.concat([good, GET('a.example')]), '127.0.0.2');
    t.is(r.answer.toString(), 'web\n');
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

// ------------------------------------------------------------------------------- the class: internal-error

interface Faulty {
  proxy: RunningProxy;
  backend: Backend;
  pool: { state: Record<string, unknown> };
}

async function faultyWorld(): Promise<Faulty> {
  const backend = await startBackend('web');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    timeouts: { peek: 2s, silent: 100ms }
    routes:
      - match: { protocol: silent }
        to: web
      - match: { protocol: [http, tls] }
        to: web
pools:
  web: { servers: ["${backend.address}"] }
`);
  const pools = (proxy.runtime as unknown as { pools: Map<string, { state: Record<string, unknown> }> }).pools;
  return { proxy, backend, pool: pools.get('web')! };
}

/** Makes `method` of the pool's state throw once, then behave again. */
function throwOnce(state: Record<string, unknown>, method: string): void {
  const original = state[method] as (...a: unknown[]) => unknown;
  state[method] = function (this: unknown): never {
    state[method] = original;
    const e = new Error(`injected fault in ${method}`) as NodeJS.ErrnoException;
    e.code = 'TEST_FAULT';
    throw e;
  };
}

for (const [where, method, send] of [
  ['a read (the peek routes the request)', 'pick', GET('a.example')],
  ['the connect callback (the splice starts)', 'onConnect', GET('a.example')],
  ['a timer (the silent route)', 'pick', undefined],
] as const) {
  test(`a throw in ${where} closes that connection as internal-error with its stack logged; the next is served`, async (t) => {
    const w = await faultyWorld();
    try {
      throwOnce(w.pool.state, method);
      let failed: { answer: Buffer; error?: string };
      if (send === undefined) {
        // Says nothing: the silent route's timer dispatches it.
        failed = await new Promise((resolve) => {
          const s = net.connect({ port: w.proxy.port(), host: '127.0.0.1' });
          s.on('error', () => {});
          s.on('close', () => resolve({ answer: Buffer.alloc(0) }));
        });
      } else {
        failed = await exchange(w.proxy.port(), send);
      }
      t.is(failed.answer.length, 0);
      const close = await w.proxy.logs.waitForClose();
      t.like(close, { reason: 'internal-error', detail: 'TEST_FAULT' });
      const err = await w.proxy.logs.waitFor((l: LogLine) => l.msg === 'internal error: connection closed');
      t.is(err['conn'], close['conn']);
      t.regex(String((err['err'] as { stack: string }).stack), new RegExp(`injected fault in ${method}`));
      t.is(w.proxy.runtime.stats.closes['internal-error'], 1);
      // The fault was that connection's only: the next one is served.
      const ok = await exchange(w.proxy.port(), GET('a.example'));
      t.is(ok.answer.toString(), 'web\n');
      t.is(w.proxy.runtime.activeConnections, 0);
    } finally {
      await w.proxy.stop();
      await w.backend.close();
    }
  });
}

// ----------------------------------------------------------------------------------------------------- F4

test('F4: connects that completed while the event loop was blocked past timeouts.connect are not timeouts', async (t) => {
  const a = await startBackend('a');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    timeouts: { connect: 100ms }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    passive_health: { fall: 1, down_for: 30s }
    servers: ["${a.address}"]
`);
  try {
    const pools = (proxy.runtime as unknown as { pools: Map<string, { state: Record<string, unknown> }> }).pools;
    const state = pools.get('web')!.state;
    const pick = state['pick'] as (...args: unknown[]) => unknown;
    // Right after the connect is issued (pick runs just before it, synchronously), block the loop for
    // three connect timeouts: the connect completes in the kernel meanwhile, as in a regex or parser stall.
    state['pick'] = function (this: unknown, ...args: unknown[]): unknown {
      queueMicrotask(() => {
        const until = performance.now() + 300;
        while (performance.now() < until);
      });
      return pick.apply(this, args);
    };
    const r = await exchange(proxy.port(), GET('a.example'));
    t.is(r.answer.toString(), 'a\n');
    t.like(await proxy.logs.waitForClose(), { reason: 'done', server: a.address });
    t.false(proxy.logs.lines.some((l) => /down/.test(String(l.msg)) || l['why'] === 'timeout'), 'no passive failure was counted');
  } finally {
    await proxy.stop();
    await a.close();
  }
});

// ----------------------------------------------------------------------------------------------------- F5

test('F5: request heads a lenient server would serve are refused or routed by their Host, never sent to the catch-all', async (t) => {
  const web = await startBackend('web');
  const denied = await startBackend('denied');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { host: admin.example.com, source: ["10.0.0.0/8"] }
        to: web
      - match: { host: admin.example.com }
        to: denied
      - match: { protocol: [http, h2c] }
        to: web
      - match: {}
        to: web
pools:
  web: { servers: ["${web.address}"] }
  denied: { servers: ["${denied.address}"] }
`);
  try {
    const host = 'Host: admin.example.com\r\n\r\n';
    const refused: Array<[string, string]> = [
      [`\nGET / HTTP/1.1\r\n${host}`, 'http.line.bare-lf'],
      [`GET  / HTTP/1.1\r\n${host}`, 'http.request-line.invalid'],
      [`GET /  HTTP/1.1\r\n${host}`, 'http.request-line.invalid'],
      [`GET /\xc3\xa9 HTTP/1.1\r\n${host}`, 'http.request-line.invalid'],
      ['GET /admin\r\n', 'http.request-line.invalid'],
    ];
    for (const [input, detail] of refused) {
      const before = proxy.logs.closes().length;
      const r = await exchange(proxy.port(), Buffer.from(input, 'latin1'));
      t.is(r.answer.length, 0, JSON.stringify(input));
      await proxy.logs.waitFor(() => proxy.logs.closes().length > before);
      t.like(proxy.logs.closes().at(-1), { reason: 'rejected', detail, protocol: 'http' }, JSON.stringify(input));
    }
    t.is(web.connections.length, 0, 'the catch-all backend got none of them');
    // Leading empty lines are skipped as the server will skip them, so the Host rule applies.
    const lead = await exchange(proxy.port(), Buffer.from(`\r\n\r\nGET / HTTP/1.1\r\n${host}`));
    t.is(lead.answer.toString(), 'denied\n');
    t.like(proxy.logs.closes().at(-1), { reason: 'done', protocol: 'http', host: 'admin.example.com', pool: 'denied' });
  } finally {
    await proxy.stop();
    await web.close();
    await denied.close();
  }
});

// ---------------------------------------------------------------------------------------------- F8, F13

test('F8/F13: an untrusted PROXY header is refused at its signature; a nested one behind a trusted header is proxy.nested', async (t) => {
  const backend = await startBackend('web');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    proxy_protocol: { trusted: ["127.0.0.2/32"] }
    routes:
      - match: {}
        to: web
pools:
  web: { servers: ["${backend.address}"] }
`);
  try {
    // 21 000 NOOP TLVs behind the signature, from an untrusted source: only the signature is read.
    const noops = Array.from({ length: 21_000 }, () => ({ type: 0x04, value: Buffer.alloc(0) }));
    const big = buildProxyV2({ source: { address: '8.8.8.8', port: 1 }, destination: { address: '10.0.0.1', port: 80 }, tlvs: noops });
    await sendFrom(proxy.port(), Buffer.concat([big, GET('a.example')]));
    t.like(await proxy.logs.waitForClose(), { reason: 'rejected', detail: 'proxy.untrusted' });
    // From the trusted balancer: its header, then the client's own.
    const outer = buildProxyV1({ address: '8.8.8.8', port: 1000 }, { address: '10.0.0.1', port: 80 });
    const inner = buildProxyV1({ address: '10.1.2.3', port: 2000 }, { address: '10.0.0.1', port: 80 });
    await sendFrom(proxy.port(), Buffer.concat([outer, inner, GET('a.example')]), '127.0.0.2');
    await proxy.logs.waitFor(() => proxy.logs.closes().length === 2);
    t.like(proxy.logs.closes()[1], { reason: 'rejected', detail: 'proxy.nested', client: '8.8.8.8:1000' });
    t.is(backend.connections.length, 0, 'the client\'s header never reached the backend');
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

// ----------------------------------------------------------------------------------------------------- F9

test('F9: the close line stays under 4 KiB whatever the hello carries (ALPN names bounded, counted)', async (t) => {
  const backend = await startBackend('tls');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { protocol: tls }
        to: tls
pools:
  tls: { servers: ["${backend.address}"] }
`);
  try {
    // The most the parser lets through (64 names) of the longest names, all control bytes (6 JSON chars each).
    const allowed = clientHelloRecords({ extensions: [extSni('a.example'), extAlpn(...Array.from({ length: 64 }, () => Buffer.alloc(255, 1)))] });
    // The review's hello: 250 such names (64 KiB), once 383 KB of log.
    const review = clientHelloRecords({ extensions: [extAlpn(...Array.from({ length: 250 }, () => Buffer.alloc(255, 1)))] });
    await sendFrom(proxy.port(), allowed);
    const first = await proxy.logs.waitForClose();
    t.is(first['alpnCount'], 64);
    t.is((first['alpn'] as string[]).length, 8);
    t.true((first['alpn'] as string[]).every((n) => n.length === 33 && n.endsWith('…')));
    await sendFrom(proxy.port(), review);
    await proxy.logs.waitFor(() => proxy.logs.closes().length === 2);
    t.like(proxy.logs.closes()[1], { reason: 'rejected', detail: 'tls.alpn.too-many' });
    for (const line of proxy.logs.closes()) t.true(JSON.stringify(line).length < 4096, `${JSON.stringify(line).length} bytes`);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

// ------------------------------------------------------------------ issue 12 item 2: SNI that is not a host name

test('an SNI that is not a host name routes as a hello without SNI (never by a wildcard) and is logged escaped as sniInvalid', async (t) => {
  const wild = await startBackend('wild');
  const nosni = await startBackend('nosni');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { sni: "*.example.com" }
        to: wild
      - match: { sni: null }
        to: nosni
pools:
  wild: { servers: ["${wild.address}"] }
  nosni: { servers: ["${nosni.address}"] }
`);
  try {
    const cases: Array<[string | Buffer, string, string | undefined]> = [
      ['bad name!.example.com', 'nosni\n', 'bad\\x20name!.example.com'],
      ['b\u00fccher.example.com', 'nosni\n', 'b\\xc3\\xbccher.example.com'],
      ['ok.example.com', 'wild\n', undefined],
    ];
    for (const [name, answer, escaped] of cases) {
      const before = proxy.logs.closes().length;
      const hello = clientHelloRecords({ extensions: [extSni(name)] });
      const r = await sendFrom(proxy.port(), hello);
      t.is(r.answer.toString(), answer, String(name));
      await proxy.logs.waitFor(() => proxy.logs.closes().length > before);
      const line = proxy.logs.closes()[before]!;
      t.is(line['sniInvalid'], escaped);
      t.is(line['sni'], escaped === undefined ? name : undefined);
    }
  } finally {
    await proxy.stop();
    await wild.close();
    await nosni.close();
  }
});
