// ClientHello probe on synthetic hellos: fields, record layer rules, every reject reason we promise.
import test from 'ava';
import { createTlsProbe, parseClientHelloBody, type TlsMatch } from '../../src/protocol/tls-client-hello.js';
import type { NeedMore, Reject } from '../../src/protocol/verdict.js';
import {
  clientHelloBody,
  clientHelloMessage,
  clientHelloRecords,
  ext,
  extAlpn,
  extEarlyData,
  extEch,
  extGroups,
  extKeyShare,
  extPadding,
  extPsk,
  extPskModes,
  extSessionTicket,
  extSigAlgs,
  extSni,
  extSniEntries,
  extSupportedVersions,
  handshakeMessage,
  tlsRecord,
  toRecords,
  typicalExtensions,
  TYPICAL_CIPHERS,
  u16,
  vec16,
  vec8,
  type Ext,
} from '../helpers/tls-build.js';

type V = TlsMatch | NeedMore | Reject;

function run(bytes: Buffer, final = true, maxHelloBytes?: number): V {
  const probe = createTlsProbe(maxHelloBytes === undefined ? {} : { maxHelloBytes });
  return probe.probe(bytes, { final });
}

function matchOf(t: { fail(m: string): void }, v: V): TlsMatch {
  if (v.kind !== 'match') {
    t.fail(`expected a match, got ${JSON.stringify(v)}`);
    throw new Error('not a match');
  }
  return v;
}

function withExts(exts: readonly Ext[]): Buffer {
  return clientHelloRecords({ extensions: exts });
}

test('a TLS 1.3 hello in one record: every field as built, consumed = the record', (t) => {
  const sid = Buffer.alloc(32, 0x42);
  const bytes = clientHelloRecords({ sessionId: sid });
  const m = matchOf(t, run(bytes));
  const f = m.fields;
  t.is(m.protocol, 'tls');
  t.is(m.consumed, bytes.length);
  t.is(f.legacyVersion, 0x0303);
  t.deepEqual(f.sessionId, sid);
  t.deepEqual(f.cipherSuites, TYPICAL_CIPHERS);
  t.deepEqual(f.compressionMethods, [0]);
  t.deepEqual(
    f.extensionTypes,
    typicalExtensions().map((e) => e.type),
  );
  t.is(f.sni, 'a.example.com');
  t.deepEqual(f.alpn, ['h2', 'http/1.1']);
  t.deepEqual(f.supportedVersions, [0x0304, 0x0303]);
  t.deepEqual(f.supportedGroups, [0x001d, 0x0017]);
  t.deepEqual(f.signatureAlgorithms, [0x0403, 0x0804, 0x0401]);
  t.deepEqual(f.keyShareGroups, [0x001d]);
  t.deepEqual(f.pskModes, [1]);
  t.is(f.sessionTicket, undefined);
  t.is(f.pskIdentities, undefined);
  t.false(f.earlyData);
  t.false(f.ech);
  t.is(f.records, 1);
  t.is(f.helloLength, clientHelloBody().length);
  t.is(f.sslv2, undefined);
  t.regex(f.ja4, /^t13d0707h2_[0-9a-f]{12}_[0-9a-f]{12}$/);
});

test('bytes after the hello (CCS, 0-RTT data) are not consumed and do not change the verdict', (t) => {
  const hello = clientHelloRecords();
  const after = Buffer.concat([tlsRecord(20, Buffer.from([1]), 0x0303), tlsRecord(23, Buffer.alloc(40, 9), 0x0303)]);
  const m = matchOf(t, run(Buffer.concat([hello, after])));
  t.is(m.consumed, hello.length);
  t.deepEqual(m.fields, matchOf(t, run(hello)).fields);
});

