// JA4 against the worked example and rules of the FoxIO spec (technical_details/JA4.md, v0.18.x).
import test from 'ava';
import { createHash } from 'node:crypto';
import { computeJa4, type Ja4Input } from '../../src/protocol/ja4.js';
import { createTlsProbe } from '../../src/protocol/tls-client-hello.js';
import {
  clientHelloRecords,
  ext,
  extAlpn,
  extGroups,
  extKeyShare,
  extPskModes,
  extSessionTicket,
  extSigAlgs,
  extSni,
  extSupportedVersions,
  type Ext,
} from '../helpers/tls-build.js';

// The spec's example hello: 15 ciphers, 16 extensions (wire order), 8 signature algorithms, ALPN h2.
const SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];
const SPEC_EXTENSIONS = [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015];
const SPEC_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

test('the spec example: t13d1516h2_8daaf6152771_e5627efa2ab1', (t) => {
  const input: Ja4Input = {
    legacyVersion: 0x0303,
    cipherSuites: SPEC_CIPHERS,
    extensionTypes: SPEC_EXTENSIONS,
    alpn: ['h2', 'http/1.1'],
    supportedVersions: [0x0304, 0x0303],
    signatureAlgorithms: SPEC_SIGALGS,
  };
  t.is(computeJa4(input), 't13d1516h2_8daaf6152771_e5627efa2ab1');
});

test('GREASE is ignored in ciphers, extensions, versions and signature algorithms', (t) => {
  const input: Ja4Input = {
    legacyVersion: 0x0303,
    cipherSuites: [0x0a0a, ...SPEC_CIPHERS],
    extensionTypes: [0x1a1a, ...SPEC_EXTENSIONS, 0xfafa],
    alpn: ['h2'],
    supportedVersions: [0x7a7a, 0x0304, 0x0303],
    signatureAlgorithms: [0x2a2a, ...SPEC_SIGALGS],
  };
  t.is(computeJa4(input), 't13d1516h2_8daaf6152771_e5627efa2ab1');
});

test('the spec example end to end through the parser, GREASE included on the wire', (t) => {
  const data: Record<number, Ext> = {
    0x0000: extSni('www.example.com'),
    0x0010: extAlpn('h2', 'http/1.1'),
    0x000d: extSigAlgs(0x3a3a, ...SPEC_SIGALGS),
    0x002b: extSupportedVersions(0x4a4a, 0x0304, 0x0303),
    0x0033: extKeyShare(0x001d),
    0x002d: extPskModes(1),
    0x000a: extGroups(0x001d, 0x0017),
    0x0023: extSessionTicket(),
  };
  const exts = [ext(0x0a0a), ...SPEC_EXTENSIONS.map((type) => data[type] ?? ext(type, Buffer.from([0])))];
  const v = createTlsProbe().probe(clientHelloRecords({ cipherSuites: [0x5a5a, ...SPEC_CIPHERS], extensions: exts }), {
    final: true,
  });
  t.is(v.kind, 'match');
  if (v.kind === 'match') t.is(v.fields.ja4, 't13d1516h2_8daaf6152771_e5627efa2ab1');
});

test('no signature algorithms: the extension list alone is hashed (spec: 6d807ffa2a79)', (t) => {
  const ja4 = computeJa4({ legacyVersion: 0x0303, cipherSuites: SPEC_CIPHERS, extensionTypes: SPEC_EXTENSIONS, alpn: ['h2'] });
  t.is(ja4.split('_')[2], '6d807ffa2a79');
});

test('empty cipher or extension lists hash to twelve zeros', (t) => {
  t.is(computeJa4({ legacyVersion: 0x0303, cipherSuites: [], extensionTypes: [] }), 't12i000000_000000000000_000000000000');
  // Only SNI and ALPN: both are left out of the hashed list, which is then empty.
  t.is(computeJa4({ legacyVersion: 0x0303, cipherSuites: [], extensionTypes: [0, 16], alpn: ['h2'] }), 't12d0002h2_000000000000_000000000000');
});

test('version: highest supported_versions value, else legacy_version', (t) => {
  const base = { cipherSuites: [0x002f], extensionTypes: [0x002b] };
  t.is(computeJa4({ ...base, legacyVersion: 0x0303, supportedVersions: [0x0303, 0x0304, 0x0302] }).slice(1, 3), '13');
  t.is(computeJa4({ ...base, legacyVersion: 0x0303, supportedVersions: [0x0302] }).slice(1, 3), '11');
  const noExt = { cipherSuites: [0x002f], extensionTypes: [] };
  t.is(computeJa4({ ...noExt, legacyVersion: 0x0301 }).slice(1, 3), '10');
  t.is(computeJa4({ ...noExt, legacyVersion: 0x0300 }).slice(1, 3), 's3');
  t.is(computeJa4({ ...noExt, legacyVersion: 0x0305 }).slice(1, 3), '00');
});

test('ALPN label: first/last char, single char twice, non-alphanumeric as hex (spec examples)', (t) => {
  const label = (alpn: string[] | undefined): string =>
    computeJa4({ legacyVersion: 0x0303, cipherSuites: [], extensionTypes: [], ...(alpn ? { alpn } : {}) }).slice(8, 10);
  const bin = (...b: number[]): string => Buffer.from(b).toString('latin1');
  t.is(label(['http/1.1']), 'h1');
  t.is(label(['q']), 'qq');
  t.is(label(undefined), '00');
  t.is(label(['']), '00');
  t.is(label([bin(0xab)]), 'ab');
  t.is(label([bin(0xab, 0xcd)]), 'ad');
  t.is(label([bin(0x30, 0xab)]), '3b');
  t.is(label([bin(0x30, 0x31, 0xab, 0xcd)]), '3d');
  t.is(label([bin(0x30, 0xab, 0xcd, 0x31)]), '01');
});

test('counts are two digits, capped at 99', (t) => {
  const many = Array.from({ length: 120 }, (_, i) => 0x0100 + i);
  const ja4 = computeJa4({ legacyVersion: 0x0303, cipherSuites: many, extensionTypes: many });
  t.is(ja4.slice(4, 8), '9999');
  t.is(computeJa4({ legacyVersion: 0x0303, cipherSuites: [1, 2, 3], extensionTypes: [5] }).slice(4, 8), '0301');
});

test('part b is the truncated sha256 of the sorted lower-case hex list', (t) => {
  const ciphers = [0xc02b, 0x002f, 0x1301];
  const expected = createHash('sha256').update('002f,1301,c02b').digest('hex').slice(0, 12);
  t.is(computeJa4({ legacyVersion: 0x0303, cipherSuites: ciphers, extensionTypes: [] }).split('_')[1], expected);
});
