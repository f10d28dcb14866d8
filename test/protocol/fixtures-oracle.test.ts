// The fixtures themselves, checked before anything of ours reads them: each capture holds what its command
// line promises (per Wireshark), the two independent decoders agree where both apply, and the README
// documents every file. If a capture goes wrong (a client that sent nothing, a background request recorded
// instead of the page), these fail, not the parser tests.
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, fixtureFiles, fixturesDir, hostName, readFixture, type Fixture } from '../helpers/fixtures.js';
import { testWithTools } from '../helpers/tools.js';
import {
  decodeAllWithTshark,
  decodeWithReadTlsClientHello,
  decodeWithTshark,
  type OracleHello,
  type TsharkResult,
} from '../helpers/tshark-oracle.js';

const TSHARK = { tshark: 'tshark' };

// One tshark batch for all fixtures (two tshark runs), started by the first test that needs it.
let decoded: Promise<Map<string, TsharkResult>> | undefined;
function tsharkOf(name: string): Promise<TsharkResult> {
  decoded ??= decodeAllWithTshark(FIXTURES.map((f) => ({ bytes: readFixture(f.name), as: f.decodeAs }))).then(
    (results) => new Map(FIXTURES.map((f, i) => [f.name, results[i]!])),
  );
  return decoded.then((m) => m.get(name)!);
}

test('every capture file is in the fixture table and the table names no missing file', (t) => {
  t.deepEqual(fixtureFiles(), FIXTURES.map((f) => f.name).sort());
});

test('the README gives the command, and the tool versions, for every capture', (t) => {
  const readme = readFileSync(join(fixturesDir(), 'README.md'), 'utf8');
  for (const f of FIXTURES) {
    t.true(readme.includes(`\`${f.name}.bin\``), `${f.name}.bin is not described in README.md`);
  }
  for (const tool of ['OpenSSL', 'curl', 'Chromium', 'gnutls-cli', 'Python', 'Node', 'HAProxy', 'TShark']) {
    t.regex(readme, new RegExp(`${tool}\\S* \\d+\\.\\d+`), `README.md does not give the ${tool} version`);
  }
});

