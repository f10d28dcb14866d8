// PROXY protocol header parser, versions 1 and 2 (HAProxy's proxy-protocol.txt, "the spec" below).
//
// Version 1 (spec §2.1), one US-ASCII line of at most 107 bytes including CRLF:
//   "PROXY" SP ( "TCP4" | "TCP6" ) SP src-addr SP dst-addr SP src-port SP dst-port CRLF
//   "PROXY" SP "UNKNOWN" *( any byte but CR/LF ) CRLF
//
// Version 2 (spec §2.2), binary:
//   sig[12]   0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//   ver_cmd   high nibble version (2), low nibble command (0 LOCAL, 1 PROXY)
//   fam       high nibble family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX), low nibble transport (0, 1 STREAM, 2 DGRAM)
//   len u16   bytes that follow; the header is exactly 16 + len bytes
//   addresses INET 4+4+2+2 = 12 | INET6 16+16+2+2 = 36 | UNIX 108+108 = 216 | UNSPEC 0
//   TLVs      { type u8, length u16, value[length] } until exactly the end of the header (spec §2.2)
//     0x20 SSL value: { client u8, verify u32, sub-TLVs… } (spec §2.2.6)
//
// Recognition: "PROXY " or the 12-byte v2 signature means these bytes are a PROXY header. From then on
// every reject reason starts with `proxy.` and is final (the spec, §2.1: "Any sequence which does not exactly
// match the protocol must be discarded and cause the receiver to abort the connection"). Before that, a
// strict prefix of either signature is need-more and anything else is "not mine" (reason `not-proxy`).
import { isIPv6 } from './ip-address.js';
import { ByteReader, ParseStop, runParser } from './byte-reader.js';
import { NEED_MORE, reject, type NeedMore, type ProbeOptions, type Reject } from './verdict.js';

export interface ProxyAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

/** PP2_TYPE_SSL decoded (spec §2.2.6). */
export interface ProxySsl {
  /** PP2_CLIENT_SSL 0x01 | PP2_CLIENT_CERT_CONN 0x02 | PP2_CLIENT_CERT_SESS 0x04 */
  readonly client: number;
  /** 0 when the client presented a certificate and it was verified. */
  readonly verify: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
  readonly subTlvs: readonly ProxyTlv[];
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  readonly command: 'PROXY' | 'LOCAL';
  readonly family: 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNIX' | 'UNIX_DGRAM' | 'UNKNOWN';
  /** Absent for LOCAL and UNKNOWN/UNSPEC: the receiver uses the real connection endpoints (spec §2.1, §2.2). */
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  /** Every TLV in order, NOOP and unknown types included; values are views into the input. */
  readonly tlvs: readonly ProxyTlv[];
  /** PP2_TYPE_AUTHORITY (UTF-8; usually the client's SNI). */
  readonly authority?: string;
  /** PP2_TYPE_ALPN (bytes as latin1, lossless). */
  readonly alpn?: string;
  readonly uniqueId?: Buffer;
  readonly ssl?: ProxySsl;
  readonly netns?: string;
  /** True when a PP2_TYPE_CRC32C TLV was present (and matched: a mismatch is a reject). */
  readonly crc32cVerified?: boolean;
  /** Header bytes. */
  readonly length: number;
}

export type ProxyParse = NeedMore | Reject | { readonly kind: 'match'; readonly header: ProxyHeader; readonly consumed: number };

export interface ProxyParseLimits {
  /** Largest v2 header accepted, in bytes (16 + len). Default and ceiling 64 KiB. */
  readonly maxV2Length?: number;
}

export const PROXY_V1_PREFIX: Buffer = Buffer.from('PROXY ', 'latin1');
/** Spec §2.1: the worst case "PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n" is 107 bytes. */
export const PROXY_V1_MAX_LENGTH = 107;
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** sig[12] + ver_cmd + fam + len u16 */
export const PROXY_V2_FIXED_LENGTH = 12 + 1 + 1 + 2;
/** The u16 allows 16 + 65535; we cap at 64 KiB (the detector's peek cap is no larger anyway). */
export const PROXY_V2_MAX_LENGTH = 64 * 1024;

