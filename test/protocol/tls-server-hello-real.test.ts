// Server flights written by real TLS servers (node's tls, openssl s_server), read through a recording
// relay on loopback: the relay feeds server→client chunks to the flight parser as they arrive and
// client→server bytes to the ClientHello probe, so the two parsers check each other (session ID echo,
// ticket issued = ticket offered on resumption).
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { createTlsProbe, type TlsFields } from '../../src/protocol/tls-client-hello.js';
import { createServerFlightParser, type ServerFlight, type ServerFlightState } from '../../src/protocol/tls-server-hello.js';
import { testWithTools } from '../helpers/tools.js';

interface Relayed {
  readonly hello: Promise<TlsFields>;
  readonly flight: Promise<ServerFlightState>;
}

interface Relay {
  readonly port: number;
  /** The n-th connection through the relay (0-based), when it arrives. */
  connection(n: number): Promise<Relayed>;
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function startRelay(t: ExecutionContext, targetPort: number): Promise<Relay> {
  const waiting: Array<(r: Relayed) => void> = [];
  const arrived: Relayed[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.push(client, upstream);
    client.on('error', () => {});
    upstream.on('error', () => {});
    const probe = createTlsProbe();
    const parser = createServerFlightParser();
    const clientBytes: Buffer[] = [];
    let state: ServerFlightState = { kind: 'need-more' };
    const hello = new Promise<TlsFields>((resolve, reject) => {
      client.on('data', (d: Buffer) => {
        upstream.write(d);
        clientBytes.push(d);
        const v = probe.probe(Buffer.concat(clientBytes), { final: false });
        if (v.kind === 'match') resolve(v.fields);
        else if (v.kind === 'reject') reject(new Error(v.reason));
      });
      client.on('close', () => reject(new Error('client closed before a hello')));
    });
    const flight = new Promise<ServerFlightState>((resolve) => {
      upstream.on('data', (d: Buffer) => {
        client.write(d);
        state = parser.push(d);
        if (state.kind !== 'need-more') resolve(state);
      });
      upstream.on('close', () => resolve(state));
    });
    hello.catch(() => {});
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const r = { hello, flight };
    arrived.push(r);
    waiting.splice(0).forEach((w) => w(r));
  });
  const port = await listen(server);
  t.teardown(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  return {
    port,
    connection: (n) =>
      new Promise<Relayed>((resolve) => {
        const check = (): void => {
          const r = arrived[n];
          if (r !== undefined) resolve(r);
          else waiting.push(check);
        };
        check();
      }),
  };
}

let pems: Promise<{ key: string; cert: string }> | undefined;
function certificate(): Promise<{ key: string; cert: string }> {
  pems ??= generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' }).then((p) => ({
    key: p.private,
    cert: p.cert,
  }));
  return pems;
}

/** Connects a node TLS client through the relay; resolves with the session once one arrives. */
function connectClient(t: ExecutionContext, port: number, opts: tls.ConnectionOptions): Promise<Buffer> {
  const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...opts });
  c.on('error', () => {});
  c.resume();
  t.teardown(() => c.destroy());
  const session = once(c, 'session').then(([s]) => {
    c.end();
    return s as Buffer;
  });
  // Resumed connections may never see a new session; their promise is left unawaited.
  session.catch(() => {});
  return session;
}

function doneFlight(t: ExecutionContext, s: ServerFlightState): ServerFlight {
  if (s.kind !== 'done') {
    t.fail(`expected a complete flight, got ${JSON.stringify(s)}`);
    throw new Error('not done');
  }
  return s.flight;
}

async function nodeServer(t: ExecutionContext, opts: tls.TlsOptions): Promise<number> {
  const { key, cert } = await certificate();
  const sockets: tls.TLSSocket[] = [];
  const server = tls.createServer({ key, cert, ...opts }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.end('hello from node');
  });
  server.on('tlsClientError', () => {});
  const port = await listen(server);
  t.teardown(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  return port;
}

test('node server, TLS 1.3: done at the ServerHello, session id echoed; resumption selects PSK 0', async (t) => {
  const relay = await startRelay(t, await nodeServer(t, { minVersion: 'TLSv1.3' }));
  const session = connectClient(t, relay.port, {});
  const first = await relay.connection(0);
  const hello = await first.hello;
  const f1 = doneFlight(t, await first.flight);
  t.is(f1.version, 0x0304);
  t.false(f1.helloRetryRequest);
  // legacy_session_id_echo: "the contents of the client's legacy_session_id field" (RFC 8446 §4.1.3).
  t.deepEqual(f1.sessionId, hello.sessionId);
  t.true(hello.cipherSuites.includes(f1.cipherSuite));
  t.true(f1.extensionTypes.includes(0x002b));
  t.is(f1.pskSelectedIdentity, undefined);

  void connectClient(t, relay.port, { session: await session });
  const second = await relay.connection(1);
  const hello2 = await second.hello;
  const f2 = doneFlight(t, await second.flight);
  t.is(hello2.pskIdentities?.length, 1);
  t.is(f2.pskSelectedIdentity, 0);
  t.deepEqual(f2.sessionId, hello2.sessionId);
});

