// Migration phases (issue 13 §1, docs/migration.md) through a real listener, real clients and real
// backends: an HTTP backend that must receive nothing when twinport answers, and a TLS backend (node https,
// self-signed) that redirected clients must reach on the same port.
import test, { type ExecutionContext } from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import { generate } from 'selfsigned';
import { parseConfigText } from '../../src/config/load.js';
import { H2C_GOAWAY_TEXT } from '../../src/migration/response.js';
import { H2C_PREFACE } from '../../src/protocol/h2c-preface.js';
import { listenServer, startProxy, TEST_IO_ENGINE, type LogLine, type RunningProxy } from '../helpers/proxy-harness.js';
import { hasTool, testWithTools } from '../helpers/tools.js';

interface Backends {
  /** Plaintext HTTP backend: its connections and the requests it answered ("METHOD url body"). */
  readonly plain: { port: number; connections: number; requests: string[] };
  readonly secure: { port: number; requests: string[] };
  close(): Promise<void>;
}

/** Both answer "<tag> METHOD url body" so a client's output says where it ended and what arrived. */
async function startBackends(): Promise<Backends> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  const answer = (tag: string, log: string[]) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const line = `${tag} ${req.method} ${req.url} ${Buffer.concat(body).toString()}`;
      log.push(line);
      res.setHeader('content-type', 'text/plain');
      res.end(line);
    });
  };
  const plainLog: string[] = [];
  const secureLog: string[] = [];
  const plainServer = http.createServer(answer('plain', plainLog));
  const secureServer = https.createServer({ key: pems.private, cert: pems.cert }, answer('tls', secureLog));
  const plain = { port: await listenServer(plainServer), connections: 0, requests: plainLog };
  plainServer.on('connection', () => plain.connections++);
  const secure = { port: await listenServer(secureServer), requests: secureLog };
  return {
    plain,
    secure,
    close: async () => {
      for (const s of [plainServer, secureServer]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
  };
}

function config(b: Backends, migration: string): string {
  return `
listeners:
  - name: keystone
    bind: "127.0.0.1:0"
    migration:
${migration.replace(/^/gm, '      ')}
    routes:
      - match: { protocol: tls }
        to: tls
      - match: { protocol: [http, h2c, other] }
        to: plain
pools:
  tls: { servers: ["127.0.0.1:${b.secure.port}"] }
  plain: { servers: ["127.0.0.1:${b.plain.port}"] }
`;
}

async function world(t: ExecutionContext, migration: string): Promise<{ proxy: RunningProxy; b: Backends; port: number }> {
  const b = await startBackends();
  const proxy = await startProxy(config(b, migration));
  t.teardown(async () => {
    await proxy.stop();
    await b.close();
  });
  return { proxy, b, port: proxy.port() };
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

/** Sends `data` (optionally not half-closing), collects everything until the server closes. */
function raw(port: number, data: Buffer | string, opts: { localAddress?: string; end?: boolean } = {}): Promise<{ answer: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const s: Socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, ...(opts.localAddress !== undefined && { localAddress: opts.localAddress }) });
    const got: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('end', () => s.end());
    s.on('close', () => resolve({ answer: Buffer.concat(got), ...(error !== undefined && { error }) }));
    s.on('connect', () => (opts.end === false ? s.write(data) : s.end(data)));
  });
}

const closes = (p: RunningProxy, pred: (l: LogLine) => boolean): LogLine[] => p.logs.closes().filter(pred);

// ── redirect: real clients follow the 308 to the TLS side of the same port ─────────────────────────

async function redirectWorld(t: ExecutionContext) {
  return world(t, 'phase: redirect');
}

/** The close lines of one followed redirect: the plaintext answered by twinport, then the TLS splice. */
async function assertFollowed(t: ExecutionContext, proxy: RunningProxy, b: Backends): Promise<void> {
  const redirected = await proxy.logs.waitForClose((l) => l['reason'] === 'redirected');
  t.like(redirected, { listener: 'keystone', protocol: 'http', phase: 'redirect' });
  t.is(redirected['pool'], undefined, 'answered by twinport, no backend');
  const spliced = await proxy.logs.waitForClose((l) => l['protocol'] === 'tls');
  t.like(spliced, { pool: 'tls', reason: 'done' });
  t.is(spliced['phase'], undefined, 'TLS is never touched by a phase');
  t.is(b.plain.connections, 0, 'the HTTP backend received nothing');
}

