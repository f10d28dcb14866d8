// SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2): recognised strictly, everything else not mine.
import test from 'ava';
import { createTlsProbe } from '../../src/protocol/tls-client-hello.js';
import { sslv2ClientHello, u16 } from '../helpers/tls-build.js';

function run(bytes: Buffer, final = true): ReturnType<ReturnType<typeof createTlsProbe>['probe']> {
  return createTlsProbe().probe(bytes, { final });
}

test('a valid SSLv2-compatible hello matches as TLS with sslv2: true', (t) => {
  const challenge = Buffer.alloc(16, 0xcc);
  const bytes = sslv2ClientHello({ version: 0x0301, cipherSpecs: [0x00002f, 0x010080, 0x000035], challenge });
  const v = run(bytes);
  t.is(v.kind, 'match');
  if (v.kind !== 'match') return;
  t.is(v.protocol, 'tls');
  t.is(v.consumed, bytes.length);
  t.true(v.fields.sslv2);
  t.is(v.fields.legacyVersion, 0x0301);
  // The SSLv2 kind 0x010080 is not a TLS suite.
  t.deepEqual(v.fields.cipherSuites, [0x002f, 0x0035]);
  t.deepEqual(v.fields.extensionTypes, []);
  t.is(v.fields.sni, undefined);
  t.is(v.fields.alpn, undefined);
  t.deepEqual(v.fields.sessionId, Buffer.alloc(0));
  t.is(v.fields.helloLength, bytes.length - 2);
  t.is(v.fields.records, 1);
  t.true(v.fields.ja4.startsWith('t10i0200'));
});

test('a 16-byte session id and trailing bytes after the hello', (t) => {
  const sid = Buffer.alloc(16, 5);
  const bytes = sslv2ClientHello({ sessionId: sid, version: 0x0300 });
  const v = run(Buffer.concat([bytes, Buffer.from('more')]));
  t.is(v.kind, 'match');
  if (v.kind === 'match') {
    t.deepEqual(v.fields.sessionId, sid);
    t.is(v.consumed, bytes.length);
  }
});

test('every strict prefix needs more, and is a not-mine reject when final', (t) => {
  const bytes = sslv2ClientHello();
  for (let n = 1; n < bytes.length; n++) {
    t.deepEqual(run(bytes.subarray(0, n), false), { kind: 'need-more' }, `prefix ${n}`);
    const v = run(bytes.subarray(0, n), true);
    t.is(v.kind, 'reject');
    if (v.kind === 'reject') t.is(v.protocol, undefined);
  }
});

const bad: Array<[string, Buffer, string]> = [
  ['msg_type 4', sslv2ClientHello({ msgType: 4 }), 'tls.sslv2.bad-type'],
  ['pure SSLv2 version 0x0002', sslv2ClientHello({ version: 0x0002 }), 'tls.sslv2.bad-version'],
  ['version 0x0304', sslv2ClientHello({ version: 0x0304 }), 'tls.sslv2.bad-version'],
  ['no cipher specs', sslv2ClientHello({ cipherSpecs: [] }), 'tls.sslv2.bad-ciphers'],
  ['8-byte session id', sslv2ClientHello({ sessionId: Buffer.alloc(8) }), 'tls.sslv2.bad-session-id'],
  ['15-byte challenge', sslv2ClientHello({ challenge: Buffer.alloc(15) }), 'tls.sslv2.bad-challenge'],
  ['33-byte challenge', sslv2ClientHello({ challenge: Buffer.alloc(33) }), 'tls.sslv2.bad-challenge'],
];

for (const [name, bytes, reason] of bad) {
  test(`SSLv2: ${name} → not mine (${reason})`, (t) => {
    t.deepEqual(run(bytes), { kind: 'reject', reason });
  });
}

test('SSLv2: lengths that do not sum to msg_length are not mine', (t) => {
  const bytes = sslv2ClientHello();
  for (const delta of [1, -1]) {
    const wrong = Buffer.from(bytes);
    wrong.writeUInt16BE(0x8000 | ((bytes.readUInt16BE(0) & 0x7fff) + delta), 0);
    t.deepEqual(run(wrong), { kind: 'reject', reason: 'tls.sslv2.bad-length' });
  }
  // A cipher_spec_length that is not a multiple of 3.
  const odd = Buffer.from(bytes);
  odd.set(u16(odd.readUInt16BE(5) + 1), 5);
  t.deepEqual(run(odd), { kind: 'reject', reason: 'tls.sslv2.bad-ciphers' });
});

test('SSLv2: a msg_length above maxHelloBytes is not mine', (t) => {
  const v = createTlsProbe({ maxHelloBytes: 20 }).probe(sslv2ClientHello(), { final: false });
  t.deepEqual(v, { kind: 'reject', reason: 'tls.sslv2.too-large' });
});

test('a single high-bit byte needs more', (t) => {
  t.deepEqual(run(Buffer.from([0x80]), false), { kind: 'need-more' });
});
