// One twinport port, several pools: each real client lands on the backend its route names, and the
// backend receives exactly the bytes the client sent.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { execFile, spawn } from 'node:child_process';
import { generate } from 'selfsigned';
import { startBackend, startProxy, startTap, sha256, listenServer, type Backend, type RunningProxy } from '../helpers/proxy-harness.js';
import { hasTool, testWithTools } from '../helpers/tools.js';

interface World {
  proxy: RunningProxy;
  backends: Record<string, Backend>;
}

/** Tagged raw backends: they record what arrives and answer their tag after the client's FIN. */
async function world(routes: string, pools: string[]): Promise<World> {
  const backends: Record<string, Backend> = {};
  // Answer at once with bytes that are not TLS, so a TLS client fails fast and closes.
  for (const p of pools) backends[p] = await startBackend(p, (socket) => socket.once('data', () => socket.end(`${p}\n`)));
  const yaml = `
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 2s, connect: 1s, idle: 10s, silent: 300ms }
    routes:
${routes}
pools:
${pools.map((p) => `  ${p}:\n    servers: ["${backends[p]!.address}"]`).join('\n')}
`;
  return { proxy: await startProxy(yaml), backends };
}

async function teardown(w: World): Promise<void> {
  await w.proxy.stop();
  for (const b of Object.values(w.backends)) await b.close();
}

/**
 * Sends a real ClientHello from node's TLS stack through a recording relay in front of twinport, and
 * returns the raw bytes the client wrote (its first write is the hello).
 */
async function tlsHello(port: number, opts: tls.ConnectionOptions): Promise<{ sent: Buffer; hello: Buffer }> {
  const tap = await startTap(port);
  try {
    await new Promise<void>((resolve) => {
      const s = tls.connect({ port: tap.port, host: '127.0.0.1', rejectUnauthorized: false, ...opts });
      s.on('error', () => {});
      // The raw backends answer with plaintext, which fails the handshake: that ends the client.
      s.on('close', () => resolve());
    });
    const session = tap.sessions[0]!;
    await session.closed;
    return { sent: Buffer.concat(session.up), hello: session.up[0] ?? Buffer.alloc(0) };
  } finally {
    await tap.close();
  }
}

const ROUTES = `
      - match: { sni: "api.example.com" }
        to: exact
      - match: { sni: "*.wild.example" }
        to: wildcard
      - match: { sni: "~^re-[0-9]+\\\\.example$" }
        to: regex
      - match: { sni: null }
        to: nosni
      - match: { protocol: tls, alpn: [h2] }
        to: alpn
      - match: { protocol: tls }
        to: tls
      - match: { host: "plain.example" }
        to: hostroute
      - match: { protocol: [http] }
        to: http
      - match: { protocol: h2c }
        to: h2c
      - match: { protocol: other }
        to: other
      - match: { protocol: silent }
        to: silent`;
const POOLS = ['exact', 'wildcard', 'regex', 'nosni', 'alpn', 'tls', 'hostroute', 'http', 'h2c', 'other', 'silent'];

const tlsCases: [string, tls.ConnectionOptions, string][] = [
  ['exact SNI, case-insensitive with a trailing dot', { servername: 'API.Example.com.' }, 'exact'],
  ['wildcard SNI, one label', { servername: 'a.wild.example' }, 'wildcard'],
  ['wildcard does not take two labels', { servername: 'a.b.wild.example' }, 'tls'],
  ['regex SNI', { servername: 're-42.example' }, 'regex'],
  ['no SNI', {}, 'nosni'],
  ['ALPN h2 offered', { servername: 'other.example', ALPNProtocols: ['http/1.1', 'h2'] }, 'alpn'],
  ['any other TLS', { servername: 'other.example', ALPNProtocols: ['http/1.1'] }, 'tls'],
];

