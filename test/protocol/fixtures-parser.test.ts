// Our parsers against Wireshark on every real-client capture in test/fixtures/: the same fields, the same
// byte counts. The expected values come from tshark (and read-tls-client-hello for JA4), run live; a
// disagreement is reported with both values and is never settled by editing the expectation.
import test, { type ExecutionContext } from 'ava';
import { Detector, detect, type DetectMatch } from '../../src/protocol/detector.js';
import { createH2cProbe } from '../../src/protocol/h2c-preface.js';
import { createHttpProbe, type HttpFields } from '../../src/protocol/http-head.js';
import { parseProxyHeader, type ProxyHeader } from '../../src/protocol/proxy-header.js';
import { createTlsProbe, type TlsFields } from '../../src/protocol/tls-client-hello.js';
import { FIXTURES, hostName, readFixture, type Fixture } from '../helpers/fixtures.js';
import { testWithTools } from '../helpers/tools.js';
import {
  decodeAllWithTshark,
  decodeWithReadTlsClientHello,
  type OracleHello,
  type TsharkHttp,
  type TsharkProxy,
  type TsharkResult,
  type TsharkTls,
} from '../helpers/tshark-oracle.js';

const TSHARK = { tshark: 'tshark' };
const FINAL = { final: true } as const;

// One tshark batch for all fixtures (two tshark runs), started by the first test that needs it.
let decoded: Promise<Map<string, TsharkResult>> | undefined;
function tsharkOf(name: string): Promise<TsharkResult> {
  decoded ??= decodeAllWithTshark(FIXTURES.map((f) => ({ bytes: readFixture(f.name), as: f.decodeAs }))).then(
    (results) => new Map(FIXTURES.map((f, i) => [f.name, results[i]!])),
  );
  return decoded.then((m) => m.get(name)!);
}

const PROTOCOL = { tls: 'tls', http: 'http', http2: 'h2c' } as const;

/** Our TlsFields in the oracles' shape. */
function ourHello(f: TlsFields): OracleHello {
  const h: OracleHello = {
    legacyVersion: f.legacyVersion,
    sessionId: f.sessionId.toString('hex'),
    cipherSuites: [...f.cipherSuites],
    extensionTypes: [...f.extensionTypes],
    earlyData: f.earlyData,
    ech: f.ech,
  };
  if (f.sni !== undefined) h.sni = f.sni;
  if (f.alpn !== undefined) h.alpn = [...f.alpn];
  if (f.supportedVersions !== undefined) h.supportedVersions = [...f.supportedVersions];
  if (f.sessionTicket !== undefined) h.ticketLength = f.sessionTicket.length;
  if (f.pskIdentities !== undefined) h.pskIdentityLengths = f.pskIdentities.map((b) => b.length);
  if (f.keyShareGroups !== undefined) h.keyShareGroups = [...f.keyShareGroups];
  return h;
}

const HELLO_KEYS: ReadonlyArray<keyof OracleHello> = [
  'legacyVersion', 'sessionId', 'cipherSuites', 'extensionTypes', 'sni', 'alpn', 'supportedVersions',
  'ticketLength', 'pskIdentityLengths', 'earlyData', 'ech', 'keyShareGroups',
];

/** Bytes of the hello's records: what a TLS match must report as consumed (RFC 8446 §5.1 record = 5 + length). */
function helloRecordBytes(tls: TsharkTls): number {
  return tls.recordLengths.reduce((sum, n) => sum + 5 + n, 0);
}

function assertTls(t: ExecutionContext, name: string, fields: TlsFields, tls: TsharkTls): void {
  const ours = ourHello(fields);
  for (const key of HELLO_KEYS) t.deepEqual(ours[key], tls[key], `${name}: ${key} (ours vs tshark)`);
  t.is(fields.records, tls.records, `${name}: records`);
  t.is(fields.helloLength, tls.helloLength, `${name}: helloLength`);
}

