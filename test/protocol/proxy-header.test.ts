// PROXY protocol v1/v2 parser and builders (HAProxy proxy-protocol.txt), plus curl's real v1 header.
import test from 'ava';
import fc from 'fast-check';
import net from 'node:net';
import { spawn } from 'node:child_process';
import {
  NOT_PROXY,
  PP2_MAX_TLVS,
  PP2_TYPE_ALPN,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_NOOP,
  PP2_TYPE_SSL,
  PP2_TYPE_UNIQUE_ID,
  crc32c,
  isRecognisedProxyReject,
  parseProxyHeader,
  type ProxyTlv,
} from '../../src/protocol/proxy-header.js';
import { buildProxyV1, buildProxyV2 } from '../../src/protocol/proxy-header-build.js';
import { createHttpProbe } from '../../src/protocol/http-head.js';
import { detect } from '../../src/protocol/detector.js';
import { TwinportError } from '../../src/errors.js';
import { testWithTools } from '../helpers/tools.js';

const MORE = { final: false };
const FINAL = { final: true };
const SIG = '0d0a0d0a000d0a515549540a';

function parse(bytes: Buffer | string, opts = MORE) {
  return parseProxyHeader(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, opts);
}

function header(bytes: Buffer | string) {
  const v = parse(bytes);
  if (v.kind !== 'match') throw new Error(`expected a match, got ${JSON.stringify(v)}`);
  return v;
}

// --------------------------------------------------------------------------------------------------- v1

test('v1: the spec example (§2.1) before an HTTP request', (t) => {
  const line = 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n';
  const v = header(`${line}GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n`);
  t.is(v.consumed, line.length);
  t.like(v.header, {
    version: 1,
    command: 'PROXY',
    family: 'TCP4',
    source: { address: '192.168.0.1', port: 56324 },
    destination: { address: '192.168.0.11', port: 443 },
    length: line.length,
  });
  t.deepEqual(v.header.tlvs, []);
});

test('v1: TCP6, the short UNKNOWN form and the 107-byte worst case are accepted', (t) => {
  t.like(header('PROXY TCP6 2001:db8::1 ::1 65535 0\r\n').header, {
    family: 'TCP6',
    source: { address: '2001:db8::1', port: 65535 },
    destination: { address: '::1', port: 0 },
  });
  const unknown = header('PROXY UNKNOWN\r\n');
  t.is(unknown.header.family, 'UNKNOWN');
  t.false('source' in unknown.header);
  const f = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  const worst = `PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`;
  t.is(worst.length, 107);
  t.is(header(worst).consumed, 107);
});

test('v1: 107 bytes without CRLF is too long; every strict prefix of a valid line is need-more', (t) => {
  t.deepEqual(parse(`PROXY UNKNOWN ${'x'.repeat(93)}`), { kind: 'reject', reason: 'proxy.v1.too-long' });
  const line = 'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 65535 65535\r\n';
  for (let n = 0; n < line.length; n++) t.is(parse(line.slice(0, n)).kind, 'need-more', `prefix ${n}`);
});