export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_NOOP = 0x04;
export const PP2_TYPE_UNIQUE_ID = 0x05;
export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_SUBTYPE_SSL_SIG_ALG = 0x24;
export const PP2_SUBTYPE_SSL_KEY_ALG = 0x25;
export const PP2_TYPE_NETNS = 0x30;
/** Spec §2.2.5: "an opaque byte sequence of up to 128 bytes". */
export const PP2_UNIQUE_ID_MAX = 128;
/**
 * Most TLVs (sub-TLVs of PP2_TYPE_SSL included) one header may carry. Real balancers send a handful
 * (HAProxy: ALPN, AUTHORITY, UNIQUE_ID, SSL with five sub-TLVs, NETNS, CRC32C); a 64 KiB header of 21 000
 * NOOPs cost 25 times a typical connection, one object per TLV.
 */
export const PP2_MAX_TLVS = 64;

/** Reason for bytes that are not a PROXY header at all. Deliberately not under `proxy.` (see below). */
export const NOT_PROXY = 'not-proxy';

/**
 * True when a reject means "a PROXY header, but a broken one": the signature was recognised, so the
 * connection must be aborted rather than handed to the other probes.
 */
export function isRecognisedProxyReject(r: Reject): boolean {
  return r.reason.startsWith('proxy.');
}

/** Parses a PROXY v1 or v2 header at the start of `bytes`. Pure; never throws on any input. */
export function parseProxyHeader(bytes: Buffer, opts: ProbeOptions, limits: ProxyParseLimits = {}): ProxyParse {
  if (bytes.length === 0) return opts.final ? reject(NOT_PROXY) : NEED_MORE;
  if (startsLike(bytes, PROXY_V2_SIGNATURE)) {
    if (bytes.length < PROXY_V2_SIGNATURE.length) return opts.final ? reject(NOT_PROXY) : NEED_MORE;
    const v = parseV2(bytes, Math.min(limits.maxV2Length ?? PROXY_V2_MAX_LENGTH, PROXY_V2_MAX_LENGTH));
    return v.kind === 'need-more' && opts.final ? reject('proxy.v2.incomplete') : v;
  }
  if (startsLike(bytes, PROXY_V1_PREFIX)) {
    if (bytes.length < PROXY_V1_PREFIX.length) return opts.final ? reject(NOT_PROXY) : NEED_MORE;
    const v = parseV1(bytes);
    return v.kind === 'need-more' && opts.final ? reject('proxy.v1.incomplete') : v;
  }
  return reject(NOT_PROXY);
}

/**
 * Whether `bytes` start with a PROXY signature ("PROXY " or the 12-byte v2 one), a strict prefix of one, or
 * neither: enough to refuse a header without parsing it.
 */
export function proxySignature(bytes: Buffer): 'complete' | 'prefix' | 'none' {
  for (const sig of [PROXY_V2_SIGNATURE, PROXY_V1_PREFIX]) {
    if (!startsLike(bytes, sig)) continue;
    return bytes.length >= sig.length ? 'complete' : 'prefix';
  }
  return 'none';
}

/** bytes and sig agree on their common length (so bytes is a prefix of sig, or starts with it). */
function startsLike(bytes: Buffer, sig: Buffer): boolean {
  const n = Math.min(bytes.length, sig.length);
  return bytes.compare(sig, 0, n, 0, n) === 0;
}

// ---------------------------------------------------------------------------------------------- version 1

const CR = 0x0d;
const LF = 0x0a;
const V1_FAMILIES = ['TCP4 ', 'TCP6 ', 'UNKNOWN'];