function assertHttp(t: ExecutionContext, name: string, fields: HttpFields, http: TsharkHttp): void {
  t.is(fields.method, http.method, `${name}: method`);
  t.is(fields.target, http.target, `${name}: target`);
  t.is(fields.version, http.version, `${name}: version`);
  t.is(fields.hostHeader, http.host, `${name}: Host header`);
  if (http.host !== undefined) {
    t.is(fields.host, hostName(http.host), `${name}: host`);
    const port = http.host.slice(hostName(http.host).length + 1);
    t.is(fields.port, port === '' ? undefined : Number(port), `${name}: port`);
  }
}

/** tshark's v2 family/transport numbers (PROXY protocol spec §2.2) in our names. */
function familyName(p: TsharkProxy): string {
  if (p.version === 1) return p.protocol ?? '(none: tshark found no v1 protocol)';
  const names: Record<string, string> = { '1/1': 'TCP4', '1/2': 'UDP4', '2/1': 'TCP6', '2/2': 'UDP6', '3/1': 'UNIX', '3/2': 'UNIX_DGRAM' };
  return names[`${p.family}/${p.transport}`] ?? 'UNKNOWN';
}

function assertProxy(t: ExecutionContext, name: string, header: ProxyHeader, consumed: number, p: TsharkProxy): void {
  t.is(header.version, p.version, `${name}: PROXY version`);
  t.is(header.command, p.version === 1 || p.command === 1 ? 'PROXY' : 'LOCAL', `${name}: PROXY command`);
  t.is(header.family as string, familyName(p), `${name}: PROXY family`);
  t.deepEqual(header.source, p.source, `${name}: PROXY source`);
  t.deepEqual(header.destination, p.destination, `${name}: PROXY destination`);
  t.is(consumed, p.length, `${name}: PROXY header length`);
  t.is(header.length, p.length, `${name}: PROXY header.length`);
}

/** Where the protocol starts: after the PROXY header tshark found, if any. */
function expectedProxy(r: TsharkResult): number {
  return r.proxy?.length ?? 0;
}

