// `send_proxy: v1|v2` servers get a PROXY header (HAProxy proxy-protocol.txt) naming the real client and
// the address it connected to, then the client's bytes unchanged. v2 also carries what twinport peeked:
// PP2_TYPE_AUTHORITY (SNI, or the HTTP Host) and the twinport TLV 0xE0 (the protocol). Behind a trusted
// incoming PROXY header, the outgoing one names the original client, not the load balancer.
import test, { type ExecutionContext } from 'ava';
import net, { type Socket } from 'node:net';
import { buildProxyV2 } from '../../src/protocol/proxy-header-build.js';
import { parseProxyHeader, type ProxyHeader } from '../../src/protocol/proxy-header.js';
import { PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_TWINPORT_PROTOCOL } from '../../src/proxy/proxy-header-out.js';
import { clientHelloRecords, typicalExtensions } from '../helpers/tls-build.js';
import { startBackend, startProxy, type Backend, type RunningProxy } from '../helpers/proxy-harness.js';

interface World {
  proxy: RunningProxy;
  v1: Backend;
  v2: Backend;
}

async function world(listenerExtra = ''): Promise<World> {
  // Raw backends: record everything, answer their tag at the client's FIN.
  const v1 = await startBackend('v1');
  const v2 = await startBackend('v2');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 300ms, connect: 300ms, idle: 5s }
${listenerExtra}
    routes:
      - match: { sni: v2.example }
        to: v2
      - match: { host: v2.example }
        to: v2
      - match: { protocol: h2c }
        to: v2
      - match: { protocol: [tls, http] }
        to: v1
pools:
  v1:
    servers: [{ address: "${v1.address}", send_proxy: v1 }]
  v2:
    servers: [{ address: "${v2.address}", send_proxy: v2 }]
