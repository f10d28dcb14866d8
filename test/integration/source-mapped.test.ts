// Security review F12, end to end: on a dual-stack `[::]` listener an IPv4 client is seen as
// ::ffff:a.b.c.d, and blocks written in that same IPv4-mapped form (`::ffff:127.0.0.0/104` in `source`,
// `::ffff:127.0.0.2` in `proxy_protocol.trusted`) must match it. They used to load and never match: a deny
// route failed open, and the trusted balancer was refused.
import test from 'ava';
import net from 'node:net';
import { startBackend, startProxy, type Backend, type LogLine, type RunningProxy } from '../helpers/proxy-harness.js';

interface World {
  proxy: RunningProxy;
  admin: Backend;
  pub: Backend;
}

async function world(listenerExtra = ''): Promise<World> {
  const answer = (tag: string) => (socket: net.Socket) => socket.once('data', () => socket.end(`${tag}\n`));
  const admin = await startBackend('admin', answer('admin'));
  const pub = await startBackend('public', answer('public'));
  const proxy = await startProxy(`
listeners:
  - name: dual
    bind: "[::]:0"
    timeouts: { peek: 2s, connect: 1s, idle: 10s, silent: 300ms }
${listenerExtra}
    routes:
      - match: { source: ["::ffff:127.0.0.0/104"] }
        to: admin
      - match: {}
        to: public
pools:
  admin: { servers: ["${admin.address}"] }
  public: { servers: ["${pub.address}"] }
`);
  return { proxy, admin, pub };
}

async function teardown(w: World): Promise<void> {
  await w.proxy.stop();
  await w.admin.close();
  await w.pub.close();
}

/** Sends `bytes` from `localAddress` to `host`, resolves with the backend's answer and the close line. */
async function send(w: World, host: string, localAddress: string, bytes: string): Promise<{ answer: string; line: LogLine }> {
  const answer = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ port: w.proxy.port(), host, localAddress }, () => s.end(bytes));
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(got).toString()));
  });
  // `peer` is the socket's address when a PROXY header named another client, else `client` is.
  const line = await w.proxy.logs.waitForClose((l) => String(l['peer'] ?? l['client']).includes(localAddress));
  return { answer, line };
}

test('[::] listener: 127.0.0.5 takes the ::ffff:127.0.0.0/104 route, ::1 does not', async (t) => {
  const w = await world();
  try {
    const v4 = await send(w, '127.0.0.1', '127.0.0.5', 'hello\n');
    t.is(v4.answer, 'admin\n');
    t.is(v4.line['pool'], 'admin');
    const v6 = await send(w, '::1', '::1', 'hello\n');
    t.is(v6.answer, 'public\n');
    t.is(v6.line['pool'], 'public');
  } finally {
    await teardown(w);
  }
});

test('[::] listener: a PROXY header from 127.0.0.2 is trusted by "::ffff:127.0.0.2"', async (t) => {
  const w = await world('    proxy_protocol: { trusted: ["::ffff:127.0.0.2"] }');
  try {
    // The header names a client outside 127/8, so the catch-all serves it: the route sees the
    // address the trusted balancer vouched for, not the balancer's.
    const { answer, line } = await send(w, '127.0.0.1', '127.0.0.2', 'PROXY TCP4 198.51.100.7 192.0.2.2 40000 443\r\nhello\n');
    t.is(line['reason'], 'done');
    t.is(line['client'], '198.51.100.7:40000');
    t.is(line['pool'], 'public');
    t.is(answer, 'public\n');
  } finally {
    await teardown(w);
  }
});