for (const f of FIXTURES) {
  testWithTools(TSHARK, `${f.name}: each probe reads what tshark reads`, async (t) => {
    const bytes = readFixture(f.name);
    const r = await tsharkOf(f.name);
    const offset = expectedProxy(r);
    if (r.proxy !== undefined) {
      const v = parseProxyHeader(bytes, FINAL);
      if (v.kind !== 'match') return void t.fail(`${f.name}: PROXY header: ${JSON.stringify(v)}`);
      assertProxy(t, f.name, v.header, v.consumed, r.proxy);
    }
    const payload = bytes.subarray(offset);
    switch (f.decodeAs) {
      case 'tls': {
        if (r.tls === undefined) return void t.fail('tshark found no ClientHello');
        const v = createTlsProbe().probe(payload, FINAL);
        if (v.kind !== 'match') return void t.fail(`${f.name}: TLS probe: ${JSON.stringify(v)}`);
        assertTls(t, f.name, v.fields, r.tls);
        t.is(v.consumed, helloRecordBytes(r.tls), `${f.name}: consumed`);
        return;
      }
      case 'http': {
        if (r.http === undefined) return void t.fail('tshark found no HTTP request');
        const v = createHttpProbe().probe(payload, FINAL);
        if (v.kind !== 'match') return void t.fail(`${f.name}: HTTP probe: ${JSON.stringify(v)}`);
        assertHttp(t, f.name, v.fields, r.http);
        // A first flight of a bodiless GET is exactly the head.
        t.is(v.consumed, payload.length, `${f.name}: consumed`);
        return;
      }
      case 'http2': {
        if (r.h2?.preface !== true) return void t.fail('tshark found no HTTP/2 preface');
        const v = createH2cProbe().probe(payload, FINAL);
        if (v.kind !== 'match') return void t.fail(`${f.name}: h2c probe: ${JSON.stringify(v)}`);
        t.is(v.protocol, 'h2c');
        // RFC 9113 §3.4: the preface is 24 octets; frames follow.
        t.true(v.consumed >= 24 && v.consumed <= payload.length, `${f.name}: consumed ${v.consumed}`);
        return;
      }
    }
  });

  testWithTools(TSHARK, `${f.name}: the detector finds the protocol, the PROXY header and the same fields`, async (t) => {
    const bytes = readFixture(f.name);
    const r = await tsharkOf(f.name);
    const d = detect(bytes, FINAL, { proxyHeader: true });
    if (d.kind !== 'match') return void t.fail(`${f.name}: detector: ${JSON.stringify(d)}`);
    t.is(d.protocol, PROTOCOL[f.decodeAs]);
    const offset = expectedProxy(r);
    if (r.proxy === undefined) {
      t.is(d.proxy, undefined, `${f.name}: a PROXY header tshark did not see`);
    } else if (d.proxy === undefined) {
      t.fail(`${f.name}: the detector missed the PROXY v${r.proxy.version} header`);
    } else {
      assertProxy(t, f.name, d.proxy, d.proxy.length, r.proxy);
    }
    assertDetected(t, f, d, r, offset, bytes.length);
  });

  testWithTools(TSHARK, `${f.name}: every strict prefix is need-more, fed one byte at a time`, async (t) => {
    const bytes = readFixture(f.name);
    const r = await tsharkOf(f.name);
    const whole = detect(bytes, FINAL, { proxyHeader: true });
    if (whole.kind !== 'match') return void t.fail(`${f.name}: detector: ${JSON.stringify(whole)}`);
    const detector = new Detector({ proxyHeader: true });
    let firstVerdictAt = -1;
    for (let n = 1; n <= bytes.length; n++) {
      const v = detector.detect(bytes.subarray(0, n), { final: false });
      if (v.kind !== 'need-more') {
        firstVerdictAt = n;
        if (v.kind !== 'match') return void t.fail(`${f.name}: ${n}-byte prefix: ${JSON.stringify(v)}`);
        t.is(v.consumed, whole.consumed, `${f.name}: consumed, fed byte by byte`);
        assertDetected(t, f, v, r, expectedProxy(r), bytes.length);
        break;
      }
    }
    // The verdict comes with the last byte it consumes: not before (a strict prefix is need-more, design.md
    // §7), not after (the client sent this much and now waits for an answer).
    t.is(firstVerdictAt, whole.consumed, `${f.name}: first verdict at byte ${firstVerdictAt}`);
  });

  if (f.decodeAs === 'tls') {
    testWithTools(TSHARK, `${f.name}: JA4 agrees with read-tls-client-hello`, async (t) => {
      const bytes = readFixture(f.name);
      const r = await tsharkOf(f.name);
      const payload = bytes.subarray(expectedProxy(r));
      const v = createTlsProbe().probe(payload, FINAL);
      if (v.kind !== 'match') return void t.fail(`${f.name}: TLS probe: ${JSON.stringify(v)}`);
      const rtch = await decodeWithReadTlsClientHello(payload);
      if (rtch === undefined) {
        // read-tls-client-hello reads one record only; that is the only reason it may pass.
        t.true((r.tls?.records ?? 0) > 1, `${f.name}: read-tls-client-hello could not read a one-record hello`);
        return;
      }
      t.is(v.fields.ja4, rtch.ja4, `${f.name}: ja4 (ours vs read-tls-client-hello)`);
    });
  }
}

function assertDetected(
  t: ExecutionContext,
  f: Fixture,
  d: DetectMatch,
  r: TsharkResult,
  offset: number,
  total: number,
): void {
  switch (d.protocol) {
    case 'tls': {
      if (r.tls === undefined) return void t.fail('tshark found no ClientHello');
      assertTls(t, f.name, d.fields, r.tls);
      t.is(d.consumed, offset + helloRecordBytes(r.tls), `${f.name}: consumed`);
      // 0-RTT: the early data stays unconsumed, to be spliced after the hello.
      t.is(d.consumed < total, r.tls.trailingBytes > 0, `${f.name}: bytes left after the hello`);
      return;
    }
    case 'http': {
      if (r.http === undefined) return void t.fail('tshark found no HTTP request');
      assertHttp(t, f.name, d.fields, r.http);
      t.is(d.consumed, total, `${f.name}: consumed`);
      return;
    }
    case 'h2c':
      t.true(d.consumed >= offset + 24 && d.consumed <= total, `${f.name}: consumed ${d.consumed}`);
      return;
    default:
      t.fail(`${f.name}: detected as ${d.protocol}`);
  }
}