`);
  return { proxy, v1, v2 };
}

async function teardown(w: World): Promise<void> {
  await w.proxy.stop();
  await w.v1.close();
  await w.v2.close();
}

/** Sends `bytes`, half-closes, waits for the answer; returns the client's own address as twinport saw it. */
async function send(port: number, bytes: Buffer): Promise<{ answer: string; local: { address: string; port: number } }> {
  const s: Socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => s.once('connect', r));
  const local = { address: s.localAddress!, port: s.localPort! };
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.end(bytes);
  await new Promise((r) => s.once('close', r));
  return { answer: Buffer.concat(got).toString(), local };
}

/** What a backend received, split into the PROXY header (parsed by twinport's own parser) and the rest. */
async function receivedBy(backend: Backend): Promise<{ header: ProxyHeader; rest: Buffer }> {
  const rec = await backend.connection(1);
  await rec.closed;
  const all = Buffer.concat(rec.received);
  const parsed = parseProxyHeader(all, { final: true });
  if (parsed.kind !== 'match') throw new Error(`backend did not get a PROXY header: ${JSON.stringify(parsed)}`);
  return { header: parsed.header, rest: all.subarray(parsed.consumed) };
}

function tlv(header: ProxyHeader, type: number): string | undefined {
  return header.tlvs.find((t) => t.type === type)?.value.toString('latin1');
}

function assertEnds(t: ExecutionContext, header: ProxyHeader, source: { address: string; port: number }, destination: { address: string; port: number }): void {
  t.is(header.command, 'PROXY');
  t.deepEqual(header.source, source);
  t.deepEqual(header.destination, destination);
}

test('send_proxy v1: "PROXY TCP4 client listener" then the request unchanged', async (t) => {
  const w = await world();
  try {
    const request = Buffer.from('GET /one HTTP/1.1\r\nHost: plain.example\r\n\r\n');
    const { answer, local } = await send(w.proxy.port(), request);
    t.is(answer, 'v1\n');
    const { header, rest } = await receivedBy(w.v1);
    t.is(header.version, 1);
    t.is(header.family, 'TCP4');
    assertEnds(t, header, local, { address: '127.0.0.1', port: w.proxy.port() });
    t.is(rest.toString('latin1'), request.toString('latin1'));
    t.is(w.v2.connections.length, 0);
    const line = await w.proxy.logs.waitForClose();
    t.is(line['reason'], 'done');
    t.is(w.proxy.runtime.activeConnections, 0);
  } finally {
    await teardown(w);
  }
});

test('send_proxy v2 for TLS: addresses, AUTHORITY = SNI, TLV 0xE0 = "tls", then the hello unchanged', async (t) => {
  const w = await world();
  try {
    // A hello and a byte after it (a client's next record): everything after the header is the client's.
    const hello = Buffer.concat([clientHelloRecords({ extensions: typicalExtensions('V2.Example') }), Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])]);
    const { answer, local } = await send(w.proxy.port(), hello);
    t.is(answer, 'v2\n');
    const { header, rest } = await receivedBy(w.v2);
    t.is(header.version, 2);
    t.is(header.family, 'TCP4');
    assertEnds(t, header, local, { address: '127.0.0.1', port: w.proxy.port() });
    t.is(tlv(header, PP2_TYPE_AUTHORITY), 'V2.Example', 'the SNI as sent');
    t.is(header.authority, 'V2.Example');
    t.is(tlv(header, PP2_TYPE_TWINPORT_PROTOCOL), 'tls');
    t.is(tlv(header, PP2_TYPE_ALPN), 'h2', "the client's first ALPN offer (HAProxy: fc_pp_tlv(ALPN))");
    t.true(rest.equals(hello));
    t.is(w.v1.connections.length, 0);
  } finally {
    await teardown(w);
  }
});

test('send_proxy v2 for HTTP: AUTHORITY = the Host (port stripped), TLV 0xE0 = "http"', async (t) => {
  const w = await world();
  try {
    const request = Buffer.from('POST /form HTTP/1.1\r\nHost: v2.example:8443\r\nContent-Length: 3\r\n\r\nabc');
    const { answer, local } = await send(w.proxy.port(), request);
    t.is(answer, 'v2\n');
    const { header, rest } = await receivedBy(w.v2);
    assertEnds(t, header, local, { address: '127.0.0.1', port: w.proxy.port() });
    t.is(header.authority, 'v2.example');
    t.is(tlv(header, PP2_TYPE_TWINPORT_PROTOCOL), 'http');
    t.is(tlv(header, PP2_TYPE_ALPN), undefined, 'no ALPN without TLS');
    t.true(rest.equals(request));
  } finally {
    await teardown(w);
  }
});

test('send_proxy v2 for h2c: no AUTHORITY (nothing was peeked to name one), TLV 0xE0 = "h2c"', async (t) => {
  const w = await world();
  try {
    const preface = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
    await send(w.proxy.port(), preface);
    const { header, rest } = await receivedBy(w.v2);
    t.is(header.authority, undefined);
    t.is(tlv(header, PP2_TYPE_AUTHORITY), undefined);
    t.is(tlv(header, PP2_TYPE_TWINPORT_PROTOCOL), 'h2c');
    t.true(rest.equals(preface));
  } finally {
    await teardown(w);
  }
});

const TRUSTED = '    proxy_protocol: { trusted: ["127.0.0.0/8"] }';

test('behind a trusted PROXY v1 header, the v2 header sent on names the original client and destination', async (t) => {
  const w = await world(TRUSTED);
  try {
    const request = Buffer.from('GET /via-lb HTTP/1.1\r\nHost: v2.example\r\n\r\n');
    const incoming = Buffer.from('PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\n');
    const { answer } = await send(w.proxy.port(), Buffer.concat([incoming, request]));
    t.is(answer, 'v2\n');
    const { header, rest } = await receivedBy(w.v2);
    t.is(header.version, 2);
    assertEnds(t, header, { address: '198.51.100.7', port: 40000 }, { address: '203.0.113.9', port: 443 });
    t.is(header.authority, 'v2.example');
    t.true(rest.equals(request), 'the incoming header is not passed on, only the client bytes');
    const line = await w.proxy.logs.waitForClose();
    t.is(line['client'], '198.51.100.7:40000');
  } finally {
    await teardown(w);
  }
});

test('behind a trusted PROXY v2 header (TCP6), the v1 header sent on is "PROXY TCP6" with the original ends', async (t) => {
  const w = await world(TRUSTED);
  try {
    const hello = clientHelloRecords({ extensions: typicalExtensions('other.example') });
    const incoming = buildProxyV2({ source: { address: '2001:db8::7', port: 5555 }, destination: { address: '2001:db8::1', port: 443 } });
    const { answer } = await send(w.proxy.port(), Buffer.concat([incoming, hello]));
    t.is(answer, 'v1\n');
    const { header, rest } = await receivedBy(w.v1);
    t.is(header.version, 1);
    t.is(header.family, 'TCP6');
    assertEnds(t, header, { address: '2001:db8::7', port: 5555 }, { address: '2001:db8::1', port: 443 });
    t.true(rest.equals(hello));
    const line = await w.proxy.logs.waitForClose();
    t.is(line['client'], '[2001:db8::7]:5555');
    t.is(line['sni'], 'other.example');
  } finally {
    await teardown(w);
  }
});