testWithTools({ curl: 'curl' }, 'redirect: curl -L follows the 308 to the TLS backend, POST body intact', async (t) => {
  const { proxy, b, port } = await redirectWorld(t);
  const r = await run('curl', ['-sS', '-k', '-L', '--max-redirs', '2', '--data-binary', 'name=keystone', `http://127.0.0.1:${port}/v3/auth/tokens?nocatalog=1`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'tls POST /v3/auth/tokens?nocatalog=1 name=keystone');
  await assertFollowed(t, proxy, b);
  // Every method gets the redirect, HEAD without a body.
  const head = await run('curl', ['-sS', '-I', `http://127.0.0.1:${port}/x`]);
  t.regex(head.stdout, /^HTTP\/1\.1 308 Permanent Redirect\r\n/);
  t.regex(head.stdout, new RegExp(`\r\nLocation: https://127\\.0\\.0\\.1:${port}/x\r\n`, 'i'));
  for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    const m = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-X', method, `http://127.0.0.1:${port}/m`]);
    t.is(m.stdout, `308 https://127.0.0.1:${port}/m`, method);
  }
  t.is(b.plain.connections, 0);
});

const PY_REQUESTS = `
import sys, warnings, requests
warnings.filterwarnings('ignore')
r = requests.post(sys.argv[1], data=b'name=keystone', verify=False, timeout=20)
print(r.history[0].status_code, r.status_code, r.text, end='')
`;

/**
 * The first python3 that has requests: the one on PATH (a pyenv or venv one may carry it), else Debian's,
 * where `apt-get install python3-requests` (what .ci/run does) puts it.
 */
const PYTHON = hasTool('python3') ? ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import requests']).status === 0) : undefined;
const hasRequests = PYTHON !== undefined;

if (hasRequests || process.env['CI'] === 'true') {
  testWithTools({ python3: 'python3' }, 'redirect: python requests follows the 308 to the TLS backend, POST body intact', async (t) => {
    t.true(hasRequests, 'python3 -c "import requests" fails: pip install requests (or apt-get install -y python3-requests)');
    const { proxy, b, port } = await redirectWorld(t);
    const r = await run(PYTHON!, ['-c', PY_REQUESTS, `http://127.0.0.1:${port}/v3/auth/tokens`]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, '308 200 tls POST /v3/auth/tokens name=keystone');
    await assertFollowed(t, proxy, b);
  });
} else {
  test.skip('redirect: python requests follows the 308 — needs python3 with requests (apt-get install -y python3-requests)', () => {});
}

const NODE_FETCH = `
const r = await fetch(process.argv[1], { method: 'POST', body: 'name=keystone' });
process.stdout.write(\`\${r.redirected} \${r.status} \${await r.text()}\`);
`;

test('redirect: node fetch follows the 308 to the TLS backend, POST body intact', async (t) => {
  const { proxy, b, port } = await redirectWorld(t);
  const r = await run(process.execPath, ['--input-type=module', '-e', NODE_FETCH, `http://127.0.0.1:${port}/v3/auth/tokens`], {
    NODE_TLS_REJECT_UNAUTHORIZED: '0',
    NODE_NO_WARNINGS: '1',
  });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'true 200 tls POST /v3/auth/tokens name=keystone');
  await assertFollowed(t, proxy, b);
});

// ── redirect: the edges ────────────────────────────────────────────────────────────────────────────

test('redirect: an absolute-form target keeps path and query; https_port 443 is left out of the Location', async (t) => {
  const { proxy, b, port } = await world(t, '{ phase: redirect, https_port: 443, redirect_status: 307 }');
  const r = await raw(port, 'GET http://keystone.internal:5000/v3/x?y=1 HTTP/1.1\r\nHost: keystone.internal:5000\r\n\r\n');
  const text = r.answer.toString('latin1');
  t.regex(text, /^HTTP\/1\.1 307 Temporary Redirect\r\n/);
  t.true(text.includes('\r\nLocation: https://keystone.internal/v3/x?y=1\r\n'), text);
  t.true(text.includes('\r\nConnection: close\r\n'));
  t.is(r.error, undefined);
  t.like(await proxy.logs.waitForClose(), { reason: 'redirected', phase: 'redirect', host: 'keystone.internal:5000' });
  t.is(b.plain.connections, 0);
});

