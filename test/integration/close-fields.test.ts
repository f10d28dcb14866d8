// Issue 14 §3: what the close line and the routes carry beyond the basics — the recognised `other`
// protocol (and a route key for it, so SSH and garbage need not share a pool), `ech` and `ja4` for TLS,
// and the fail-open peek-timeout policy that sends undecided bytes to the `other` route.
import test from 'ava';
import net from 'node:net';
import { clientHelloRecords, extEch, typicalExtensions } from '../helpers/tls-build.js';
import { exchange, startBackend, startProxy, type Backend, type RunningProxy } from '../helpers/proxy-harness.js';

interface World {
  proxy: RunningProxy;
  ssh: Backend;
  other: Backend;
  tls: Backend;
}

async function world(extra = ''): Promise<World> {
  const ssh = await startBackend('ssh');
  const other = await startBackend('other');
  const tls = await startBackend('tls');
  const proxy = await startProxy(`
log: { ja4: true }
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 400ms }
${extra}
    routes:
      - match: { protocol: tls }
        to: tls
      - match: { protocol: other, other: ssh }
        to: ssh
      - match: { protocol: other }
        to: other
pools:
  ssh: { servers: ["127.0.0.1:${ssh.port}"] }
  other: { servers: ["127.0.0.1:${other.port}"] }
  tls: { servers: ["127.0.0.1:${tls.port}"] }
`);
  return { proxy, ssh, other, tls };
}

async function stop(w: World): Promise<void> {
  await w.proxy.stop();
  for (const b of [w.ssh, w.other, w.tls]) await b.close();
}

test('an SSH banner goes to the `other: ssh` route and its close line says other: ssh; unrecognised bytes to the plain other route', async (t) => {
  const w = await world();
  try {
    const banner = Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
    t.is((await exchange(w.proxy.port(), banner)).answer.toString(), 'ssh\n');
    const garbage = Buffer.from([0x00, 0x01, 0x02, 0xfe, 0xff, 0x10, 0x20, 0x30, 0x40]);
    t.is((await exchange(w.proxy.port(), garbage)).answer.toString(), 'other\n');
    const received = Buffer.concat((await w.ssh.connection(1)).received);
    t.true(received.equals(banner), 'the banner arrives byte-identical');
    const lines = await Promise.all([w.proxy.logs.waitForClose((l) => l['pool'] === 'ssh'), w.proxy.logs.waitForClose((l) => l['pool'] === 'other')]);
    t.like(lines[0], { protocol: 'other', other: 'ssh', reason: 'done' });
    t.is(lines[1]['other'], undefined, 'unrecognised bytes name no protocol');
  } finally {
    await stop(w);
  }
});

test('log.ja4 puts the JA4 fingerprint in the TLS close line; a hello with encrypted_client_hello says ech: true', async (t) => {
  const w = await world();
  try {
    const hello = clientHelloRecords({ extensions: [...typicalExtensions('public.example'), extEch()] });
    t.is((await exchange(w.proxy.port(), hello)).answer.toString(), 'tls\n');
    const line = await w.proxy.logs.waitForClose((l) => l['pool'] === 'tls');
    t.is(line['ech'], true);
    t.regex(String(line['ja4']), /^t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}$/);
    const plain = clientHelloRecords({ extensions: typicalExtensions('plain.example') });
    await exchange(w.proxy.port(), plain);
    const second = await w.proxy.logs.waitForClose((l) => l['sni'] === 'plain.example');
    t.is(second['ech'], undefined);
  } finally {
    await stop(w);
  }
});

/** Writes `first`, waits past the peek deadline, writes `later`, half-closes; returns what came back. */
function slowClient(port: number, first: Buffer, later: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    s.on('connect', () => {
      s.write(first);
      setTimeout(() => {
        if (!s.destroyed) s.end(later);
      }, 700);
    });
  });
}

test('on_peek_timeout: route sends bytes that got no verdict by the deadline to the other route, unchanged; close (the default) closes them', async (t) => {
  const w = await world('    on_peek_timeout: route');
  try {
    // Half a TLS record header: still a valid beginning of a ClientHello when the 400 ms deadline comes.
    const first = Buffer.from([0x16, 0x03, 0x01, 0x02]);
    const later = Buffer.from('after the deadline');
    t.is(await slowClient(w.proxy.port(), first, later), 'other\n');
    const rec = await w.other.connection(1);
    await rec.closed;
    t.true(Buffer.concat(rec.received).equals(Buffer.concat([first, later])), 'the peeked bytes and the later ones, in order');
    const line = await w.proxy.logs.waitForClose();
    t.like(line, { protocol: 'other', pool: 'other', reason: 'done' });
    t.regex(String(line['failOpen']), /^tls\./);
    t.is(w.tls.connections.length, 0);
  } finally {
    await stop(w);
  }
  const closing = await world();
  try {
    await slowClient(closing.proxy.port(), Buffer.from([0x16, 0x03, 0x01, 0x02]), Buffer.from('x'));
    const line = await closing.proxy.logs.waitForClose();
    t.is(line['reason'], 'peek-timeout');
    t.is(closing.other.connections.length, 0);
  } finally {
    await stop(closing);
  }
});
