// Bad input gets a clear answer and loses nothing: every kind of broken, slow or silent client is closed
// with its logged reason; the backend receives nothing for rejects; no socket leaks; a healthy
// connection opened before it is not disturbed.
import test from 'ava';
import net from 'node:net';
import { extSni, clientHelloRecords, typicalExtensions, ext, u16, vec16 } from '../helpers/tls-build.js';
import { startBackend, startProxy, type Backend, type RunningProxy, type LogLine } from '../helpers/proxy-harness.js';

interface Setup {
  proxy: RunningProxy;
  tlsPool: Backend;
  httpPool: Backend;
}

async function setup(extra = ''): Promise<Setup> {
  // The HTTP backend answers each request line it sees, so a kept-alive client can check it is served.
  const httpPool = await startBackend('http', (socket) => {
    socket.on('end', () => socket.end());
    socket.on('data', (c: Buffer) => {
      for (const line of c.toString('latin1').split('\r\n')) if (line.startsWith('GET ')) socket.write(`ok ${line.split(' ')[1]}\n`);
    });
  });
  const tlsPool = await startBackend('tls');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 300ms, connect: 500ms, idle: 5s }
    max_client_hello: 4KiB
${extra}
    routes:
      - match: { protocol: tls }
        to: tls
      - match: { protocol: http }
        to: http
pools:
  tls: { servers: ["${tlsPool.address}"] }
  http: { servers: ["${httpPool.address}"] }