for (const [title, input, reason] of [
  ['leading zero in an IPv4 octet', 'PROXY TCP4 192.168.01.1 10.0.0.1 1 2\r\n', 'proxy.v1.bad-address'],
  ['IPv4 octet over 255', 'PROXY TCP4 256.0.0.1 10.0.0.1 1 2\r\n', 'proxy.v1.bad-address'],
  ['IPv6 address under TCP4', 'PROXY TCP4 ::1 ::1 1 2\r\n', 'proxy.v1.bad-address'],
  ['IPv4 address under TCP6', 'PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'proxy.v1.bad-address'],
  ['IPv6 zone identifier', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'proxy.v1.bad-address'],
  ['leading zero in a port', 'PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n', 'proxy.v1.bad-port'],
  ['port over 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', 'proxy.v1.bad-port'],
  ['two spaces', 'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 'proxy.v1.bad-format'],
  ['missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'proxy.v1.bad-format'],
  ['trailing space', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', 'proxy.v1.bad-format'],
  ['bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'proxy.v1.bad-terminator'],
  ['CR not followed by LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', 'proxy.v1.bad-terminator'],
  ['unknown protocol word, decided before the CRLF', 'PROXY TCP5', 'proxy.v1.bad-family'],
  ['UNKNOWN glued to more text', 'PROXY UNKNOWNX\r\n', 'proxy.v1.bad-family'],
] as const) {
  test(`v1 refused: ${title} → ${reason}`, (t) => {
    const v = parse(input);
    t.deepEqual(v, { kind: 'reject', reason });
    t.true(v.kind === 'reject' && isRecognisedProxyReject(v));
  });
}

test('not PROXY: other bytes and lower-case "proxy" are not mine; signature prefixes wait', (t) => {
  for (const input of ['GET / HTTP/1.1\r\n', 'proxy TCP4', 'PROXX', '\x16\x03\x01', '\r\n\r\n\x01']) {
    const v = parse(input);
    t.deepEqual(v, { kind: 'reject', reason: NOT_PROXY }, JSON.stringify(input));
    t.false(v.kind === 'reject' && isRecognisedProxyReject(v));
  }
  t.is(parse('PROX').kind, 'need-more');
  t.is(parse(Buffer.from(SIG.slice(0, 10), 'hex')).kind, 'need-more');
  t.deepEqual(parse('PROX', FINAL), { kind: 'reject', reason: NOT_PROXY });
  t.deepEqual(parse('PROXY TCP4 1.2', FINAL), { kind: 'reject', reason: 'proxy.v1.incomplete' });
});

// --------------------------------------------------------------------------------------------------- v2

test('v2: a header HAProxy sent (captured in seriousben/experiment-proxy-protocol) parses', (t) => {
  const bytes = Buffer.from(`${SIG}2111000cac130001ac130003a6520050474554202f`, 'hex');
  const v = header(bytes);
  t.is(v.consumed, 28);
  t.like(v.header, {
    version: 2,
    command: 'PROXY',
    family: 'TCP4',
    source: { address: '172.19.0.1', port: 42578 },
    destination: { address: '172.19.0.3', port: 80 },
  });
});

test('v2: LOCAL discards the address block; UNSPEC carries TLVs only', (t) => {
  const local = header(Buffer.from(`${SIG}2011000c7f0000017f00000100010002`, 'hex'));
  t.is(local.header.command, 'LOCAL');
  t.false('source' in local.header);
  const unspec = header(Buffer.from(`${SIG}21000008020005612e636f6d`, 'hex'));
  t.is(unspec.header.family, 'UNKNOWN');
  t.is(unspec.header.authority, 'a.com');
});

test('v2: TCP6 addresses are printed as RFC 5952 text', (t) => {
  const src = '20010db8000000000000000000000001';
  const dst = '00000000000000000000ffff0a000001';
  const v = header(Buffer.from(`${SIG}21210024${src}${dst}04d201bb`, 'hex'));
  t.deepEqual(v.header.source, { address: '2001:db8::1', port: 1234 });
  t.deepEqual(v.header.destination, { address: '::ffff:10.0.0.1', port: 443 });
});

test('v2: the SSL TLV and its sub-TLVs are decoded (spec §2.2.6)', (t) => {
  const sub = (type: number, s: string) => Buffer.concat([Buffer.from([type, 0, s.length]), Buffer.from(s)]);
  const sslValue = Buffer.concat([Buffer.from([0x07, 0, 0, 0, 0]), sub(0x21, 'TLSv1.3'), sub(0x22, 'client.example'), sub(0x23, 'TLS_AES_128_GCM_SHA256')]);
  const bytes = buildProxyV2({
    source: { address: '10.0.0.1', port: 1 },
    destination: { address: '10.0.0.2', port: 2 },
    tlvs: [{ type: PP2_TYPE_SSL, value: sslValue }],
  });
  const ssl = header(bytes).header.ssl;
  t.like(ssl, { client: 7, verify: 0, version: 'TLSv1.3', cn: 'client.example', cipher: 'TLS_AES_128_GCM_SHA256' });
  t.is(ssl?.subTlvs.length, 3);
});

test('v2: CRC-32C is the Castagnoli CRC (check value of "123456789" is 0xE3069283)', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
});

const v4 = { source: { address: '10.1.2.3', port: 1111 }, destination: { address: '10.3.2.1', port: 443 } };
function withTlvs(tlvs: ProxyTlv[]) {
  return buildProxyV2({ ...v4, tlvs });
}

for (const [title, make, reason] of [
  ['version 1 in the version nibble', () => Buffer.from(`${SIG}1111000c`, 'hex'), 'proxy.v2.bad-version'],
  ['command 2', () => Buffer.from(`${SIG}2211000c`, 'hex'), 'proxy.v2.bad-command'],
  ['family 4', () => Buffer.from(`${SIG}2141000c`, 'hex'), 'proxy.v2.bad-family'],
  ['transport 3', () => Buffer.from(`${SIG}2113000c`, 'hex'), 'proxy.v2.bad-family'],
  ['length shorter than the IPv4 block', () => Buffer.from(`${SIG}2111000b${'00'.repeat(11)}`, 'hex'), 'proxy.v2.bad-length'],
  ['length shorter than the IPv6 block', () => Buffer.from(`${SIG}2121000c${'00'.repeat(12)}`, 'hex'), 'proxy.v2.bad-length'],
  ['length over the 64 KiB cap, decided from the fixed part', () => Buffer.from(`${SIG}2111fff1`, 'hex'), 'proxy.v2.too-long'],
  [
    'a TLV overrunning the header',
    () => {
      const b = withTlvs([{ type: 0xe0, value: Buffer.from('abc') }]);
      b.writeUInt16BE(4, b.length - 5); // claims 4 value bytes, 3 are there
      return b;
    },
    'proxy.v2.bad-tlv',
  ],
  ['a truncated TLV header', () => Buffer.concat([Buffer.from(`${SIG}2100000201`, 'hex'), Buffer.from([0])]), 'proxy.v2.bad-tlv'],
  ['two AUTHORITY TLVs', () => withTlvs([{ type: PP2_TYPE_AUTHORITY, value: Buffer.from('a') }, { type: PP2_TYPE_AUTHORITY, value: Buffer.from('b') }]), 'proxy.v2.duplicate-tlv'],
  ['AUTHORITY that is not UTF-8', () => withTlvs([{ type: PP2_TYPE_AUTHORITY, value: Buffer.from([0xc3, 0x28]) }]), 'proxy.v2.bad-tlv'],
  ['UNIQUE_ID over 128 bytes', () => withTlvs([{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.alloc(129, 1) }]), 'proxy.v2.bad-tlv'],
  ['SSL TLV shorter than client + verify', () => withTlvs([{ type: PP2_TYPE_SSL, value: Buffer.alloc(4) }]), 'proxy.v2.bad-tlv'],
  ['SSL sub-TLV overrunning', () => withTlvs([{ type: PP2_TYPE_SSL, value: Buffer.from('01000000002100ff41', 'hex') }]), 'proxy.v2.bad-tlv'],
  [
    'CRC32C that does not match',
    () => {
      const b = buildProxyV2({ ...v4, crc32c: true });
      b[b.length - 1] = b[b.length - 1]! ^ 1;
      return b;
    },
    'proxy.v2.bad-crc',
  ],
  ['CRC32C TLV of 3 bytes', () => withTlvs([{ type: 0x03, value: Buffer.alloc(3) }]), 'proxy.v2.bad-tlv'],
] as const) {
  test(`v2 refused: ${title} → ${reason}`, (t) => {
    const v = parse(make());
    t.deepEqual(v, { kind: 'reject', reason });
    t.true(v.kind === 'reject' && isRecognisedProxyReject(v));
  });
}

test('v2: final on a partial header is proxy.v2.incomplete', (t) => {
  const b = buildProxyV2(v4);
  t.deepEqual(parse(b.subarray(0, b.length - 1), FINAL), { kind: 'reject', reason: 'proxy.v2.incomplete' });
});

// ---------------------------------------------------------------------------------------------- builders

test('v1 builder: TCP4, TCP6, IPv4-mapped sent as TCP4, mixed families as UNKNOWN', (t) => {
  t.is(buildProxyV1({ address: '192.0.2.1', port: 5 }, { address: '192.0.2.2', port: 80 }).toString(), 'PROXY TCP4 192.0.2.1 192.0.2.2 5 80\r\n');
  t.is(
    buildProxyV1({ address: '2001:DB8:0:0:0:0:0:1', port: 5 }, { address: 'fe80::1%eth0', port: 80 }).toString(),
    'PROXY TCP6 2001:db8::1 fe80::1 5 80\r\n',
  );
  t.is(buildProxyV1({ address: '::ffff:192.0.2.1', port: 5 }, { address: '::ffff:192.0.2.2', port: 80 }).toString(), 'PROXY TCP4 192.0.2.1 192.0.2.2 5 80\r\n');
  t.is(buildProxyV1({ address: '192.0.2.1', port: 5 }, { address: '2001:db8::2', port: 80 }).toString(), 'PROXY UNKNOWN\r\n');
  t.is(buildProxyV1({ address: '/run/sock', port: 0 }, { address: '/run/sock', port: 0 }).toString(), 'PROXY UNKNOWN\r\n');
});

test('v2 builder: LOCAL is family UNSPEC with no addresses; UNIX paths round-trip', (t) => {
  const local = buildProxyV2({ command: 'LOCAL', ...v4 });
  t.is(local.toString('hex'), `${SIG}20000000`);
  const unix = header(buildProxyV2({ source: { address: '/run/a.sock', port: 0 }, destination: { address: '@abstract', port: 0 } }));
  t.like(unix.header, { family: 'UNIX', source: { address: '/run/a.sock', port: 0 }, destination: { address: '@abstract', port: 0 }, length: 16 + 216 });
});

test('builders refuse bad input with TWP_ERR_PROXY_HEADER_BUILD', (t) => {
  const code = { instanceOf: TwinportError, code: 'TWP_ERR_PROXY_HEADER_BUILD' as const };
  t.throws(() => buildProxyV1({ address: '1.2.3.4', port: 65536 }, { address: '1.2.3.4', port: 1 }), code);
  t.throws(() => buildProxyV2({ source: v4.source }), code);
  t.throws(() => buildProxyV2({ ...v4, tlvs: [{ type: 256, value: Buffer.alloc(0) }] }), code);
  t.throws(() => buildProxyV2({ ...v4, tlvs: [{ type: 3, value: Buffer.alloc(4) }], crc32c: true }), code);
  t.throws(() => buildProxyV2({ ...v4, tlvs: [{ type: 0xe0, value: Buffer.alloc(65536) }] }), code);
});

// ----------------------------------------------------------------------------- security review F1, F8, F13

/** A v2 UNIX header with these two 108-byte sun_path blocks. */
function unixHeader(src: Buffer, dst: Buffer): Buffer {
  const fixed = Buffer.from([0x21, 0x31, 0, 216]);
  return Buffer.concat([Buffer.from(SIG, 'hex'), fixed, src, dst]);
}

function sunPath(bytes: Buffer): Buffer {
  const b = Buffer.alloc(108);
  bytes.copy(b);
  return b;
}

test('v2 UNIX: a path that could not be re-encoded (no NUL in 108 bytes, not UTF-8) is proxy.v2.bad-address', (t) => {
  const ok = sunPath(Buffer.from('/run/ok.sock'));
  const bad = { kind: 'reject', reason: 'proxy.v2.bad-address' };
  // The review's second crash: '/' + 107 × 'a' fills sun_path with no terminator.
  t.deepEqual(parse(unixHeader(Buffer.from('/' + 'a'.repeat(107)), ok)), bad);
  t.deepEqual(parse(unixHeader(ok, Buffer.concat([Buffer.from([0]), Buffer.alloc(107, 0x61)]))), bad);
  t.deepEqual(parse(unixHeader(sunPath(Buffer.from([0x2f, 0xff, 0xfe])), ok)), bad);
  // What is accepted builds back to the same bytes (so `send_proxy: v2` can always forward it).
  for (const path of ['/' + 'a'.repeat(106), '/run/caf\u00e9.sock', '@' + 'b'.repeat(106)]) {
    const built = buildProxyV2({ source: { address: path, port: 0 }, destination: { address: '/x', port: 0 } });
    const v = header(built);
    t.is(v.header.source?.address, path);
    t.true(buildProxyV2({ source: v.header.source!, destination: v.header.destination! }).equals(built));
  }
});

test('v2: more than PP2_MAX_TLVS TLVs (SSL sub-TLVs included) is proxy.v2.too-many-tlvs', (t) => {
  const noops = (n: number): ProxyTlv[] => Array.from({ length: n }, () => ({ type: PP2_TYPE_NOOP, value: Buffer.alloc(0) }));
  t.is(parse(buildProxyV2({ ...v4, tlvs: noops(PP2_MAX_TLVS) })).kind, 'match');
  t.deepEqual(parse(buildProxyV2({ ...v4, tlvs: noops(PP2_MAX_TLVS + 1) })), { kind: 'reject', reason: 'proxy.v2.too-many-tlvs' });
  // The review's 21 000 NOOPs: refused, whatever the chunking.
  t.deepEqual(parse(buildProxyV2({ ...v4, tlvs: noops(21_000) })), { kind: 'reject', reason: 'proxy.v2.too-many-tlvs' });
  const sub = Buffer.concat(Array.from({ length: PP2_MAX_TLVS }, () => Buffer.from([0x2f, 0, 0])));
  const ssl = { type: PP2_TYPE_SSL, value: Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), sub]) };
  t.deepEqual(parse(buildProxyV2({ ...v4, tlvs: [ssl] })), { kind: 'reject', reason: 'proxy.v2.too-many-tlvs' });
});

test('detector: an untrusted source (proxyRefusal) is refused at the signature, before its header is parsed', (t) => {
  const untrusted = { proxyRefusal: 'proxy.untrusted' };
  const refused = { kind: 'reject', reason: 'proxy.untrusted', incomplete: false, reasons: ['proxy.untrusted'] };
  // A v2 header whose 64 KiB would only be read after the signature: 12 bytes decide.
  t.deepEqual(detect(Buffer.from(SIG, 'hex'), MORE, untrusted), refused);
  t.deepEqual(detect(Buffer.from('PROXY '), MORE, untrusted), refused);
  t.is(detect(Buffer.from(SIG.slice(0, 20), 'hex'), MORE, untrusted).kind, 'need-more');
  t.is(detect(Buffer.from('PROX'), MORE, untrusted).kind, 'need-more');
  // Without a signature nothing changes.
  const get = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.deepEqual(detect(get, MORE, untrusted), detect(get, MORE));
});

test('detector: a second PROXY header behind a parsed one is proxy.nested (v1 and v2 inside v1 and v2)', (t) => {
  const v1 = buildProxyV1({ address: '8.8.8.8', port: 1 }, { address: '10.0.0.1', port: 80 });
  const v2 = buildProxyV2(v4);
  const get = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  for (const outer of [v1, v2]) {
    for (const inner of [v1, v2]) {
      const d = detect(Buffer.concat([outer, inner, get]), MORE);
      t.like(d, { kind: 'reject', reason: 'proxy.nested' });
      t.is(d.kind === 'reject' ? d.proxy?.length : -1, outer.length);
    }
    t.like(detect(Buffer.concat([outer, get]), MORE), { kind: 'match', protocol: 'http' });
  }
});

// -------------------------------------------------------------------------------------------- properties

const mappedArb = fc.ipV4().map((a) => `::ffff:${a}`);
const pairArb = fc.oneof(
  fc.tuple(fc.oneof(fc.ipV4(), mappedArb), fc.oneof(fc.ipV4(), mappedArb)).map(([a, b]) => ({ a, b, v: 4 as const })),
  fc.tuple(fc.ipV6(), fc.ipV6()).map(([a, b]) => ({ a, b, v: 6 as const })),
);
const portArb = fc.integer({ min: 0, max: 65535 });
const tlvArb = fc.array(
  fc.record({ type: fc.oneof(fc.integer({ min: 0xe0, max: 0xf7 }), fc.constant(PP2_TYPE_NOOP)), value: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)) }),
  { maxLength: 4 },
);