function assertFacts(t: ExecutionContext, f: Fixture, bytes: Buffer, r: TsharkResult): void {
  const facts = f.facts;
  if (facts.proxy === undefined) {
    t.is(r.proxy, undefined, 'tshark found a PROXY header the capture did not put there');
  } else {
    t.is(r.proxy?.version, facts.proxy.version);
    t.is(r.proxy?.source?.address, facts.proxy.source);
    t.is(r.proxy?.destination?.address, facts.proxy.destination);
  }
  if (facts.minBytes !== undefined) t.true(bytes.length > facts.minBytes, `${bytes.length} bytes`);

  if (f.decodeAs === 'tls') {
    const tls = r.tls;
    if (tls === undefined) return void t.fail('tshark found no ClientHello');
    // A first flight's handshake records hold the ClientHello and nothing else (RFC 8446 §4.1.2): their
    // payloads add up to the 4-byte handshake header plus the hello body.
    t.is(tls.recordLengths.reduce((a, b) => a + b, 0), 4 + tls.helloLength);
    if (facts.sni !== undefined) t.is(tls.sni, facts.sni ?? undefined);
    if (facts.alpn !== undefined) t.deepEqual(tls.alpn, facts.alpn);
    if (facts.legacyVersion !== undefined) t.is(tls.legacyVersion, facts.legacyVersion);
    if (facts.supportedVersions !== undefined) t.deepEqual(tls.supportedVersions, facts.supportedVersions ?? undefined);
    if (facts.minRecords !== undefined) t.true(tls.records >= facts.minRecords, `${tls.records} records`);
    if (facts.maxRecordLength !== undefined) {
      for (const n of tls.recordLengths) t.true(n <= facts.maxRecordLength, `a ${n}-byte record`);
    }
    if (facts.sessionIdLength !== undefined) t.is(tls.sessionId.length / 2, facts.sessionIdLength);
    if (facts.ticket === 'none') t.is(tls.ticketLength, undefined);
    if (facts.ticket === 'offered') t.true((tls.ticketLength ?? 0) > 0, 'no ticket in session_ticket');
    if (facts.psk === true) t.true((tls.pskIdentityLengths?.length ?? 0) >= 1, 'no PSK identity');
    if (facts.psk === false) t.is(tls.pskIdentityLengths, undefined);
    if (facts.earlyData !== undefined) t.is(tls.earlyData, facts.earlyData);
    if (facts.trailing === true) {
      t.true(tls.trailingBytes > 0 && tls.trailingRecords >= 1, 'nothing after the hello');
    }
    if (facts.trailing === false) t.is(tls.trailingBytes, 0);
    if (facts.keyShareGroup !== undefined) t.true(tls.keyShareGroups?.includes(facts.keyShareGroup) === true);
  }
  if (f.decodeAs === 'http') {
    const http = r.http;
    if (http === undefined || facts.http === undefined) return void t.fail('no HTTP request (or no facts)');
    t.is(http.method, facts.http.method);
    t.is(http.target, facts.http.target);
    t.is(http.version, facts.http.version);
    t.is(hostName(http.host ?? ''), facts.http.hostName);
  }
  if (f.decodeAs === 'http2') {
    const h2 = r.h2;
    if (h2 === undefined || facts.h2 === undefined) return void t.fail('no HTTP/2 (or no facts)');
    t.true(h2.preface);
    // RFC 9113 §3.4: the preface is followed by a SETTINGS frame (type 0x4).
    t.is(h2.frameTypes[0], 0x4);
    t.is(h2.method, facts.h2.method);
    t.is(h2.path, facts.h2.path);
    t.is(hostName(h2.authority ?? ''), facts.h2.hostName);
  }
}

const HELLO_KEYS: ReadonlyArray<keyof OracleHello> = [
  'legacyVersion', 'sessionId', 'cipherSuites', 'extensionTypes', 'sni', 'alpn', 'supportedVersions',
  'ticketLength', 'pskIdentityLengths', 'earlyData', 'ech', 'keyShareGroups',
];

for (const f of FIXTURES) {
  testWithTools(TSHARK, `${f.name}: tshark finds what the capture command promises`, async (t) => {
    assertFacts(t, f, readFixture(f.name), await tsharkOf(f.name));
  });

  if (f.decodeAs === 'tls') {
    testWithTools(TSHARK, `${f.name}: tshark and read-tls-client-hello agree on the hello`, async (t) => {
      const r = await tsharkOf(f.name);
      const rtch = await decodeWithReadTlsClientHello(readFixture(f.name).subarray(r.proxy?.length ?? 0));
      if (r.tls === undefined) return void t.fail('tshark found no ClientHello');
      if (r.tls.records > 1) {
        // The library reads one record only: it must not claim a hello it cannot see whole.
        t.is(rtch, undefined);
        return;
      }
      if (rtch === undefined) return void t.fail('read-tls-client-hello could not read the hello');
      for (const key of HELLO_KEYS) t.deepEqual(rtch[key], r.tls[key], `field ${key}`);
    });
  }
}

testWithTools(TSHARK, 'the tshark oracle finds no hello in bytes that are not one', async (t) => {
  const hello = readFixture('openssl-tls13');
  // Same bytes with the handshake type changed from client_hello (1) to server_hello (2).
  const notClientHello = Buffer.from(hello);
  notClientHello[5] = 2;
  t.is((await decodeWithTshark(notClientHello, 'tls')).tls, undefined);
  t.is((await decodeWithTshark(Buffer.from('hello, not tls\r\n'), 'tls')).tls, undefined);
  t.is((await decodeWithTshark(Buffer.from('not http at all'), 'http')).http, undefined);
});