function parseV1(bytes: Buffer): ProxyParse {
  const window = bytes.subarray(0, Math.min(bytes.length, PROXY_V1_MAX_LENGTH));
  const start = PROXY_V1_PREFIX.length;

  // Abort as early as the bytes allow (spec §2.1 recommends it): the protocol word is one of three.
  const seen = window.toString('latin1', start, Math.min(window.length, start + 7));
  const family = V1_FAMILIES.find((f) => f.startsWith(seen) || seen.startsWith(f));
  if (family === undefined) return reject('proxy.v1.bad-family');

  // Spec §2.1: wait for the CRLF before decoding; no single CR or LF may end the line.
  const cr = window.indexOf(CR, start);
  const lf = window.indexOf(LF, start);
  if (lf >= 0 && cr !== lf - 1) return reject('proxy.v1.bad-terminator');
  if (cr >= 0 && cr + 1 < window.length && window[cr + 1] !== LF) return reject('proxy.v1.bad-terminator');
  if (lf < 0) return window.length >= PROXY_V1_MAX_LENGTH ? reject('proxy.v1.too-long') : NEED_MORE;

  const length = lf + 1;
  const line = window.toString('latin1', start, cr);
  if (family === 'UNKNOWN') {
    // "the receiver must ignore anything presented before the CRLF is found" — but only after a space:
    // "UNKNOWNX" is not the word UNKNOWN.
    if (line.length > 7 && line[7] !== ' ') return reject('proxy.v1.bad-family');
    return match({ version: 1, command: 'PROXY', family: 'UNKNOWN', tlvs: [], length });
  }

  const parts = line.split(' ');
  if (parts.length !== 5 || parts.some((p) => p === '')) return reject('proxy.v1.bad-format');
  const [proto, srcAddr, dstAddr, srcPort, dstPort] = parts as [string, string, string, string, string];
  const v4 = proto === 'TCP4';
  for (const a of [srcAddr, dstAddr]) {
    if (!(v4 ? isStrictIPv4(a) : isStrictIPv6(a))) return reject('proxy.v1.bad-address');
  }
  const sp = parseV1Port(srcPort);
  const dp = parseV1Port(dstPort);
  if (sp === undefined || dp === undefined) return reject('proxy.v1.bad-port');
  return match({
    version: 1,
    command: 'PROXY',
    family: v4 ? 'TCP4' : 'TCP6',
    source: { address: srcAddr, port: sp },
    destination: { address: dstAddr, port: dp },
    tlvs: [],
    length,
  });
}

// Spec §2.1: "exactly 4 integers in the range [0..255] … Heading zeroes are not permitted".
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const STRICT_IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);

function isStrictIPv4(s: string): boolean {
  return STRICT_IPV4.test(s);
}

/** Spec §2.1: hex groups with at most one "::"; we also accept a trailing dotted quad, never a zone. */
function isStrictIPv6(s: string): boolean {
  return /^[0-9A-Fa-f:.]+$/.test(s) && isIPv6(s);
}