for (const size of [1, 2, 3, 4, 5, 64, 500]) {
  test(`the hello reassembled from ${size}-byte records`, (t) => {
    const msg = clientHelloMessage();
    const bytes = toRecords(msg, { sizes: size });
    const m = matchOf(t, run(bytes));
    t.is(m.consumed, bytes.length);
    t.is(m.fields.records, Math.ceil(msg.length / size));
    t.is(m.fields.sni, 'a.example.com');
    t.deepEqual(m.fields.cipherSuites, TYPICAL_CIPHERS);
  });
}

test('a 20 000-byte hello over two records (2^14 + rest)', (t) => {
  const exts = [...typicalExtensions(), extPadding(20000 - 200)];
  const msg = clientHelloMessage({ extensions: exts });
  t.true(msg.length > 16384);
  const bytes = toRecords(msg, { sizes: 16384 });
  const m = matchOf(t, run(bytes));
  t.is(m.fields.records, 2);
  t.is(m.fields.helloLength, msg.length - 4);
  t.is(m.consumed, bytes.length);
});

test('a record of 2^14 + 1 bytes is a broken TLS stream, first record or later', (t) => {
  const big = clientHelloMessage({ extensions: [...typicalExtensions(), extPadding(17000)] });
  const first = tlsRecord(22, big.subarray(0, 16385));
  t.deepEqual(run(first), { kind: 'reject', reason: 'tls.record.too-large', protocol: 'tls' });
  // Rejected on the header alone, before the fragment arrives.
  t.deepEqual(run(first.subarray(0, 5), false), { kind: 'reject', reason: 'tls.record.too-large', protocol: 'tls' });
  const second = Buffer.concat([tlsRecord(22, big.subarray(0, 100)), tlsRecord(22, big.subarray(100, 16485))]);
  t.deepEqual(run(second), { kind: 'reject', reason: 'tls.record.too-large', protocol: 'tls' });
});

test('zero-length handshake records are rejected (RFC 8446 §5.1)', (t) => {
  const msg = clientHelloMessage();
  t.deepEqual(run(Buffer.concat([tlsRecord(22, Buffer.alloc(0)), tlsRecord(22, msg)])), {
    kind: 'reject',
    reason: 'tls.record.empty',
    protocol: 'tls',
  });
  const later = Buffer.concat([tlsRecord(22, msg.subarray(0, 10)), tlsRecord(22, Buffer.alloc(0)), tlsRecord(22, msg.subarray(10))]);
  t.deepEqual(run(later), { kind: 'reject', reason: 'tls.record.empty', protocol: 'tls' });
});

test('CCS, alert or application data before the hello: claimed by the record header, a broken TLS stream', (t) => {
  const reasons: Record<number, string> = { 20: 'tls.record.unexpected-ccs', 21: 'tls.record.unexpected-alert', 23: 'tls.record.unexpected-app-data' };
  for (const type of [20, 21, 23]) {
    const bytes = Buffer.concat([tlsRecord(type, Buffer.from([1, 0])), clientHelloRecords()]);
    t.deepEqual(run(bytes, false), { kind: 'reject', reason: reasons[type]!, protocol: 'tls' }, `type ${type}`);
    // Decided on the third byte (type and version), not before.
    t.deepEqual(run(bytes.subarray(0, 2), false), { kind: 'need-more' });
    t.deepEqual(run(bytes.subarray(0, 3), false), { kind: 'reject', reason: reasons[type]!, protocol: 'tls' });
  }
  // Other first bytes are not a record header: not mine at once.
  for (const first of [0x13, 0x18, 0x00, 0x47]) t.deepEqual(run(Buffer.from([first]), false), { kind: 'reject', reason: 'tls.record.bad-type' });
  t.deepEqual(run(Buffer.from([0x15, 0x03, 0x05]), false), { kind: 'reject', reason: 'tls.record.bad-version' });
});