for (const [title, opts, pool] of tlsCases) {
  test(`TLS: ${title} → pool ${pool}, hello byte-identical`, async (t) => {
    const w = await world(ROUTES, POOLS);
    try {
      const { sent, hello } = await tlsHello(w.proxy.port(), opts);
      const rec = await w.backends[pool]!.connection(1);
      await rec.closed;
      const got = Buffer.concat(rec.received);
      // The whole hello arrived unchanged; anything the client wrote after it (an alert) arrived in
      // order, up to the moment the client's own close cut it short.
      t.true(got.length >= hello.length);
      t.is(sha256(got), sha256(sent.subarray(0, got.length)));
      const line = await w.proxy.logs.waitForClose();
      t.is(line['pool'], pool);
      t.is(line['protocol'], 'tls');
      if (opts.servername !== undefined) t.is(line['sni'], opts.servername);
      else t.false('sni' in line);
      for (const other of POOLS.filter((p) => p !== pool)) t.is(w.backends[other]!.connections.length, 0);
    } finally {
      await teardown(w);
    }
  });
}

test('plaintext HTTP by Host and by protocol; node http client gets the backend answer', async (t) => {
  const w = await world(ROUTES, POOLS);
  try {
    const get = (host: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = http.request({ port: w.proxy.port(), host: '127.0.0.1', headers: { host }, agent: false }, (res) => {
          res.resume();
          resolve(String(res.statusCode));
        });
        req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code}`));
        req.end();
        void reject;
      });
    // The raw backends answer with a tag, not HTTP: the client sees a parse error, but the routing is
    // what this test checks; the bytes arrive unchanged.
    await get('PLAIN.example:8080');
    await get('else.example');
    const a = await w.backends['hostroute']!.connection(1);
    const b = await w.backends['http']!.connection(1);
    t.regex(Buffer.concat(a.received).toString('latin1'), /^GET \/ HTTP\/1\.1\r\n[\s\S]*[Hh]ost: PLAIN\.example:8080\r\n/);
    t.regex(Buffer.concat(b.received).toString('latin1'), /[Hh]ost: else\.example\r\n/);
    const lines = await Promise.all([
      w.proxy.logs.waitForClose((l) => l['pool'] === 'hostroute'),
      w.proxy.logs.waitForClose((l) => l['pool'] === 'http'),
    ]);
    t.is(lines[0]['host'], 'PLAIN.example:8080');
    t.is(lines[0]['protocol'], 'http');
  } finally {
    await teardown(w);
  }
});

test('byte-identical both ways through a tap: node http request and response', async (t) => {
  const server = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(`got ${n} bytes for ${req.url}`));
  });
  const port = await listenServer(server);
  const tap = await startTap(port);
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: ["127.0.0.1:${tap.port}"]
`);
  try {
    const clientTap = await startTap(proxy.port());
    const body = Buffer.alloc(300_000, 'x');
    const answer = await new Promise<string>((resolve, reject) => {
      const req = http.request({ port: clientTap.port, method: 'POST', path: '/upload', agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(Buffer.concat(parts).toString()));
      });
      req.on('error', reject);
      req.end(body);
    });
    t.is(answer, 'got 300000 bytes for /upload');
    await proxy.logs.waitForClose();
    await tap.sessions[0]!.closed;
    await clientTap.sessions[0]!.closed;
    t.is(sha256(Buffer.concat(tap.sessions[0]!.up)), sha256(Buffer.concat(clientTap.sessions[0]!.up)));
    t.is(sha256(Buffer.concat(tap.sessions[0]!.down)), sha256(Buffer.concat(clientTap.sessions[0]!.down)));
    await clientTap.close();
  } finally {
    await proxy.stop();
    await tap.close();
    server.close();
  }
});

test('h2c prior knowledge reaches an HTTP/2 backend and the answer comes back', async (t) => {
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200 });
    stream.end(`h2c backend saw ${headers[':path']}`);
  });
  const port = await listenServer(h2 as unknown as net.Server);
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { protocol: h2c }
        to: h2
pools:
  h2:
    servers: ["127.0.0.1:${port}"]