test('node server, TLS 1.2: the ticket issued in the clear is the one offered on resumption', async (t) => {
  const relay = await startRelay(t, await nodeServer(t, { maxVersion: 'TLSv1.2' }));
  const session = connectClient(t, relay.port, { maxVersion: 'TLSv1.2' });
  const first = await relay.connection(0);
  const f1 = doneFlight(t, await first.flight);
  t.is(f1.version, 0x0303);
  t.is(f1.newSessionTicketCount, 1);
  // Node (OpenSSL) tickets start with the 16-byte key name (RFC 5077 §4): the prefix kept is that long.
  t.is(f1.newSessionTicketPrefixes[0]?.length, 16);

  void connectClient(t, relay.port, { maxVersion: 'TLSv1.2', session: await session });
  const second = await relay.connection(1);
  const hello2 = await second.hello;
  const f2 = doneFlight(t, await second.flight);
  t.deepEqual(hello2.sessionTicket?.subarray(0, 16), f1.newSessionTicketPrefixes[0]);
  t.is(f2.version, 0x0303);
  t.is(f2.cipherSuite, f1.cipherSuite);
  // A server accepting a ticket echoes the client's session ID (RFC 5077 §3.4).
  t.true(hello2.sessionId.length > 0);
  t.deepEqual(f2.sessionId, hello2.sessionId);
});

test('node server, HelloRetryRequest when the client key share is for a group the server refuses', async (t) => {
  const relay = await startRelay(t, await nodeServer(t, { minVersion: 'TLSv1.3', ecdhCurve: 'P-256' }));
  const session = connectClient(t, relay.port, { ecdhCurve: 'X25519:P-256' });
  const conn = await relay.connection(0);
  const hello = await conn.hello;
  t.deepEqual(hello.keyShareGroups, [0x001d]);
  const f = doneFlight(t, await conn.flight);
  t.true(f.helloRetryRequest);
  t.is(f.version, 0x0304);
  await session;
});

interface OpensslServer {
  readonly port: number;
}

async function opensslServer(t: ExecutionContext, args: string[]): Promise<OpensslServer> {
  const { key, cert } = await certificate();
  const dir = mkdtempSync(join(tmpdir(), 'twinport-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'key.pem'), key);
  writeFileSync(join(dir, 'cert.pem'), cert);
  const child = spawn(
    'openssl',
    ['s_server', '-accept', '127.0.0.1:0', '-cert', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem'), ...args],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  // Also when the worker dies before teardown (an ava timeout), so no s_server outlives the run.
  const kill = (): void => {
    child.kill();
  };
  process.once('exit', kill);
  t.teardown(() => {
    process.off('exit', kill);
    kill();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`openssl s_server exited with ${code}: ${out}`)));
  });
  child.stdout.resume();
  return { port };
}

testWithTools({ openssl: 'openssl' }, 'openssl s_server -tls1_2: a ticket in the flight', async (t) => {
  const server = await opensslServer(t, ['-tls1_2']);
  const relay = await startRelay(t, server.port);
  const session = connectClient(t, relay.port, {});
  const f = doneFlight(t, await (await relay.connection(0)).flight);
  t.is(f.version, 0x0303);
  t.is(f.newSessionTicketCount, 1);
  t.is(f.newSessionTicketPrefixes.length, 1);
  await session;
});

testWithTools({ openssl: 'openssl' }, 'openssl s_server -tls1_2 -no_ticket: session ID resumption', async (t) => {
  const server = await opensslServer(t, ['-tls1_2', '-no_ticket']);
  const relay = await startRelay(t, server.port);
  const session = connectClient(t, relay.port, {});
  const f1 = doneFlight(t, await (await relay.connection(0)).flight);
  t.is(f1.version, 0x0303);
  t.deepEqual(f1.newSessionTicketPrefixes, []);
  t.is(f1.newSessionTicketCount, 0);
  t.is(f1.sessionId.length, 32);

  void connectClient(t, relay.port, { session: await session });
  const second = await relay.connection(1);
  const hello2 = await second.hello;
  const f2 = doneFlight(t, await second.flight);
  // The client offers the session ID the server assigned, and the server resumes it (RFC 5246 §7.4.1.3).
  t.deepEqual(hello2.sessionId, f1.sessionId);
  t.deepEqual(f2.sessionId, f1.sessionId);
});

testWithTools({ openssl: 'openssl' }, 'openssl s_server -tls1_3: version, resumption PSK', async (t) => {
  const server = await opensslServer(t, ['-tls1_3']);
  const relay = await startRelay(t, server.port);
  const session = connectClient(t, relay.port, {});
  const first = await relay.connection(0);
  const f1 = doneFlight(t, await first.flight);
  t.is(f1.version, 0x0304);
  t.deepEqual(f1.sessionId, (await first.hello).sessionId);

  void connectClient(t, relay.port, { session: await session });
  const second = await relay.connection(1);
  t.true(((await second.hello).pskIdentities?.length ?? 0) >= 1);
  const f2 = doneFlight(t, await second.flight);
  t.is(f2.pskSelectedIdentity, 0);
});

testWithTools({ openssl: 'openssl' }, 'openssl s_server -groups P-256: HelloRetryRequest for an X25519 key share', async (t) => {
  const server = await opensslServer(t, ['-tls1_3', '-groups', 'P-256']);
  const relay = await startRelay(t, server.port);
  const session = connectClient(t, relay.port, { ecdhCurve: 'X25519:P-256' });
  const f = doneFlight(t, await (await relay.connection(0)).flight);
  t.true(f.helloRetryRequest);
  t.is(f.version, 0x0304);
  await session;
});