test('CCS, alert, application data or an unknown type interleaved in the hello: TLS reject', (t) => {
  const msg = clientHelloMessage();
  const cases: Array<[number, string]> = [
    [20, 'tls.record.unexpected-ccs'],
    [21, 'tls.record.unexpected-alert'],
    [23, 'tls.record.unexpected-app-data'],
    [24, 'tls.record.bad-type'],
  ];
  for (const [type, reason] of cases) {
    const bytes = Buffer.concat([
      tlsRecord(22, msg.subarray(0, 50)),
      tlsRecord(type, Buffer.from([1])),
      tlsRecord(22, msg.subarray(50)),
    ]);
    t.deepEqual(run(bytes, false), { kind: 'reject', reason, protocol: 'tls' }, `type ${type}`);
  }
});

test('record versions outside 0x0300..0x0304 are not TLS', (t) => {
  const msg = clientHelloMessage();
  for (const version of [0x0200, 0x0305, 0x0403, 0x0000]) {
    t.deepEqual(run(tlsRecord(22, msg, version)), { kind: 'reject', reason: 'tls.record.bad-version' });
  }
  for (const version of [0x0300, 0x0301, 0x0302, 0x0303, 0x0304]) {
    t.is(run(tlsRecord(22, msg, version)).kind, 'match');
  }
  const later = Buffer.concat([tlsRecord(22, msg.subarray(0, 10)), tlsRecord(22, msg.subarray(10), 0x0305)]);
  t.deepEqual(run(later), { kind: 'reject', reason: 'tls.record.bad-version', protocol: 'tls' });
});

test('never decides on one byte; early "not mine" on the bytes that disagree', (t) => {
  t.deepEqual(run(Buffer.from([0x16]), false), { kind: 'need-more' });
  t.deepEqual(run(Buffer.from([0x16]), true), { kind: 'reject', reason: 'tls.record.truncated' });
  t.deepEqual(run(Buffer.from([0x16, 0x03]), false), { kind: 'need-more' });
  t.deepEqual(run(Buffer.from([0x16, 0x02]), false), { kind: 'reject', reason: 'tls.record.bad-version' });
  t.deepEqual(run(Buffer.from([0x16, 0x03, 0x09]), false), { kind: 'reject', reason: 'tls.record.bad-version' });
  t.deepEqual(run(Buffer.from('GET / HTTP/1.1\r\n'), false), { kind: 'reject', reason: 'tls.record.bad-type' });
  t.deepEqual(run(Buffer.alloc(0), false), { kind: 'need-more' });
});

test('recognised as TLS once the header is valid and the first handshake byte is client_hello', (t) => {
  const bytes = clientHelloRecords();
  t.deepEqual(run(bytes.subarray(0, 2), true), { kind: 'reject', reason: 'tls.record.truncated' });
  t.deepEqual(run(bytes.subarray(0, 3), true), { kind: 'reject', reason: 'tls.record.truncated', protocol: 'tls' });
  t.deepEqual(run(bytes.subarray(0, 5), true), { kind: 'reject', reason: 'tls.record.truncated', protocol: 'tls' });
  t.deepEqual(run(bytes.subarray(0, 6), true), { kind: 'reject', reason: 'tls.hello.truncated', protocol: 'tls' });
});

test('a handshake type other than client_hello (a ServerHello) is a broken TLS stream', (t) => {
  const bytes = toRecords(handshakeMessage(2, clientHelloBody()));
  t.deepEqual(run(bytes.subarray(0, 6), false), { kind: 'reject', reason: 'tls.hello.bad-type', protocol: 'tls' });
});

test('a declared hello length above maxHelloBytes is rejected on the handshake header', (t) => {
  const msg = clientHelloMessage({ extensions: [...typicalExtensions(), extPadding(3000)] });
  const bytes = toRecords(msg);
  const body = msg.length - 4;
  t.deepEqual(run(bytes.subarray(0, 9), false, body - 1), { kind: 'reject', reason: 'tls.hello.too-large', protocol: 'tls' });
  t.is(run(bytes, true, body).kind, 'match');
  // The default cap is 65536.
  const over = Buffer.concat([Buffer.from([0x16, 3, 1, 0, 4, 1]), Buffer.from([0x01, 0x00, 0x01])]);
  t.deepEqual(run(over, false), { kind: 'reject', reason: 'tls.hello.too-large', protocol: 'tls' });
});