`);
  try {
    const client = http2.connect(`http://127.0.0.1:${proxy.port()}`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': '/prior' });
      let s = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (s += c));
      req.on('end', () => resolve(s));
      req.on('error', reject);
      req.end();
    });
    client.close();
    t.is(body, 'h2c backend saw /prior');
    const line = await proxy.logs.waitForClose();
    t.is(line['protocol'], 'h2c');
    t.is(line['reason'], 'done');
    if (hasTool('curl')) {
      const out = await new Promise<string>((resolve) =>
        execFile('curl', ['-sS', '--http2-prior-knowledge', `http://127.0.0.1:${proxy.port()}/curl`], (err, stdout, stderr) => resolve(err === null ? stdout : stderr)),
      );
      t.is(out, 'h2c backend saw /curl');
    } else if (process.env['CI'] === 'true') {
      t.fail('curl missing under CI (apt-get install -y curl)');
    }
  } finally {
    await proxy.stop();
    h2.close();
  }
});

test('server-speaks-first: a silent client goes to the `protocol: silent` route and gets its banner', async (t) => {
  const banner = await startBackend('smtp', (socket) => socket.write('220 smtp.example ESMTP\r\n'));
  const tlsPool = await startBackend('tls');
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    timeouts: { silent: 100ms }
    routes:
      - match: { protocol: tls }
        to: tls
      - match: { protocol: silent }
        to: smtp
pools:
  tls:
    servers: ["${tlsPool.address}"]
  smtp:
    servers: ["${banner.address}"]
`);
  try {
    const got = await new Promise<string>((resolve) => {
      const s = net.connect(proxy.port(), '127.0.0.1');
      s.once('data', (c: Buffer) => {
        resolve(c.toString());
        s.end();
      });
    });
    t.is(got, '220 smtp.example ESMTP\r\n');
    const line = await proxy.logs.waitForClose();
    t.is(line['protocol'], 'silent');
    t.is(line['pool'], 'smtp');
    t.is(tlsPool.connections.length, 0);
  } finally {
    await proxy.stop();
    await banner.close();
    await tlsPool.close();
  }
});

testWithTools({ curl: 'curl', openssl: 'openssl' }, 'curl http, curl -k https and openssl s_client reach real HTTP/HTTPS backends through one port', async (t) => {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  const plain = http.createServer((req, res) => res.end(`plain ${req.headers.host}`));
  const secure = tls.createServer({ key: pems.private, cert: pems.cert }, (s) => {
    s.once('data', () => s.end(`HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nsecure ${s.servername === 'localhost' ? 'ok' : 'no'}`));
  });
  const plainPort = await listenServer(plain);
  const securePort = await listenServer(secure);
  const tapSecure = await startTap(securePort);
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    routes:
      - match: { protocol: tls }
        to: https
      - match: { protocol: http }
        to: http
pools:
  http: { servers: ["127.0.0.1:${plainPort}"] }
  https: { servers: ["127.0.0.1:${tapSecure.port}"] }
`);
  const run = (cmd: string, args: string[], input?: string): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (out += c.toString()));
      p.on('close', (code) => resolve({ code, out }));
      p.stdin.end(input ?? '');
    });
  try {
    const port = proxy.port();
    const a = await run('curl', ['-sS', `http://127.0.0.1:${port}/x`]);
    t.is(a.out, `plain 127.0.0.1:${port}`);
    const b = await run('curl', ['-sSk', '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/`]);
    t.is(b.out, 'secure ok');
    const c = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-quiet'], 'GET / HTTP/1.0\r\n\r\n');
    t.regex(c.out, /secure ok/);
    const lines = await Promise.all([1, 2, 3].map((n) => proxy.logs.waitFor((l) => l.msg === 'close' && l['conn'] === n)));
    t.deepEqual(lines.map((l) => l['pool']).sort(), ['http', 'https', 'https']);
    t.is(lines.find((l) => l['pool'] === 'https')?.['sni'], 'localhost');
    t.is(tapSecure.sessions.length, 2);
  } finally {
    await proxy.stop();
    await tapSecure.close();
    plain.close();
    secure.close();
  }
});
