// Health checks against real servers: active tcp / tls / http checks take servers out after `fall`
// failures and back after `rise` successes, passive health takes out a server that refuses connections
// for `down_for`, and a reload keeps what was learned. Intervals are tens of milliseconds; the tests wait
// on the `health` log lines, never on the clock.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { parseConfigText } from '../../src/config/load.js';
import type { HealthCheckConfig, ServerAddress } from '../../src/config/types.js';
import { HealthChecker } from '../../src/health/health-checker.js';
import { runHealthCheck, type CheckOutcome } from '../../src/health/health-probe.js';
import type { PoolRuntime } from '../../src/proxy/listener-context.js';
import { PoolState } from '../../src/routing/pool-state.js';
import pino from 'pino';
import { spawnTwinport } from '../helpers/cli-process.js';
import { LogSink, exchange, listenServer, startBackend, startProxy, type LogLine, type RunningProxy, freePort } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const LISTENER = `
listeners:
  - bind: "127.0.0.1:0"
    timeouts: { peek: 2s, connect: 1s, idle: 10s }
    routes: [{ match: {}, to: app }]
`;

function addr(port: number): ServerAddress {
  return { text: `127.0.0.1:${port}`, host: '127.0.0.1', port };
}

function healthConfig(over: Partial<HealthCheckConfig> & Pick<HealthCheckConfig, 'type'>): HealthCheckConfig {
  return { interval: 1000, timeout: 500, rise: 2, fall: 3, path: '/', expectStatus: [{ from: 200, to: 399 }], ...over };
}

const isHealth = (server: string, to: 'up' | 'down') => (l: LogLine) => l.msg === 'health' && l.server === server && l.to === to;

/** A port nothing listens on (for a refused connect): bound by the OS, then released. */