test('the record that completes the hello must not carry a following handshake message', (t) => {
  const msg = clientHelloMessage();
  const extra = handshakeMessage(1, Buffer.alloc(3));
  t.deepEqual(run(tlsRecord(22, Buffer.concat([msg, extra]))), {
    kind: 'reject',
    reason: 'tls.record.trailing-data',
    protocol: 'tls',
  });
  // Decided from the record header, without waiting for the extra bytes.
  const partial = tlsRecord(22, Buffer.concat([msg, extra])).subarray(0, 5 + msg.length);
  t.deepEqual(run(partial, false), { kind: 'reject', reason: 'tls.record.trailing-data', protocol: 'tls' });
});

test('every strict prefix needs more; with final it is a reject, TLS once recognised', (t) => {
  const bytes = clientHelloRecords({}, { sizes: 97 });
  for (let n = 1; n < bytes.length; n++) {
    const prefix = bytes.subarray(0, n);
    t.deepEqual(run(prefix, false), { kind: 'need-more' }, `prefix ${n}`);
    const v = run(prefix, true);
    t.is(v.kind, 'reject', `final prefix ${n}`);
    if (v.kind === 'reject') t.is(v.protocol, n >= 3 ? 'tls' : undefined, `final prefix ${n}`);
  }
});

// Offsets into a hello built with known field sizes: 4 handshake header + 2 version + 32 random.
const SID_LEN_AT = 4 + 2 + 32;

function lengthFieldCases(): Array<[string, number, 1 | 2 | 3]> {
  const sidLen = 32;
  const csAt = SID_LEN_AT + 1 + sidLen;
  const cmAt = csAt + 2 + TYPICAL_CIPHERS.length * 2;
  const extBlockAt = cmAt + 1 + 1;
  const firstExtLenAt = extBlockAt + 2 + 2;
  // The SNI extension: type(2) len(2) list_len(2) name_type(1) name_len(2)
  const sniListAt = firstExtLenAt + 2;
  const sniNameLenAt = sniListAt + 2 + 1;
  return [
    ['handshake length', 1, 3],
    ['session id length', SID_LEN_AT, 1],
    ['cipher suites length', csAt, 2],
    ['compression methods length', cmAt, 1],
    ['extensions block length', extBlockAt, 2],
    ['first extension length', firstExtLenAt, 2],
    ['server_name_list length', sniListAt, 2],
    ['host_name length', sniNameLenAt, 2],
  ];
}

function bump(msg: Buffer, at: number, width: 1 | 2 | 3, delta: number): Buffer {
  const out = Buffer.from(msg);
  const value = out.readUIntBE(at, width) + delta;
  out.writeUIntBE(value, at, width);
  return out;
}

for (const [name, at, width] of lengthFieldCases()) {
  for (const delta of [1, -1]) {
    test(`${name} one too ${delta > 0 ? 'long' : 'short'} is a TLS reject`, (t) => {
      const msg = clientHelloMessage();
      const bytes = tlsRecord(22, bump(msg, at, width, delta));
      const v = run(bytes, true);
      t.is(v.kind, 'reject');
      if (v.kind === 'reject') t.is(v.protocol, 'tls');
    });
  }
}

test('record length one too long / one too short', (t) => {
  const bytes = clientHelloRecords();
  const longer = Buffer.from(bytes);
  longer.writeUInt16BE(longer.readUInt16BE(3) + 1, 3);
  t.deepEqual(run(Buffer.concat([longer, Buffer.from([0])])), {
    kind: 'reject',
    reason: 'tls.record.trailing-data',
    protocol: 'tls',
  });
  const shorter = Buffer.from(bytes);
  shorter.writeUInt16BE(shorter.readUInt16BE(3) - 1, 3);
  const v = run(shorter, true);
  t.is(v.kind, 'reject');
  if (v.kind === 'reject') t.is(v.protocol, 'tls');
});