test('redirect: HTTP/1.0 without Host goes to canonical_host, or gets the reject answer without one', async (t) => {
  const { proxy, port } = await world(t, 'phase: redirect');
  const r = await raw(port, 'GET /old HTTP/1.0\r\n\r\n');
  t.regex(r.answer.toString('latin1'), /^HTTP\/1\.1 426 Upgrade Required\r\n/);
  t.like(await proxy.logs.waitForClose(), { reason: 'migration-reject', detail: 'no-host', phase: 'redirect' });

  const b = await startBackends();
  const withCanonical = await startProxy(config(b, '{ phase: redirect, canonical_host: keystone.internal }'));
  try {
    const p = withCanonical.port();
    const r2 = await raw(p, 'GET /old HTTP/1.0\r\n\r\n');
    t.true(r2.answer.toString('latin1').includes(`\r\nLocation: https://keystone.internal:${p}/old\r\n`));
    t.like(await withCanonical.logs.waitForClose(), { reason: 'redirected' });
  } finally {
    await withCanonical.stop();
    await b.close();
  }
});

test('redirect: a large request body still being sent does not reset the connection before the client reads the answer', async (t) => {
  const { proxy, b, port } = await world(t, 'phase: redirect');
  const body = Buffer.alloc(4 * 1024 * 1024, 0x61);
  const result = await new Promise<{ answer: string; error?: string }>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    s.on('close', () => resolve({ answer: Buffer.concat(got).toString('latin1'), ...(error !== undefined && { error }) }));
    s.on('connect', async () => {
      s.write(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`);
      // The body follows in pieces, after twinport has answered the head.
      for (let i = 0; i < body.length; i += 256 * 1024) {
        await new Promise((r) => setTimeout(r, 5));
        if (!s.write(body.subarray(i, i + 256 * 1024))) await new Promise((r) => s.once('drain', r));
      }
      s.end();
    });
  });
  t.is(result.error, undefined);
  t.regex(result.answer, /^HTTP\/1\.1 308 Permanent Redirect\r\n/);
  t.true(result.answer.endsWith('\n'), 'the whole body arrived');
  const close = await proxy.logs.waitForClose();
  t.like(close, { reason: 'redirected' });
  t.true((close['bytesIn'] as number) > 1024 * 1024, 'twinport read the rest of the request instead of resetting');
  t.is(b.plain.connections, 0);
});

test('redirect and reject: h2c prior knowledge gets SETTINGS and GOAWAY(INADEQUATE_SECURITY), other plaintext is closed', async (t) => {
  const { proxy, b, port } = await world(t, 'phase: redirect');
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  const h2 = await raw(port, Buffer.concat([H2C_PREFACE, settings]));
  const a = h2.answer;
  t.is(a[3], 4, 'SETTINGS first');
  t.is(a[12], 7, 'then GOAWAY');
  t.is(a.readUInt32BE(22), 0xc);
  t.is(a.subarray(26).toString('latin1'), H2C_GOAWAY_TEXT);
  t.like(await proxy.logs.waitForClose((l) => l['protocol'] === 'h2c'), { reason: 'migration-reject', detail: 'h2c', phase: 'redirect' });

  const ssh = await raw(port, 'SSH-2.0-OpenSSH_9.6\r\n');
  t.is(ssh.answer.length, 0);
  t.like(await proxy.logs.waitForClose((l) => l['protocol'] === 'other'), { reason: 'migration-reject', detail: 'not-http', phase: 'redirect' });
  t.is(b.plain.connections, 0);
});

// ── reject ──────────────────────────────────────────────────────────────────────────────────────────

const REJECT = `phase: reject
exempt:
  sources: ["127.0.0.2/32"]
  user_agents: ["~^legacy-agent/"]`;

testWithTools({ curl: 'curl' }, 'reject: curl gets 426 naming the https URL; an exempt source and an exempt User-Agent still reach the HTTP backend', async (t) => {
  const { proxy, b, port } = await world(t, REJECT);
  const r = await run('curl', ['-sS', '-i', `http://127.0.0.1:${port}/v3/auth/tokens`]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^HTTP\/1\.1 426 Upgrade Required\r\n/);
  t.regex(r.stdout, /\r\nUpgrade: TLS\/1\.2, HTTP\/1\.1\r\n/);
  t.regex(r.stdout, /\r\nConnection: Upgrade, close\r\n/);
  t.true(r.stdout.includes(`Use https://127.0.0.1:${port}/v3/auth/tokens\n`), r.stdout);
  const rejected = await proxy.logs.waitForClose((l) => l['reason'] === 'migration-reject');
  t.like(rejected, { detail: 'http', phase: 'reject', protocol: 'http' });
  t.is(rejected['pool'], undefined);
  t.is(b.plain.connections, 0, 'the HTTP backend received nothing');

  const fromExempt = await run('curl', ['-sS', '--interface', '127.0.0.2', `http://127.0.0.1:${port}/a`]);
  t.is(fromExempt.stdout, 'plain GET /a ', fromExempt.stderr);
  t.like(await proxy.logs.waitForClose((l) => l['exempt'] === 'source'), { phase: 'reject', pool: 'plain', reason: 'done' });

  const legacy = await run('curl', ['-sS', '-A', 'legacy-agent/1.2', `http://127.0.0.1:${port}/b`]);
  t.is(legacy.stdout, 'plain GET /b ', legacy.stderr);
  t.like(await proxy.logs.waitForClose((l) => l['exempt'] === 'user-agent'), { phase: 'reject', pool: 'plain', reason: 'done' });
  t.is(b.plain.connections, 2);

  // TLS passes whatever the phase.
  const secure = await run('curl', ['-sS', '-k', `https://127.0.0.1:${port}/c`]);
  t.is(secure.stdout, 'tls GET /c ');
});

test('names: a per-Host rule overrides the listener phase, first match wins', async (t) => {
  const { proxy, b, port } = await world(
    t,
    `phase: observe
names:
  - { match: "keystone.internal", phase: reject }
  - { match: "*.internal", phase: redirect }`,
  );
  const get = (host: string) => raw(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  t.regex((await get('keystone.internal')).answer.toString(), /^HTTP\/1\.1 426 /);
  t.regex((await get('nova.internal')).answer.toString(), /^HTTP\/1\.1 308 /);
  t.regex((await get('other.example')).answer.toString(), /plain GET \/ $/);
  await proxy.logs.waitFor(() => proxy.logs.closes().length >= 3);
  t.deepEqual(
    proxy.logs.closes().map((l) => [l['host'], l['phase'], l['reason']]),
    [
      ['keystone.internal', 'reject', 'migration-reject'],
      ['nova.internal', 'redirect', 'redirected'],
      ['other.example', 'observe', 'done'],
    ],
  );
  t.is(b.plain.connections, 1);
});

// ── reload ─────────────────────────────────────────────────────────────────────────────────────────

test('reload from observe to reject: a spliced plaintext connection keeps working, a new one gets 426', async (t) => {
  const { proxy, b, port } = await world(t, 'phase: observe');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (path: string, a: http.Agent | false) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent: a }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        })
        .on('error', reject);
    });
  t.deepEqual(await get('/one', agent), { status: 200, body: 'plain GET /one ' });
  t.is(b.plain.connections, 1);

  let next = parseConfigText(config(b, 'phase: reject'), 'reloaded.yaml');
  if (TEST_IO_ENGINE !== undefined) next = { ...next, ioEngine: TEST_IO_ENGINE };
  await proxy.runtime.reload(next);

  // The same kept-alive connection: still spliced to the HTTP backend.
  t.deepEqual(await get('/two', agent), { status: 200, body: 'plain GET /two ' });
  t.is(b.plain.connections, 1, 'the second request went over the first connection');
  // A new connection gets the new phase.
  const fresh = await get('/three', false);
  t.is(fresh.status, 426);
  t.true(fresh.body.includes(`https://127.0.0.1:${port}/three`));
  t.like(await proxy.logs.waitForClose((l) => l['reason'] === 'migration-reject'), { phase: 'reject' });
  agent.destroy();
  t.like(await proxy.logs.waitForClose((l) => l['pool'] === 'plain'), { phase: 'observe', reason: 'done' });
  t.is(b.plain.connections, 1);
  t.deepEqual(closes(proxy, (l) => l['reason'] === 'internal-error'), []);
});