/** A server on a given port (0: any) that answers its tag to each connection and closes. */
async function tagServer(tag: string, port = 0): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.end(`${tag}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function proxyFor(t: ExecutionContext, pool: string): Promise<RunningProxy> {
  const proxy = await startProxy(`${LISTENER}pools:\n  app:\n${pool}`);
  t.teardown(() => proxy.stop());
  return proxy;
}

/** One client through the proxy; resolves with what it got back and the connection's close line. */
async function through(proxy: RunningProxy): Promise<{ answer: string; close: LogLine }> {
  const before = proxy.logs.closes().length;
  const { answer } = await exchange(proxy.port(), Buffer.from('ping\n'));
  const close = await proxy.logs.waitFor((l) => l.msg === 'close' && proxy.logs.closes().indexOf(l) >= before);
  return { answer: answer.toString(), close };
}

async function tlsCert(): Promise<{ key: string; cert: string }> {
  const pems = await generate([{ name: 'commonName', value: 'health.example' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  return { key: pems.private, cert: pems.cert };
}

test('tcp: a server that stops accepting goes down after fall checks, is skipped, and comes back after rise', async (t) => {
  const a = await tagServer('A');
  const b = await tagServer('B');
  t.teardown(() => b.close());
  const aText = `127.0.0.1:${a.port}`;
  // balance first + retries 0: a connection that were sent to A while it is closed would fail the client.
  const proxy = await proxyFor(
    t,
    `    balance: first
    retries: 0
    health: { type: tcp, interval: 200ms, timeout: 150ms, rise: 2, fall: 3 }
    servers: ["${aText}", "127.0.0.1:${b.port}"]
`,
  );
  t.is((await through(proxy)).answer, 'A\n', 'A is up at start and first in line');

  await a.close();
  const down = await proxy.logs.waitFor(isHealth(aText, 'down'));
  t.like(down, { pool: 'app', from: 'up', to: 'down', source: 'active' });
  t.regex(String(down['reason']), /^tcp check failed 3 in a row \(ECONNREFUSED\)$/);
  t.like(proxy.runtime.health.status().find((s) => s.server === aText), { up: false, activeUp: false, failures: 3 });

  for (let i = 0; i < 3; i++) {
    const r = await through(proxy);
    t.is(r.answer, 'B\n');
    t.like(r.close, { reason: 'done', server: `127.0.0.1:${b.port}` });
  }

  const again = await tagServer('A2', a.port);
  t.teardown(() => again.close());
  const up = await proxy.logs.waitFor(isHealth(aText, 'up'));
  t.like(up, { from: 'down', to: 'up', source: 'active' });
  t.regex(String(up['reason']), /^tcp check passed 2 in a row/);
  t.is((await through(proxy)).answer, 'A2\n', 'back in the pool');
  t.is(proxy.logs.lines.filter((l) => l.msg === 'health').length, 2, 'each transition logged once');
});

test('tls check: passes against a node TLS server, sending the configured SNI and ALPN', async (t) => {
  const seen: { servername: string | false; protocols: string[] }[] = [];
  const server = tls.createServer({
    ...(await tlsCert()),
    ALPNCallback: ({ servername, protocols }) => {
      seen.push({ servername, protocols });
      return protocols.includes('h2') ? 'h2' : undefined;
    },
  });
  server.on('tlsClientError', () => {});
  const port = await listenServer(server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const outcome = await runHealthCheck(addr(port), healthConfig({ type: 'tls', sni: 'api.example.com', alpn: ['h2', 'http/1.1'] }));
  t.true(outcome.ok, outcome.detail);
  t.is(outcome.detail, 'TLSv1.3 alpn h2');
  t.deepEqual(seen, [{ servername: 'api.example.com', protocols: ['h2', 'http/1.1'] }]);
});

test('tls check: fails against a plaintext server and a server stuck before its ServerHello', async (t) => {
  const plain = await startBackend('plain', (s) => s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
  t.teardown(() => plain.close());
  const bad = await runHealthCheck(addr(plain.port), healthConfig({ type: 'tls' }));
  t.false(bad.ok);
  t.not(bad.detail, '');
  t.true(plain.connections.length === 1 && Buffer.concat(plain.connections[0]!.received)[0] === 0x16, 'it sent a TLS handshake record');

  const silent = await startBackend('silent', () => {});
  t.teardown(() => silent.close());
  const stuck = await runHealthCheck(addr(silent.port), healthConfig({ type: 'tls', timeout: 80 }));
  t.deepEqual(stuck, { ok: false, detail: 'timeout after 80ms' });
});

testWithTools({ openssl: 'openssl' }, 'tls check: passes against openssl s_server (TLS 1.3 and TLS 1.2 only)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twp-health-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { key, cert } = await tlsCert();
  writeFileSync(join(dir, 'key.pem'), key);
  writeFileSync(join(dir, 'cert.pem'), cert);
  for (const version of ['-tls1_3', '-tls1_2']) {
    const child = spawn(
      'openssl',
      ['s_server', '-accept', '127.0.0.1:0', '-cert', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem'), '-alpn', 'h2', version],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    t.teardown(async () => {
      child.kill();
      await exited;
    });
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const m = /^ACCEPT .*:([0-9]+)$/.exec(line);
        if (m !== null) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`openssl s_server exited (${code})`)));
    });
    const outcome = await runHealthCheck(addr(port), healthConfig({ type: 'tls', sni: 'api.example.com', alpn: ['h2'], timeout: 5000 }));
    t.deepEqual(outcome, { ok: true, detail: `${version === '-tls1_3' ? 'TLSv1.3' : 'TLSv1.2'} alpn h2` });
    child.kill();
    await exited;
  }
});

test('tls check in a pool: a plaintext server goes down, and comes up when a TLS server takes its port', async (t) => {
  const plain = await tagServer('plain');
  const text = `127.0.0.1:${plain.port}`;
  const proxy = await proxyFor(t, `    health: { type: tls, interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }\n    servers: ["${text}"]\n`);
  const down = await proxy.logs.waitFor(isHealth(text, 'down'));
  t.regex(String(down['reason']), /^tls check failed 2 in a row/);
  const r = await through(proxy);
  t.like(r.close, { reason: 'connect-failed' }, 'no server is left to pick');

  await plain.close();
  const secure = tls.createServer(await tlsCert(), (s) => s.end());
  secure.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => secure.listen(plain.port, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((res) => secure.close(() => res())));
  const up = await proxy.logs.waitFor(isHealth(text, 'up'));
  t.regex(String(up['reason']), /^tls check passed 1 in a row \(TLSv1\.3\)$/);
});

test('http check: status in expect_status passes; 503 and non-HTTP answers fail; Host and path are sent', async (t) => {
  let status = 200;
  const requests: { url: string; host: string; ua: string }[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url ?? '', host: req.headers.host ?? '', ua: req.headers['user-agent'] ?? '' });
    res.writeHead(status).end('ok');
  });
  const port = await listenServer(server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const cfg = healthConfig({ type: 'http', path: '/healthz?full=1', host: 'api.example.com' });

  t.deepEqual(await runHealthCheck(addr(port), cfg), { ok: true, detail: 'status 200' });
  t.deepEqual(requests[0], { url: '/healthz?full=1', host: 'api.example.com', ua: 'twinport-health' });
  status = 503;
  t.deepEqual(await runHealthCheck(addr(port), cfg), { ok: false, detail: 'status 503' });
  const custom = { ...cfg, expectStatus: [{ from: 200, to: 200 }, { from: 500, to: 503 }] };
  t.deepEqual(await runHealthCheck(addr(port), custom), { ok: true, detail: 'status 503' });
  status = 302;
  t.deepEqual(await runHealthCheck(addr(port), custom), { ok: false, detail: 'status 302' });
  t.deepEqual(await runHealthCheck(addr(port), cfg), { ok: true, detail: 'status 302' }, 'default 200-399');

  const noHost = healthConfig({ type: 'http' });
  await runHealthCheck(addr(port), noHost);
  t.deepEqual(requests.at(-1), { url: '/', host: `127.0.0.1:${port}`, ua: 'twinport-health' }, 'default Host: the server address');

  const notHttp = await startBackend('x', (s) => s.once('data', () => s.end('SSH-2.0-OpenSSH_9.6\r\n')));
  t.teardown(() => notHttp.close());
  t.deepEqual(await runHealthCheck(addr(notHttp.port), cfg), { ok: false, detail: 'not an HTTP/1 status line' });
});

test('http check in a pool: 503 takes the server down, 200 brings it back', async (t) => {
  let status = 200;
  let served = 0;
  let onServed: (() => void) | undefined;
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? status : 404).end();
    served++;
    onServed?.();
  });
  const servedAtLeast = (n: number) =>
    new Promise<void>((resolve) => {
      onServed = () => served >= n && resolve();
      onServed();
    });
  const port = await listenServer(server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const text = `127.0.0.1:${port}`;
  const proxy = await proxyFor(
    t,
    `    health: { type: http, interval: 300ms, timeout: 250ms, rise: 2, fall: 2, path: /healthz, expect_status: [200] }\n    servers: ["${text}"]\n`,
  );
  await servedAtLeast(3);
  t.deepEqual(proxy.logs.lines.filter((l) => l.msg === 'health'), [], 'a passing server stays up without a log line');
  status = 503;
  const down = await proxy.logs.waitFor(isHealth(text, 'down'));
  t.is(down['reason'], 'http check failed 2 in a row (status 503)');
  status = 200;
  const up = await proxy.logs.waitFor(isHealth(text, 'up'));
  t.is(up['reason'], 'http check passed 2 in a row (status 200)');
});

test('passive health: fall refused connects take a server out for down_for, then it is tried again', async (t) => {
  const deadPort = await freePort();
  const dead = `127.0.0.1:${deadPort}`;
  const good = await tagServer('G');
  t.teardown(() => good.close());
  const proxy = await proxyFor(
    t,
    `    balance: first
    passive_health: { fall: 2, down_for: 1s }
    servers: ["${dead}", "127.0.0.1:${good.port}"]
`,
  );
  const failures = (): number => proxy.logs.lines.filter((l) => l.msg === 'connect failed' && l['server'] === dead).length;

  for (let i = 0; i < 2; i++) t.is((await through(proxy)).answer, 'G\n', 'the retry reaches the good server');
  const down = await proxy.logs.waitFor(isHealth(dead, 'down'));
  t.like(down, { from: 'up', to: 'down', source: 'passive', reason: '2 connect failures in a row (last: ECONNREFUSED)' });
  t.is(failures(), 2);

  t.is((await through(proxy)).answer, 'G\n');
  t.is(failures(), 2, 'while down, new connections do not try it');

  const up = await proxy.logs.waitFor(isHealth(dead, 'up'));
  t.like(up, { from: 'down', to: 'up', source: 'passive', reason: 'down_for 1000ms elapsed' });
  t.is((await through(proxy)).answer, 'G\n');
  t.is(failures(), 3, 'after down_for it is tried again');
});

test('reload keeps health state for servers that stay, and stops checks of removed servers', async (t) => {
  const deadPort = await freePort();
  const dead = `127.0.0.1:${deadPort}`;
  const b = await startBackend('B');
  const c = await startBackend('C');
  t.teardown(() => b.close());
  t.teardown(() => c.close());
  const pool = (servers: string[]) => `${LISTENER}pools:
  app:
    balance: first
    retries: 0
    health: { type: tcp, interval: 200ms, timeout: 150ms, rise: 2, fall: 2 }
    servers: [${servers.map((s) => `"${s}"`).join(', ')}]
`;
  const proxy = await startProxy(pool([dead, b.address, c.address]));
  t.teardown(() => proxy.stop());
  await proxy.logs.waitFor(isHealth(dead, 'down'));

  // Same pool, same addresses (C removed): new PoolStates, but the dead server is still known down.
  await proxy.runtime.reload(parseConfigText(pool([dead, b.address]), 'reload.yaml'));
  t.deepEqual(
    proxy.runtime.health.status().map((s) => [s.server, s.up]),
    [
      [dead, false],
      [b.address, true],
    ],
  );
  const r = await through(proxy);
  t.like(r.close, { reason: 'done', server: b.address }, 'the first connection after the reload skips the dead server');
  t.is(proxy.logs.lines.filter((l) => l.msg === 'health').length, 1, 'no transition logged by the reload');

  // C's checks stopped: while B gets more checks, C gets none (one in flight at the reload may land).
  const checksOf = (x: typeof b) => x.connections.length;
  await b.connection(checksOf(b) + 2);
  const cAfter = checksOf(c);
  await b.connection(checksOf(b) + 3);
  t.is(checksOf(c), cAfter);

  await proxy.runtime.shutdown();
  t.deepEqual(proxy.runtime.health.status(), [], 'shutdown stops every check');
});

test('twinport exits promptly on SIGTERM with health checks running, after a SIGHUP reload kept state', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twp-health-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const deadPort = await freePort();
  const dead = `127.0.0.1:${deadPort}`;
  const b = await startBackend('B');
  t.teardown(() => b.close());
  const file = join(dir, 'twinport.yaml');
  const write = (shutdown: string) =>
    writeFileSync(
      file,
      `${LISTENER}shutdown_timeout: ${shutdown}
pools:
  app:
    health: { type: tcp, interval: 200ms, timeout: 150ms, rise: 2, fall: 2 }
    servers: ["${dead}", "${b.address}"]
`,
    );
  write('5s');
  const p = spawnTwinport(['--config', file]);
  t.teardown(() => p.kill('SIGKILL'));
  await p.waitFor((l) => l.msg === 'health' && l.server === dead && l.to === 'down');
  write('6s');
  p.kill('SIGHUP');
  await p.waitFor((l) => l.msg === 'reloaded');
  // Four more checks of B after the reload: had the reload reset the dead server to up, it would have had
  // to fall again and log a second `down`.
  await b.connection(b.connections.length + 4);
  t.is(p.lines.filter((l) => l.msg === 'health').length, 1);
  p.kill('SIGTERM');
  t.deepEqual(await p.exited, { code: 0, signal: null });
});

// ── the checker's counting, with scripted check results (no sockets) ──────────────────────────────────

/** Pools from YAML through the real validator, each with a fresh PoolState (what the runtime builds). */
function poolsFrom(yaml: string): Map<string, PoolRuntime> {
  const config = parseConfigText(`${LISTENER}pools:\n${yaml}`, 'scripted.yaml');
  return new Map(Object.values(config.pools).map((p) => [p.name, { config: p, state: new PoolState(p) }]));
}

/**
 * A check that answers from a script, one entry per call; past the end of the script it waits until it
 * is aborted, so the sequence under test is exact.
 */
function scripted(results: boolean[]) {
  const calls: { server: string; signal: AbortSignal }[] = [];
  let onCall: (() => void) | undefined;
  const check = (address: ServerAddress, _cfg: HealthCheckConfig, signal: AbortSignal): Promise<CheckOutcome> => {
    calls.push({ server: address.text, signal });
    onCall?.();
    const ok = results[calls.length - 1];
    if (ok !== undefined) return Promise.resolve({ ok, detail: ok ? 'scripted ok' : 'scripted failure' });
    return new Promise((resolve) => signal.addEventListener('abort', () => resolve({ ok: false, detail: 'stopped' })));
  };
  const callCount = (n: number) =>
    new Promise<void>((resolve) => {
      onCall = () => calls.length >= n && resolve();
      onCall();
    });
  return { check, calls, callCount };
}

test('checker: fall failures in a row take a server down, rise successes bring it back; a broken streak does not', async (t) => {
  const logs = new LogSink();
  const script = scripted([false, false, true, false, false, false, true, false, true, true]);
  const checker = new HealthChecker(pino(logs.stream), { random: () => 0, check: script.check });
  t.teardown(() => checker.stop());
  const pools = poolsFrom(`  app:
    health: { type: tcp, interval: 100ms, timeout: 50ms, rise: 2, fall: 3 }
    servers: ["127.0.0.1:1"]
`);
  const state = pools.get('app')!.state;
  checker.apply(pools);
  await script.callCount(11); // the 11th call is the one that waits: results 1-10 have been recorded
  const transitions = logs.lines.filter((l) => l.msg === 'health').map((l) => [l['to'], l['reason']]);
  t.deepEqual(transitions, [
    ['down', 'tcp check failed 3 in a row (scripted failure)'],
    ['up', 'tcp check passed 2 in a row (scripted ok)'],
  ]);
  t.true(state.isUp(0));
  t.like(checker.status()[0], { up: true, successes: 2, failures: 0, checking: true });
  checker.stop();
  t.true(script.calls[10]!.signal.aborted, 'stop aborts the running check');
  t.deepEqual(checker.status(), []);
});

test('checker: a reload keeps a down server down in the new pool state; removing the check brings it back', async (t) => {
  const logs = new LogSink();
  const script = scripted([false, false]);
  const checker = new HealthChecker(pino(logs.stream), { random: () => 0, check: script.check });
  t.teardown(() => checker.stop());
  const pool = (health: string) => `  app:
${health}    passive_health: { fall: 5 }
    servers: ["127.0.0.1:1"]
`;
  checker.apply(poolsFrom(pool('    health: { type: tcp, interval: 100ms, rise: 2, fall: 2 }\n')));
  await script.callCount(3); // two failures: down; the third check waits
  t.is(logs.lines.filter((l) => l.msg === 'health').length, 1);

  const changed = poolsFrom(pool('    health: { type: tcp, interval: 200ms, rise: 2, fall: 2 }\n'));
  checker.apply(changed);
  t.true(script.calls[2]!.signal.aborted, 'the check of the old schedule is aborted');
  t.false(changed.get('app')!.state.isUp(0), 'the new PoolState starts with the server down');
  t.like(checker.status()[0], { up: false, failures: 2 });
  await script.callCount(4); // the new schedule runs
  t.is(logs.lines.filter((l) => l.msg === 'health').length, 1, 'no transition logged by the reload');

  const unchecked = poolsFrom(pool(''));
  checker.apply(unchecked);
  t.true(script.calls[3]!.signal.aborted);
  t.true(unchecked.get('app')!.state.isUp(0), 'nothing checks it any more: the old verdict is dropped');
  const last = logs.lines.filter((l) => l.msg === 'health').at(-1);
  t.like(last, { from: 'down', to: 'up', source: 'reload' });
});