/** Decimal 0–65535 without leading zeroes (spec §2.1). */
function parseV1Port(s: string): number | undefined {
  if (!/^(?:0|[1-9][0-9]{0,4})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function match(header: ProxyHeader): ProxyParse {
  return { kind: 'match', header, consumed: header.length };
}

// ---------------------------------------------------------------------------------------------- version 2

const V2_ADDRESS_BLOCK: Record<number, number> = { 0x1: 4 + 4 + 2 + 2, 0x2: 16 + 16 + 2 + 2, 0x3: 108 + 108 };

const FAMILY_NAMES: Record<number, ProxyHeader['family']> = {
  0x11: 'TCP4',
  0x12: 'UDP4',
  0x21: 'TCP6',
  0x22: 'UDP6',
  0x31: 'UNIX',
  0x32: 'UNIX_DGRAM',
};

function parseV2(bytes: Buffer, maxLength: number): ProxyParse {
  // The fixed part is checked byte by byte as it arrives so a wrong version/command aborts at once.
  const fixed = runParser(() => {
    const r = new ByteReader(bytes, PROXY_V2_SIGNATURE.length, PROXY_V2_FIXED_LENGTH, bytes.length);
    const verCmd = r.u8('proxy.v2.bad-length');
    if (verCmd >> 4 !== 2) throw new ParseStop('proxy.v2.bad-version');
    const command = verCmd & 0x0f;
    if (command > 1) throw new ParseStop('proxy.v2.bad-command');
    const fam = r.u8('proxy.v2.bad-length');
    // Spec §2.2: families above 3 and transports above 2 "must be rejected as invalid by receivers".
    if (fam >> 4 > 3 || (fam & 0x0f) > 2) throw new ParseStop('proxy.v2.bad-family');
    const len = r.u16('proxy.v2.bad-length');
    return { command, fam, len };
  });
  if (!fixed.ok) return fixed.reason === undefined ? NEED_MORE : reject(fixed.reason);
  const { command, fam, len } = fixed.value;
  const total = PROXY_V2_FIXED_LENGTH + len;
  if (total > maxLength) return reject('proxy.v2.too-long');
  // Spec §2.2: "The receiver must not start to parse an address before the whole address block is received."
  if (bytes.length < total) return NEED_MORE;

  const body = runParser(() => parseV2Body(bytes.subarray(0, total), command, fam));
  if (!body.ok) return reject(body.reason ?? 'proxy.v2.bad-length'); // everything is available: no need-more
  return match(body.value);
}

function parseV2Body(header: Buffer, command: number, fam: number): ProxyHeader {
  const r = new ByteReader(header, PROXY_V2_FIXED_LENGTH);
  const familyNibble = fam >> 4;
  const transport = fam & 0x0f;
  // UNSPEC in either nibble: "the receiver should ignore address information" — and there is none to skip:
  // the spec defines no address block for it, so what follows is TLVs.
  const known = familyNibble !== 0 && transport !== 0;
  const family = known ? FAMILY_NAMES[fam]! : 'UNKNOWN';

  let source: ProxyAddress | undefined;
  let destination: ProxyAddress | undefined;
  if (known) {
    const block = r.sub(V2_ADDRESS_BLOCK[familyNibble]!, 'proxy.v2.bad-length');
    if (familyNibble === 0x3) {
      source = { address: decodeUnixPath(block.bytes(108, 'proxy.v2.bad-length')), port: 0 };
      destination = { address: decodeUnixPath(block.bytes(108, 'proxy.v2.bad-length')), port: 0 };
    } else {
      const size = familyNibble === 0x1 ? 4 : 16;
      const src = block.bytes(size, 'proxy.v2.bad-length');
      const dst = block.bytes(size, 'proxy.v2.bad-length');
      const sp = block.u16('proxy.v2.bad-length');
      const dp = block.u16('proxy.v2.bad-length');
      const fmt = size === 4 ? formatIPv4 : formatIPv6;
      source = { address: fmt(src), port: sp };
      destination = { address: fmt(dst), port: dp };
    }
  }

  const tlvs: ProxyTlv[] = [];
  const singles = new Set<number>();
  const out: {
    authority?: string;
    alpn?: string;
    uniqueId?: Buffer;
    ssl?: ProxySsl;
    netns?: string;
    crc32cVerified?: boolean;
  } = {};
  let crcAt = -1;
  while (!r.atEnd) {
    if (tlvs.length === PP2_MAX_TLVS) throw new ParseStop('proxy.v2.too-many-tlvs');
    const type = r.u8('proxy.v2.bad-tlv');
    const valueAt = r.offset + 2;
    const value = r.bytes(r.u16('proxy.v2.bad-tlv'), 'proxy.v2.bad-tlv');
    tlvs.push({ type, value });
    if (type === PP2_TYPE_NOOP || !SINGLE_TLVS.has(type)) continue;
    // A second AUTHORITY (or CRC…) would let two readers of this header disagree: refuse.
    if (singles.has(type)) throw new ParseStop('proxy.v2.duplicate-tlv');
    singles.add(type);
    switch (type) {
      case PP2_TYPE_ALPN:
        out.alpn = value.toString('latin1');
        break;
      case PP2_TYPE_AUTHORITY:
        out.authority = decodeUtf8(value);
        break;
      case PP2_TYPE_CRC32C:
        if (value.length !== 4) throw new ParseStop('proxy.v2.bad-tlv');
        crcAt = valueAt;
        break;
      case PP2_TYPE_UNIQUE_ID:
        if (value.length > PP2_UNIQUE_ID_MAX) throw new ParseStop('proxy.v2.bad-tlv');
        out.uniqueId = value;
        break;
      case PP2_TYPE_SSL:
        out.ssl = parseSsl(value, PP2_MAX_TLVS - tlvs.length);
        break;
      case PP2_TYPE_NETNS:
        out.netns = decodeUtf8(value);
        break;
    }
  }

  if (crcAt >= 0) {
    // Spec §2.2.3: zero the checksum field, CRC32c the whole header (RFC 4960 Appendix B), compare.
    const copy = Buffer.from(header);
    const sent = copy.readUInt32BE(crcAt);
    copy.fill(0, crcAt, crcAt + 4);
    if (crc32c(copy) !== sent) throw new ParseStop('proxy.v2.bad-crc');
    out.crc32cVerified = true;
  }

  const isLocal = command === 0;
  return {
    version: 2,
    command: isLocal ? 'LOCAL' : 'PROXY',
    family,
    // LOCAL: "the receiver … must use the real connection endpoints and discard the protocol block".
    ...(source !== undefined && !isLocal ? { source } : {}),
    ...(destination !== undefined && !isLocal ? { destination } : {}),
    tlvs,
    ...out,
    length: header.length,
  };
}

const SINGLE_TLVS = new Set([PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, PP2_TYPE_SSL, PP2_TYPE_NETNS]);

/** struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; } (spec §2.2.6) */
function parseSsl(value: Buffer, maxSubTlvs: number): ProxySsl {
  const r = new ByteReader(value);
  const client = r.u8('proxy.v2.bad-tlv');
  const verify = r.u32('proxy.v2.bad-tlv');
  const subTlvs: ProxyTlv[] = [];
  const strings: { version?: string; cn?: string; cipher?: string; sigAlg?: string; keyAlg?: string } = {};
  while (!r.atEnd) {
    if (subTlvs.length >= maxSubTlvs) throw new ParseStop('proxy.v2.too-many-tlvs');
    const type = r.u8('proxy.v2.bad-tlv');
    const sub = r.bytes(r.u16('proxy.v2.bad-tlv'), 'proxy.v2.bad-tlv');
    subTlvs.push({ type, value: sub });
    const key = SSL_STRINGS[type];
    if (key === undefined) continue;
    if (strings[key] !== undefined) throw new ParseStop('proxy.v2.duplicate-tlv');
    strings[key] = decodeUtf8(sub);
  }
  return { client, verify, ...strings, subTlvs };
}

const SSL_STRINGS: Record<number, 'version' | 'cn' | 'cipher' | 'sigAlg' | 'keyAlg'> = {
  [PP2_SUBTYPE_SSL_VERSION]: 'version',
  [PP2_SUBTYPE_SSL_CN]: 'cn',
  [PP2_SUBTYPE_SSL_CIPHER]: 'cipher',
  [PP2_SUBTYPE_SSL_SIG_ALG]: 'sigAlg',
  [PP2_SUBTYPE_SSL_KEY_ALG]: 'keyAlg',
};

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(b: Buffer): string {
  try {
    return UTF8.decode(b);
  } catch {
    throw new ParseStop('proxy.v2.bad-tlv');
  }
}

/**
 * sun_path: NUL-terminated; a leading NUL is a Linux abstract socket, shown as "@name". A path is accepted
 * only if it reads back to the same 108 bytes when re-encoded (proxy-header-build.ts, for a server with
 * `send_proxy: v2`): so it must end with a NUL inside the 108 bytes, and a path must be UTF-8 (a U+FFFD
 * replacement would re-encode to other, longer bytes).
 */
function decodeUnixPath(b: Buffer): string {
  if (b[b.length - 1] !== 0) throw new ParseStop('proxy.v2.bad-address');
  if (b[0] === 0) {
    let end = b.length;
    while (end > 1 && b[end - 1] === 0) end--;
    return end <= 1 ? '' : `@${b.toString('latin1', 1, end)}`;
  }
  const nul = b.indexOf(0);
  try {
    return UTF8.decode(b.subarray(0, nul));
  } catch {
    throw new ParseStop('proxy.v2.bad-address');
  }
}

export function formatIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text: lower-case, no leading zeroes, the first longest run (≥ 2) of zero groups as "::". */
export function formatIPv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  // RFC 5952 §5: IPv4-mapped addresses keep the dotted quad.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${formatIPv4(b.subarray(12))}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 (RFC 4960 Appendix B / RFC 3720 B.4).
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