test('session id, cipher suites and compression methods bounds', (t) => {
  t.deepEqual(run(clientHelloRecords({ sessionId: Buffer.alloc(33) })), {
    kind: 'reject',
    reason: 'tls.hello.bad-session-id',
    protocol: 'tls',
  });
  t.deepEqual(matchOf(t, run(clientHelloRecords({ sessionId: Buffer.alloc(0) }))).fields.sessionId, Buffer.alloc(0));
  t.deepEqual(run(clientHelloRecords({ cipherSuites: [] })), { kind: 'reject', reason: 'tls.hello.bad-ciphers', protocol: 'tls' });
  t.deepEqual(run(clientHelloRecords({ compressionMethods: [] })), {
    kind: 'reject',
    reason: 'tls.hello.bad-compression',
    protocol: 'tls',
  });
  // An odd cipher_suites length: patch a valid hello's vector length and append one byte.
  const body = Buffer.concat([u16(0x0303), Buffer.alloc(32), vec8(), vec16(Buffer.from([0x13, 0x01, 0x13])), vec8(Buffer.from([0]))]);
  t.deepEqual(run(toRecords(handshakeMessage(1, body))), { kind: 'reject', reason: 'tls.hello.bad-ciphers', protocol: 'tls' });
  t.deepEqual(run(clientHelloRecords({ legacyVersion: 0x0200 })), {
    kind: 'reject',
    reason: 'tls.hello.bad-version',
    protocol: 'tls',
  });
});

test('a hello without an extensions block (pre-TLS 1.2)', (t) => {
  const m = matchOf(t, run(clientHelloRecords({ legacyVersion: 0x0301, extensions: null })));
  t.deepEqual(m.fields.extensionTypes, []);
  t.is(m.fields.sni, undefined);
  t.is(m.fields.alpn, undefined);
  t.is(m.fields.ja4.slice(0, 10), 't10i070000');
});

test('bytes after the extensions block inside the message are rejected', (t) => {
  const body = Buffer.concat([clientHelloBody(), Buffer.from([0])]);
  t.deepEqual(run(toRecords(handshakeMessage(1, body))), { kind: 'reject', reason: 'tls.hello.trailing-data', protocol: 'tls' });
});

test('duplicated extension type → tls.ext.duplicate', (t) => {
  t.deepEqual(run(withExts([extSni('a.example'), extGroups(29), extGroups(23)])), {
    kind: 'reject',
    reason: 'tls.ext.duplicate',
    protocol: 'tls',
  });
  t.deepEqual(run(withExts([extSni('a.example'), extSni('b.example')])), {
    kind: 'reject',
    reason: 'tls.ext.duplicate',
    protocol: 'tls',
  });
});

const sniCases: Array<[string, Ext, string]> = [
  ['empty host_name', extSni(''), 'tls.sni.empty'],
  ['embedded NUL', extSni(Buffer.from('good.example\0evil.example')), 'tls.sni.nul'],
  ['two host_names', extSni('a.example', 'b.example'), 'tls.sni.duplicate'],
  ['300 chars', extSni(`${'a'.repeat(63)}.`.repeat(4) + 'b'.repeat(44)), 'tls.sni.too-long'],
  ['empty server_name_list', ext(0, vec16()), 'tls.sni.empty-list'],
  ['empty extension data', ext(0), 'tls.sni.bad-length'],
  ['list length lies', ext(0, Buffer.concat([u16(20), Buffer.from([0]), vec16(Buffer.from('a.example'))])), 'tls.sni.bad-length'],
  ['name length lies', ext(0, vec16(Buffer.from([0]), u16(50), Buffer.from('a.example'))), 'tls.sni.bad-length'],
  ['bytes after the list', ext(0, Buffer.concat([vec16(Buffer.from([0]), vec16(Buffer.from('a.example'))), Buffer.from([0])])), 'tls.sni.bad-length'],
  ['not UTF-8', extSni(Buffer.from([0x62, 0xfc, 0x63, 0x68])), 'tls.sni.bad-utf8'],
];

