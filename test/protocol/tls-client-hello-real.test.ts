// ClientHellos written by real TLS stacks (node's tls, openssl s_client), captured by a raw TCP server on
// loopback and checked against what the client was asked to send and against read-tls-client-hello, an
// independent parser (single-record hellos only).
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { calculateJa4, readTlsClientHello } from 'read-tls-client-hello';
import { generate } from 'selfsigned';
import { createTlsProbe, type TlsFields, type TlsMatch } from '../../src/protocol/tls-client-hello.js';
import type { NeedMore, Reject } from '../../src/protocol/verdict.js';
import { testWithTools } from '../helpers/tools.js';

type V = TlsMatch | NeedMore | Reject;

interface Capture {
  readonly bytes: Buffer;
  readonly verdict: V;
}

/** Listens on 127.0.0.1:0, runs the client, returns the first flight once the probe has a verdict. */
async function captureHello(t: ExecutionContext, startClient: (port: number) => () => void): Promise<Capture> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const captured = new Promise<Capture>((resolve) => {
    server.once('connection', (sock) => {
      t.teardown(() => sock.destroy());
      sock.on('error', () => {});
      const probe = createTlsProbe();
      const chunks: Buffer[] = [];
      const settle = (final: boolean): boolean => {
        const bytes = Buffer.concat(chunks);
        const verdict = probe.probe(bytes, { final });
        if (verdict.kind === 'need-more') return false;
        sock.destroy();
        resolve({ bytes, verdict });
        return true;
      };
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        settle(false);
      });
      sock.on('end', () => settle(true));
    });
  });
  t.teardown(startClient(port));
  return captured;
}

function nodeClient(opts: tls.ConnectionOptions): (port: number) => () => void {
  return (port) => {
    const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    c.on('error', () => {});
    return () => c.destroy();
  };
}

function fieldsOf(t: ExecutionContext, c: Capture): TlsFields {
  if (c.verdict.kind !== 'match') {
    t.fail(`expected a TLS match, got ${JSON.stringify(c.verdict)}`);
    throw new Error('no match');
  }
  t.is(c.verdict.consumed, c.bytes.length);
  return c.verdict.fields;
}

/** Compares our fields with read-tls-client-hello's for a single-record hello. */
async function checkWithOracle(t: ExecutionContext, c: Capture, f: TlsFields): Promise<void> {
  const o = await readTlsClientHello(Readable.from(c.bytes, { objectMode: false }));
  t.is(f.legacyVersion, o.version);
  t.deepEqual(f.sessionId, o.sessionId);
  t.deepEqual(f.cipherSuites, o.cipherSuites);
  t.deepEqual(f.compressionMethods, o.compressionMethods);
  t.deepEqual(f.extensionTypes, o.extensions.map((e) => e.id));
  const data = (id: number): Record<string, unknown> | null | undefined => o.extensions.find((e) => e.id === id)?.data;
  t.is(f.sni, data(0)?.['serverName'] as string | undefined);
  t.deepEqual(f.alpn, data(16)?.['protocols'] as string[] | undefined);
  t.deepEqual(f.supportedVersions, data(43)?.['versions'] as number[] | undefined);
  t.deepEqual(f.supportedGroups, data(10)?.['groups'] as number[] | undefined);
  t.deepEqual(f.signatureAlgorithms, data(13)?.['algorithms'] as number[] | undefined);
  t.deepEqual(f.pskModes, data(45)?.['modes'] as number[] | undefined);
  const shares = data(51)?.['entries'] as Array<{ group: number }> | undefined;
  t.deepEqual(f.keyShareGroups, shares?.map((e) => e.group));
  const ticketLength = data(35)?.['ticketLength'] as number | undefined;
  t.is(f.sessionTicket?.length, ticketLength);
  const psk = data(41)?.['identities'] as Array<{ identityLength: number }> | undefined;
  t.deepEqual(
    f.pskIdentities?.map((i) => i.length),
    psk?.map((i) => i.identityLength),
  );
  t.is(f.ja4, calculateJa4(o));
}

let pems: Promise<{ key: string; cert: string }> | undefined;
function certificate(): Promise<{ key: string; cert: string }> {
  pems ??= generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' }).then((p) => ({
    key: p.private,
    cert: p.cert,
  }));
  return pems;
}

/** A session from a real handshake with a node TLS server (a ticket in 1.2, a PSK in 1.3). */
async function obtainSession(t: ExecutionContext, version: tls.SecureVersion): Promise<Buffer> {
  const { key, cert } = await certificate();
  const server = tls.createServer({ key, cert, minVersion: version, maxVersion: version }, (s) => {
    s.on('error', () => {});
    s.end('hi');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, maxVersion: version });
  c.on('error', () => {});
  t.teardown(() => c.destroy());
  c.resume();
  const [session] = (await once(c, 'session')) as [Buffer];
  c.destroy();
  return session;
}