/**
 * Canonical text of an IP, independent of our formatter (WHATWG URL host serialisation); IPv4-mapped IPv6
 * becomes the IPv4 address, as the builders send it.
 */
function canonical(ip: string): string {
  if (net.isIPv4(ip)) return new URL(`http://${ip}/`).hostname;
  const h = new URL(`http://[${ip.split('%')[0]}]/`).hostname;
  const m = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(h);
  if (m === null) return h;
  const x = parseInt(m[1]!, 16);
  const y = parseInt(m[2]!, 16);
  return `${x >> 8}.${x & 255}.${y >> 8}.${y & 255}`;
}

function sameIp(a: string, b: string): boolean {
  return canonical(a) === canonical(b);
}

test('property: build v2 → parse gives the same addresses, ports and TLVs, with or without CRC32C', (t) => {
  fc.assert(
    fc.property(
      pairArb,
      portArb,
      portArb,
      tlvArb,
      fc.option(fc.stringMatching(/^[a-z0-9.-]{1,30}$/)),
      fc.option(fc.constantFrom('h2', 'http/1.1')),
      fc.boolean(),
      ({ a, b }, sp, dp, custom, authority, alpn, crc) => {
        const tlvs: ProxyTlv[] = [...custom];
        if (authority !== null) tlvs.push({ type: PP2_TYPE_AUTHORITY, value: Buffer.from(authority) });
        if (alpn !== null) tlvs.unshift({ type: PP2_TYPE_ALPN, value: Buffer.from(alpn) });
        const bytes = buildProxyV2({ source: { address: a, port: sp }, destination: { address: b, port: dp }, tlvs, crc32c: crc });
        const v = parseProxyHeader(Buffer.concat([bytes, Buffer.from('GET')]), MORE);
        if (v.kind !== 'match') return false;
        const h = v.header;
        const gotTlvs = crc ? h.tlvs.slice(0, -1) : h.tlvs;
        return (
          v.consumed === bytes.length &&
          sameIp(h.source!.address, a) &&
          sameIp(h.destination!.address, b) &&
          h.source!.port === sp &&
          h.destination!.port === dp &&
          gotTlvs.length === tlvs.length &&
          gotTlvs.every((x, i) => x.type === tlvs[i]!.type && x.value.equals(tlvs[i]!.value)) &&
          h.authority === (authority ?? undefined) &&
          h.alpn === (alpn ?? undefined) &&
          (h.crc32cVerified === true) === crc
        );
      },
    ),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: build v1 → parse gives the same addresses and ports; strict prefixes are need-more', (t) => {
  fc.assert(
    fc.property(pairArb, portArb, portArb, fc.nat(), ({ a, b }, sp, dp, cut) => {
      const v = canonical(a).includes(':') || canonical(b).includes(':') ? 6 : 4;
      const bytes = buildProxyV1({ address: a, port: sp }, { address: b, port: dp });
      const parsed = parseProxyHeader(bytes, MORE);
      if (parsed.kind !== 'match') return false;
      const h = parsed.header;
      const prefix = bytes.subarray(0, cut % bytes.length);
      return (
        h.family === (v === 4 ? 'TCP4' : 'TCP6') &&
        sameIp(h.source!.address, a) &&
        sameIp(h.destination!.address, b) &&
        h.source!.port === sp &&
        h.destination!.port === dp &&
        parseProxyHeader(prefix, MORE).kind === 'need-more' &&
        parseProxyHeader(prefix, FINAL).kind === 'reject'
      );
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: every strict prefix of a v2 header is need-more; final on it is a reject', (t) => {
  fc.assert(
    fc.property(pairArb, tlvArb, fc.boolean(), fc.nat(), ({ a, b }, tlvs, crc, cut) => {
      const bytes = buildProxyV2({ source: { address: a, port: 1 }, destination: { address: b, port: 2 }, tlvs, crc32c: crc });
      const prefix = bytes.subarray(0, cut % bytes.length);
      return parseProxyHeader(prefix, MORE).kind === 'need-more' && parseProxyHeader(prefix, FINAL).kind === 'reject';
    }),
    { numRuns: 500 },
  );
  t.pass();
});

// Two bytes are outside what a CRC can protect: the length field (a shorter length can cut the CRC TLV off)
// and the CRC TLV's own type byte (turned into another type, there is no CRC left to check).
test('property: one changed byte in a CRC32C-protected v2 header (but length and CRC type) never matches', (t) => {
  fc.assert(
    fc.property(pairArb, tlvArb, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ a, b }, tlvs, at, flip) => {
      const bytes = buildProxyV2({ source: { address: a, port: 1 }, destination: { address: b, port: 2 }, tlvs, crc32c: true });
      const i = at % bytes.length;
      fc.pre(i !== 14 && i !== 15 && i !== bytes.length - 7);
      const changed = Buffer.from(bytes);
      changed[i] = changed[i]! ^ flip;
      const v = parseProxyHeader(changed, FINAL);
      // The one way a changed byte can still parse: a length byte of an earlier TLV grown so that it
      // swallows the CRC32C TLV, which then is not there to check (the TLV is optional in the spec).
      // What must never happen is a header that claims a verified CRC.
      return v.kind === 'reject' || (v.kind === 'match' && v.header.crc32cVerified !== true && !v.header.tlvs.some((x) => x.type === 0x03));
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

test('property: arbitrary bytes, and bytes behind either signature, give a verdict and never throw', (t) => {
  const sig2 = Buffer.from(SIG, 'hex');
  fc.assert(
    fc.property(
      fc.constantFrom(Buffer.alloc(0), sig2, Buffer.from('PROXY ')),
      fc.uint8Array({ maxLength: 300 }),
      fc.boolean(),
      (prefix, tail, final) => {
        const v = parseProxyHeader(Buffer.concat([prefix, Buffer.from(tail)]), { final });
        return final ? v.kind !== 'need-more' : true;
      },
    ),
    { numRuns: 2000 },
  );
  t.pass();
});

// ------------------------------------------------------------------------------------------- real curl

testWithTools({ curl: 'curl' }, "curl --haproxy-protocol: curl's v1 header carries the socket's addresses", async (t) => {
  const server = net.createServer();
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const got = new Promise<{ bytes: Buffer; peerPort: number }>((resolve) => {
      server.once('connection', (sock) => {
        let buf = Buffer.alloc(0);
        sock.on('error', () => {});
        sock.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (buf.includes('\r\n\r\n')) {
            sock.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
            resolve({ bytes: buf, peerPort: sock.remotePort! });
          }
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const c = spawn('curl', ['-s', '-o', '/dev/null', '--max-time', '10', '--haproxy-protocol', `http://127.0.0.1:${port}/pp`], { stdio: 'ignore' });
    child = c;
    const exited = new Promise((r) => c.on('exit', r));
    const { bytes, peerPort } = await got;
    await exited;
    const v = parseProxyHeader(bytes, MORE);
    if (v.kind !== 'match') return t.fail(JSON.stringify(v));
    t.like(v.header, {
      version: 1,
      family: 'TCP4',
      source: { address: '127.0.0.1', port: peerPort },
      destination: { address: '127.0.0.1', port },
    });
    // The request after the header is still a normal HTTP/1 request.
    const http = createHttpProbe().probe(bytes.subarray(v.consumed), MORE);
    t.is(http.kind === 'match' ? http.fields.target : http.kind, '/pp');
  } finally {
    child?.kill();
    server.close();
  }
});