for (const [name, sni, reason] of sniCases) {
  test(`SNI: ${name} → ${reason}`, (t) => {
    t.deepEqual(run(withExts([sni, extSupportedVersions(0x0304)])), { kind: 'reject', reason, protocol: 'tls' });
  });
}

const sniAccepted: Array<[string, string]> = [
  ['253 chars', `${'a'.repeat(62)}.`.repeat(4) + 'b'.repeat(1)],
  ['IP literal', '192.0.2.1'],
  ['trailing dot', 'a.example.com.'],
  ['mixed case, kept as sent', 'A.Example.COM'],
  ['raw UTF-8', 'bücher.example'],
];

for (const [name, sni] of sniAccepted) {
  test(`SNI: ${name} is returned exactly as sent`, (t) => {
    const m = matchOf(t, run(withExts([extSni(sni)])));
    t.is(m.fields.sni, sni);
  });
}

test('SNI: 253 and 255 bytes are accepted, 256 is not', (t) => {
  const name = (n: number): string => 'a'.repeat(n);
  t.is(name(253).length, 253);
  t.is(matchOf(t, run(withExts([extSni(name(255))]))).fields.sni, name(255));
  t.deepEqual(run(withExts([extSni(name(256))])), { kind: 'reject', reason: 'tls.sni.too-long', protocol: 'tls' });
});

test('SNI: entries of other name types are skipped', (t) => {
  const sni = extSniEntries([
    { type: 7, name: Buffer.from('whatever') },
    { type: 0, name: Buffer.from('real.example') },
  ]);
  t.is(matchOf(t, run(withExts([sni]))).fields.sni, 'real.example');
  const only = extSniEntries([{ type: 7, name: Buffer.from('whatever') }]);
  const m = matchOf(t, run(withExts([only])));
  t.is(m.fields.sni, undefined);
  t.deepEqual(m.fields.extensionTypes, [0]);
});

test('ALPN: names kept in order; empty list, empty name and lying lengths rejected', (t) => {
  t.deepEqual(matchOf(t, run(withExts([extAlpn('http/1.1', 'h2', 'x')]))).fields.alpn, ['http/1.1', 'h2', 'x']);
  t.deepEqual(run(withExts([ext(16, vec16())])), { kind: 'reject', reason: 'tls.alpn.empty-list', protocol: 'tls' });
  t.deepEqual(run(withExts([extAlpn('h2', '')])), { kind: 'reject', reason: 'tls.alpn.empty-name', protocol: 'tls' });
  t.deepEqual(run(withExts([ext(16, vec16(Buffer.from([5]), Buffer.from('h2')))])), {
    kind: 'reject',
    reason: 'tls.alpn.bad-length',
    protocol: 'tls',
  });
});

test('pre_shared_key: identities returned when last; not last → tls.psk.not-last', (t) => {
  const ids = [Buffer.from('ticket-one'), Buffer.from('ticket-two')];
  const m = matchOf(t, run(withExts([extSni('a.example'), extPskModes(1), extPsk(ids)])));
  t.deepEqual(m.fields.pskIdentities, ids);
  t.deepEqual(m.fields.pskModes, [1]);
  t.deepEqual(run(withExts([extSni('a.example'), extPsk(ids), extPskModes(1)])), {
    kind: 'reject',
    reason: 'tls.psk.not-last',
    protocol: 'tls',
  });
  t.deepEqual(run(withExts([extPsk(ids, 1)])), { kind: 'reject', reason: 'tls.psk.binder-count', protocol: 'tls' });
  t.deepEqual(run(withExts([extPsk([Buffer.alloc(0)])])), { kind: 'reject', reason: 'tls.psk.bad-length', protocol: 'tls' });
});