`);
  return { proxy, tlsPool, httpPool };
}

async function teardown(s: Setup): Promise<void> {
  await s.proxy.stop();
  await s.tlsPool.close();
  await s.httpPool.close();
}

/** A kept-alive plaintext connection: opened first, used again after the bad client is gone. */
async function healthyConnection(port: number): Promise<{ ask(path: string): Promise<string>; close(): void }> {
  const sock = net.connect({ port, host: '127.0.0.1' });
  await new Promise((r) => sock.once('connect', r));
  const ask = (path: string): Promise<string> =>
    new Promise((resolve) => {
      sock.once('data', (c: Buffer) => resolve(c.toString()));
      sock.write(`GET ${path} HTTP/1.1\r\nHost: healthy\r\n\r\n`);
    });
  await ask('/before');
  return { ask, close: () => sock.destroy() };
}

interface BadCase {
  readonly title: string;
  /** Writes to a fresh connection; resolves when the client is done writing (it may stay open). */
  readonly act: (sock: net.Socket) => Promise<void>;
  readonly reason: string;
  readonly detail?: string | RegExp;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const hello = clientHelloRecords({ extensions: typicalExtensions('good.example') });

const cases: BadCase[] = [
  { title: 'silent client (no silent route)', act: async () => {}, reason: 'peek-timeout', detail: 'silent' },
  {
    title: 'slowloris: a valid request head one byte every 40 ms',
    act: async (s) => {
      for (const b of Buffer.from('GET / HTTP/1.1\r\nHost: slow\r\n')) {
        if (s.destroyed) return;
        s.write(Buffer.from([b]));
        await sleep(40);
      }
    },
    reason: 'peek-timeout',
    detail: /^http\./,
  },
  {
    title: 'truncated ClientHello then FIN',
    act: async (s) => {
      s.end(hello.subarray(0, 60));
    },
    reason: 'peek-eof',
    detail: /^tls\./,
  },
  {
    title: 'oversized request head beyond max_client_hello',
    act: async (s) => {
      s.write(`GET / HTTP/1.1\r\nHost: big\r\nX-Pad: ${'a'.repeat(5000)}`);
    },
    reason: 'peek-too-large',
    detail: /^http\./,
  },
  {
    title: 'ClientHello declaring more than max_client_hello',
    act: async (s) => {
      s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x00, 0x40, 0x00]));
    },
    reason: 'rejected',
    detail: 'tls.hello.too-large',
  },
  {
    title: 'garbage bytes',
    act: async (s) => {
      s.write(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x42, 0x99, 0x00, 0x01]));
    },
    reason: 'rejected',
    detail: 'detect.unrecognised',
  },
  {
    title: 'malformed ClientHello: SNI list length lies',
    act: async (s) => {
      const exts = typicalExtensions('x.example').map((e) =>
        e.type === 0 ? ext(0, Buffer.concat([u16(200), Buffer.from([0]), vec16(Buffer.from('x.example'))])) : e,
      );
      s.write(clientHelloRecords({ extensions: exts }));
    },
    reason: 'rejected',
    detail: /^tls\.sni\./,
  },
  {
    title: 'malformed ClientHello: two SNI host_names',
    act: async (s) => {
      s.write(clientHelloRecords({ extensions: [extSni('a.example', 'b.example'), ...typicalExtensions().slice(1)] }));
    },
    reason: 'rejected',
    detail: /^tls\.sni\./,
  },
  {
    title: 'HTTP head that lies: two Host headers',
    act: async (s) => {
      s.write('GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
    },
    reason: 'rejected',
    detail: /^http\.host\./,
  },
  {
    title: 'alert record instead of a hello',
    act: async (s) => {
      s.write(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]));
    },
    reason: 'rejected',
  },
  {
    title: 'PROXY header from an untrusted source',
    act: async (s) => {
      s.write('PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    },
    reason: 'rejected',
    detail: 'proxy.untrusted',
  },
];

for (const c of cases) {
  test(`bad input: ${c.title} → ${c.reason}`, async (t) => {
    const s = await setup();
    try {
      const healthy = await healthyConnection(s.proxy.port());
      const sock = net.connect({ port: s.proxy.port(), host: '127.0.0.1', noDelay: true });
      sock.on('error', () => {});
      await new Promise((r) => sock.once('connect', r));
      const closed = new Promise((r) => sock.once('close', r));
      await c.act(sock);
      const line: LogLine = await s.proxy.logs.waitForClose((l) => l['reason'] !== 'done' && l['conn'] !== 1);
      await closed;
      t.is(line['reason'], c.reason);
      if (typeof c.detail === 'string') t.is(line['detail'], c.detail);
      else if (c.detail instanceof RegExp) t.regex(String(line['detail']), c.detail);
      t.false('server' in line, 'no server was contacted');
      t.is(s.tlsPool.connections.length, 0);
      t.is(s.httpPool.connections.length, 1, 'only the healthy client reached a backend');
      // The healthy connection is still served, and only it remains open.
      t.is(await healthy.ask('/after'), 'ok /after\n');
      t.is(s.proxy.runtime.activeConnections, 1);
      healthy.close();
      await s.proxy.logs.waitForClose((l) => l['conn'] === 1);
      t.is(s.proxy.runtime.activeConnections, 0);
    } finally {
      await teardown(s);
    }
  });
}

test('a trusted PROXY source must send a header: plain request from it → rejected proxy.missing', async (t) => {
  const s = await setup('    proxy_protocol: { trusted: ["127.0.0.0/8"] }');
  try {
    const sock = net.connect({ port: s.proxy.port(), host: '127.0.0.1' });
    sock.on('error', () => {});
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const line = await s.proxy.logs.waitForClose();
    t.is(line['reason'], 'rejected');
    t.is(line['detail'], 'proxy.missing');
    t.is(s.httpPool.connections.length, 0);
  } finally {
    await teardown(s);
  }
});

test('a trusted PROXY header sets the client address for logs and is stripped before the backend', async (t) => {
  const s = await setup('    proxy_protocol: { trusted: ["127.0.0.0/8"] }');
  try {
    const sock = net.connect({ port: s.proxy.port(), host: '127.0.0.1' });
    const request = 'GET /via-lb HTTP/1.1\r\nHost: x\r\n\r\n';
    sock.write(`PROXY TCP4 198.51.100.7 192.0.2.2 40000 443\r\n${request}`);
    const answer = await new Promise<string>((r) => sock.once('data', (c: Buffer) => r(c.toString())));
    t.is(answer, 'ok /via-lb\n');
    sock.end();
    const line = await s.proxy.logs.waitForClose();
    t.is(line['client'], '198.51.100.7:40000');
    t.regex(String(line['peer']), /^127\.0\.0\.1:\d+$/);
    const rec = await s.httpPool.connection(1);
    await rec.closed;
    t.is(Buffer.concat(rec.received).toString('latin1'), request);
  } finally {
    await teardown(s);
  }
});

test('connection limit: over max_connections → limit, the others are served', async (t) => {
  const s = await setup('    max_connections: 1');
  try {
    const healthy = await healthyConnection(s.proxy.port());
    const extra = net.connect({ port: s.proxy.port(), host: '127.0.0.1' });
    extra.on('error', () => {});
    const line = await s.proxy.logs.waitForClose();
    t.is(line['reason'], 'limit');
    t.is(await healthy.ask('/still'), 'ok /still\n');
    healthy.close();
  } finally {
    await teardown(s);
  }
});