test('node TLS 1.3 hello with SNI and ALPN', async (t) => {
  const c = await captureHello(t, nodeClient({ servername: 'svc.example.com', ALPNProtocols: ['h2', 'http/1.1'] }));
  const f = fieldsOf(t, c);
  t.is(f.sni, 'svc.example.com');
  t.deepEqual(f.alpn, ['h2', 'http/1.1']);
  t.true(f.supportedVersions?.includes(0x0304));
  t.is(f.records, 1);
  t.true(f.ja4.startsWith('t13d'));
  t.true(f.ja4.includes('h2_'));
  await checkWithOracle(t, c, f);
});

test('node TLS 1.2-only hello: no supported_versions, no key_share', async (t) => {
  const c = await captureHello(t, nodeClient({ servername: 'old.example.com', maxVersion: 'TLSv1.2' }));
  const f = fieldsOf(t, c);
  t.is(f.sni, 'old.example.com');
  t.is(f.legacyVersion, 0x0303);
  t.is(f.supportedVersions, undefined);
  t.is(f.keyShareGroups, undefined);
  t.is(f.alpn, undefined);
  t.true(f.ja4.startsWith('t12d'));
  t.true(f.ja4.slice(8, 10) === '00');
  await checkWithOracle(t, c, f);
});

test('node hello to an IP without servername: no SNI', async (t) => {
  const c = await captureHello(t, nodeClient({}));
  const f = fieldsOf(t, c);
  t.is(f.sni, undefined);
  t.false(f.extensionTypes.includes(0));
  t.is(f.ja4[3], 'i');
  await checkWithOracle(t, c, f);
});

test('node TLS 1.2 resumption offers the ticket in session_ticket', async (t) => {
  const session = await obtainSession(t, 'TLSv1.2');
  const c = await captureHello(t, nodeClient({ servername: 'localhost', maxVersion: 'TLSv1.2', session }));
  const f = fieldsOf(t, c);
  t.truthy(f.sessionTicket);
  t.true((f.sessionTicket?.length ?? 0) > 0);
  await checkWithOracle(t, c, f);
});

test('node TLS 1.3 resumption offers a PSK, last, with psk_key_exchange_modes', async (t) => {
  const session = await obtainSession(t, 'TLSv1.3');
  const c = await captureHello(t, nodeClient({ servername: 'localhost', session }));
  const f = fieldsOf(t, c);
  t.is(f.pskIdentities?.length, 1);
  t.true((f.pskIdentities?.[0]?.length ?? 0) > 0);
  t.is(f.extensionTypes.at(-1), 41);
  t.true((f.pskModes?.length ?? 0) > 0);
  await checkWithOracle(t, c, f);
});

function opensslClient(args: string[]): (port: number) => () => void {
  return (port) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.on('error', () => {});
    const kill = (): void => {
      child.kill();
    };
    process.once('exit', kill);
    return () => {
      process.off('exit', kill);
      kill();
    };
  };
}

testWithTools({ openssl: 'openssl' }, 'openssl s_client hello with SNI and ALPN, checked against the oracle', async (t) => {
  const c = await captureHello(t, opensslClient(['-servername', 'o.example.net', '-alpn', 'h2,http/1.1']));
  const f = fieldsOf(t, c);
  t.is(f.sni, 'o.example.net');
  t.deepEqual(f.alpn, ['h2', 'http/1.1']);
  t.is(f.records, 1);
  await checkWithOracle(t, c, f);
});

testWithTools({ openssl: 'openssl' }, 'openssl s_client -max_send_frag 512 with a > 1500-byte hello spans records', async (t) => {
  // Under the cap on ALPN names (64), long enough to pass 1 500 bytes.
  const alpn = Array.from({ length: 60 }, (_, i) => `proto-${i}-${'x'.repeat(20)}`);
  const c = await captureHello(
    t,
    opensslClient(['-servername', 'big.example.org', '-alpn', alpn.join(','), '-max_send_frag', '512']),
  );
  const f = fieldsOf(t, c);
  t.true(c.bytes.length > 1500);
  t.is(f.sni, 'big.example.org');
  t.deepEqual(f.alpn, alpn);
  // Every record carries at most 512 fragment bytes, so the count follows from the hello's length.
  t.is(f.records, Math.ceil((f.helloLength + 4) / 512));
  // Fed one byte at a time, the same verdict.
  const probe = createTlsProbe();
  let v: V = { kind: 'need-more' };
  for (let n = 1; n <= c.bytes.length && v.kind === 'need-more'; n++) v = probe.probe(c.bytes.subarray(0, n), { final: false });
  t.deepEqual(v, c.verdict);
});

testWithTools({ openssl: 'openssl' }, 'openssl s_client -tls1_2 -groups: no supported_versions, groups as asked', async (t) => {
  const c = await captureHello(t, opensslClient(['-tls1_2', '-groups', 'P-384:P-256', '-noservername']));
  const f = fieldsOf(t, c);
  t.is(f.sni, undefined);
  t.is(f.supportedVersions, undefined);
  t.deepEqual(f.supportedGroups, [0x0018, 0x0017]);
  await checkWithOracle(t, c, f);
});