test('session_ticket, early_data and ECH presence', (t) => {
  const empty = matchOf(t, run(withExts([extSessionTicket()]))).fields;
  t.deepEqual(empty.sessionTicket, Buffer.alloc(0));
  t.false(empty.earlyData);
  const ticket = Buffer.from('0123456789abcdef-opaque-ticket');
  const f = matchOf(t, run(withExts([extSessionTicket(ticket), extEarlyData(), extEch()]))).fields;
  t.deepEqual(f.sessionTicket, ticket);
  t.true(f.earlyData);
  t.true(f.ech);
  t.deepEqual(run(withExts([ext(42, Buffer.from([0]))])), { kind: 'reject', reason: 'tls.earlydata.bad-length', protocol: 'tls' });
});

test('u16 list extensions: empty or odd lengths rejected with their own code', (t) => {
  const cases: Array<[Ext, string]> = [
    [ext(0x2b, vec8()), 'tls.versions.bad-length'],
    [ext(0x2b, vec8(Buffer.from([3]))), 'tls.versions.bad-length'],
    [ext(0x0a, vec16()), 'tls.groups.bad-length'],
    [ext(0x0d, vec16(Buffer.from([4, 3, 8]))), 'tls.sigalgs.bad-length'],
    [ext(0x2d, vec8()), 'tls.pskmodes.bad-length'],
    [ext(0x33, vec16(u16(29), vec16())), 'tls.keyshare.bad-length'],
    [ext(0x33, vec16(u16(29))), 'tls.keyshare.bad-length'],
  ];
  for (const [e, reason] of cases) {
    t.deepEqual(run(withExts([e])), { kind: 'reject', reason, protocol: 'tls' }, reason);
  }
  // An empty client_shares asks for a HelloRetryRequest and is valid (RFC 8446 §4.2.8).
  t.deepEqual(matchOf(t, run(withExts([ext(0x33, vec16())]))).fields.keyShareGroups, []);
  t.deepEqual(matchOf(t, run(withExts([extKeyShare(29, 23)]))).fields.keyShareGroups, [29, 23]);
  t.deepEqual(matchOf(t, run(withExts([extSigAlgs(0x0804)]))).fields.signatureAlgorithms, [0x0804]);
});

test('parseClientHelloBody never throws on a truncated body', (t) => {
  const body = clientHelloBody();
  // Cut right after compression_methods, the hello is a valid one without extensions.
  const noExtensions = 2 + 32 + 1 + 32 + 2 + TYPICAL_CIPHERS.length * 2 + 1 + 1;
  for (let n = 0; n < body.length; n++) {
    const v = parseClientHelloBody(body.subarray(0, n), 1);
    if (n === noExtensions) t.false('kind' in v, `length ${n}`);
    else t.true('kind' in v && v.kind === 'reject', `length ${n}`);
  }
  const whole = parseClientHelloBody(body, 3);
  t.false('kind' in whole);
  if (!('kind' in whole)) t.is(whole.records, 3);
});

test('after a verdict the probe answers the same without re-reading', (t) => {
  const probe = createTlsProbe();
  const bytes = clientHelloRecords();
  const first = probe.probe(bytes, { final: false });
  t.is(first.kind, 'match');
  t.is(probe.probe(Buffer.concat([bytes, Buffer.from('junk')]), { final: true }), first);
});

test('a 64 KiB hello over many records fed one byte at a time matches', (t) => {
  const msg = clientHelloMessage({ extensions: [...typicalExtensions(), extPadding(65536 - 300)] });
  t.true(msg.length - 4 <= 65536);
  const bytes = toRecords(msg, { sizes: 4000 });
  const probe = createTlsProbe();
  let v: V = { kind: 'need-more' };
  for (let n = 1; n <= bytes.length; n++) {
    v = probe.probe(bytes.subarray(0, n), { final: false });
    if (v.kind !== 'need-more') break;
  }
  const m = matchOf(t, v);
  t.is(m.consumed, bytes.length);
  t.is(m.fields.records, Math.ceil(msg.length / 4000));
});
