// The ClientHello body walk: one pass of one ByteReader over the bytes after the handshake header, in
// place, with the limit narrowed and restored for each vector (no reader, view or closure per vector).
// It runs once per TLS connection and is most of the probe's cost, so beyond that one reader it allocates
// only the fields it returns: owned copies of the byte fields, the lists, the SNI and ALPN strings.
//
// ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2):
//   ProtocolVersion legacy_version;                 2
//   Random random;                                  32
//   opaque legacy_session_id<0..32>;                1 + n
//   CipherSuite cipher_suites<2..2^16-2>;           2 + 2k
//   opaque legacy_compression_methods<1..2^8-1>;    1 + m
//   Extension extensions<8..2^16-1>;                absent in some pre-TLS-1.2 hellos (RFC 5246 §7.4.1.2)
//     Extension = ExtensionType(2) | opaque extension_data<0..2^16-1>

import { isUtf8 } from 'node:buffer';
import { ByteReader, ParseStop } from './byte-reader.js';
import { computeJa4 } from './ja4.js';
import { ExtensionType, MAX_SESSION_ID_BYTES, RANDOM_BYTES } from './tls-constants.js';
import type { TlsFields } from './tls-client-hello.js';
import { reject, type Reject } from './verdict.js';

/** RFC 6066 §3 allows 2^16-1; DNS names are at most 255 octets on the wire (RFC 1035 §2.3.4). */
export const MAX_SNI_BYTES = 255;

// Caps on list lengths. The walk is linear, but a 64 KiB hello of one long list turned into 16 000–32 000
// numbers or strings cost 3–25 times a typical connection (docs/security.md). Each cap is far above what any
// client sends (browsers: ~16 suites, ~18 extensions, 2 ALPN names, 1–2 PSK identities; scanners that
// offer every suite known: under 400) and is refused with its own reason.
/** Cipher suites (a u16 each). */
export const MAX_CIPHER_SUITES = 1024;
/** Extensions in one hello (GREASE included). */
export const MAX_EXTENSIONS = 128;
/** ALPN protocol names. */
export const MAX_ALPN_NAMES = 64;
/** PSK identities (RFC 8446 §4.2.11): one per ticket a client offers. */
export const MAX_PSK_IDENTITIES = 16;
/** Entries of the other u16 lists of up to 2^16-1 bytes: supported_groups, signature_algorithms. */
export const MAX_LIST_ENTRIES = 1024;
/** key_share entries (one per group the client sends a share for). */
export const MAX_KEY_SHARES = 64;

function fail(reason: string): never {
  throw new ParseStop(reason);
}

// Reasons shared by several reads, named once so each read says which rule it checks.
const HELLO_LENGTH = 'tls.hello.bad-length';
const SESSION_ID = 'tls.hello.bad-session-id';
const CIPHERS = 'tls.hello.bad-ciphers';
const COMPRESSION = 'tls.hello.bad-compression';
const EXT_LENGTH = 'tls.ext.bad-length';
const SNI_LENGTH = 'tls.sni.bad-length';
const ALPN_LENGTH = 'tls.alpn.bad-length';
const KEYSHARE_LENGTH = 'tls.keyshare.bad-length';
const PSK_LENGTH = 'tls.psk.bad-length';
const VERSIONS_LENGTH = 'tls.versions.bad-length';
const GROUPS_LENGTH = 'tls.groups.bad-length';
const SIGALGS_LENGTH = 'tls.sigalgs.bad-length';
const PSKMODES_LENGTH = 'tls.pskmodes.bad-length';

/** Shared by every hello without a session ID: a zero-length Buffer holds nothing to alias. */
const NO_BYTES = Buffer.alloc(0);

/**
 * An owned copy of buf[at, at + n): fields outlive the peek buffer they were read from. (Buffer.from of a
 * view costs about twice this.)
 */
function copyOf(buf: Buffer, at: number, n: number): Buffer {
  if (n === 0) return NO_BYTES;
  const out = Buffer.allocUnsafe(n);
  // A byte loop beats Buffer#copy's native call for session-ID-sized copies.
  if (n <= 64) for (let i = 0; i < n; i++) out[i] = buf[at + i]!;
  else buf.copy(out, 0, at, at + n);
  return out;
}

/**
 * The u16 values of a `<2..>` list in buf[at, at + n) (groups, schemes, versions): non-empty, even length,
 * at most `max` entries (else `tooMany`).
 */
function u16List(buf: Buffer, at: number, n: number, reason: string, max = Infinity, tooMany = reason): number[] {
  if (n === 0 || n % 2 !== 0) fail(reason);
  if (n >> 1 > max) fail(tooMany);
  const out = new Array<number>(n >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (buf[at + 2 * i]! << 8) | buf[at + 2 * i + 1]!;
  return out;
}

/** The u8 values in buf[at, at + n). */
function u8List(buf: Buffer, at: number, n: number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = buf[at + i]!;
  return out;
}

/** ALPN IDs nearly every hello offers (IANA "TLS ALPN Protocol IDs"), returned without decoding a string. */
const COMMON_ALPN: readonly string[] = ['h2', 'http/1.1', 'http/1.0', 'h3', 'acme-tls/1'];

/** buf[at, at + n) decoded latin1 (one char per byte): the interned string for a common ID. */
function alpnName(buf: Buffer, at: number, n: number): string {
  next: for (const id of COMMON_ALPN) {
    if (id.length !== n) continue;
    for (let i = 0; i < n; i++) if (id.charCodeAt(i) !== buf[at + i]) continue next;
    return id;
  }
  return buf.toString('latin1', at, at + n);
}

/**
 * server_name (RFC 6066 §3), the extension_data under `r`'s limit:
 *   struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
 *   opaque HostName<1..2^16-1>;
 *   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 * "The ServerNameList MUST NOT contain more than one name of the same name_type." Other name types have
 * no defined layout; like OpenSSL and HAProxy we assume the same u16-prefixed opaque and skip them.
 */
function readSni(r: ByteReader, buf: Buffer): string | undefined {
  if (r.wholeVec16(SNI_LENGTH) === 0) fail('tls.sni.empty-list');
  let name: string | undefined;
  while (!r.atEnd) {
    const type = r.u8(SNI_LENGTH);
    const n = r.u16(SNI_LENGTH);
    const at = r.take(n, SNI_LENGTH);
    if (type !== 0) continue;
    if (name !== undefined) fail('tls.sni.duplicate');
    if (n === 0) fail('tls.sni.empty');
    let ascii = true;
    for (let i = at; i < at + n; i++) {
      const c = buf[i]!;
      // A NUL would let "good.example\0evil" match differently in C and JS consumers.
      if (c === 0) fail('tls.sni.nul');
      if (c >= 0x80) ascii = false;
    }
    if (n > MAX_SNI_BYTES) fail('tls.sni.too-long');
    // HostName is meant to be ASCII (A-labels); raw UTF-8 is tolerated and kept as text, anything that
    // is not UTF-8 cannot be shown or matched faithfully.
    if (!ascii && !isUtf8(buf.subarray(at, at + n))) fail('tls.sni.bad-utf8');
    name = buf.toString(ascii ? 'latin1' : 'utf8', at, at + n);
  }
  return name;
}

/** ALPN (RFC 7301 §3.1): ProtocolName protocol_name_list<2..2^16-1>; opaque ProtocolName<1..2^8-1>. */
function readAlpn(r: ByteReader, buf: Buffer): string[] {
  if (r.wholeVec16(ALPN_LENGTH) === 0) fail('tls.alpn.empty-list');
  const names: string[] = [];
  while (!r.atEnd) {
    if (names.length === MAX_ALPN_NAMES) fail('tls.alpn.too-many');
    const n = r.u8(ALPN_LENGTH);
    const at = r.take(n, ALPN_LENGTH);
    if (n === 0) fail('tls.alpn.empty-name');
    names.push(alpnName(buf, at, n));
  }
  return names;
}

/** key_share, ClientHello form (RFC 8446 §4.2.8): KeyShareEntry client_shares<0..2^16-1>. */
function readKeyShareGroups(r: ByteReader): number[] {
  r.wholeVec16(KEYSHARE_LENGTH);
  const groups: number[] = [];
  while (!r.atEnd) {
    if (groups.length === MAX_KEY_SHARES) fail('tls.keyshare.too-many');
    groups.push(r.u16(KEYSHARE_LENGTH));
    // opaque key_exchange<1..2^16-1>
    const n = r.u16(KEYSHARE_LENGTH);
    r.skip(n, KEYSHARE_LENGTH);
    if (n === 0) fail(KEYSHARE_LENGTH);
  }
  return groups;
}

/**
 * pre_shared_key, ClientHello form (RFC 8446 §4.2.11):
 *   struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;
 *   opaque PskBinderEntry<32..255>;
 *   struct { PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
 */
function readPskIdentities(r: ByteReader, buf: Buffer): Buffer[] {
  const outer = r.enter16(PSK_LENGTH);
  if (r.atEnd) fail(PSK_LENGTH);
  const identities: Buffer[] = [];
  while (!r.atEnd) {
    if (identities.length === MAX_PSK_IDENTITIES) fail('tls.psk.too-many');
    const n = r.u16(PSK_LENGTH);
    const at = r.take(n, PSK_LENGTH);
    if (n === 0) fail(PSK_LENGTH);
    r.skip(4, PSK_LENGTH); // obfuscated_ticket_age
    identities.push(copyOf(buf, at, n));
  }
  r.leave(outer);
  if (r.wholeVec16(PSK_LENGTH) === 0) fail(PSK_LENGTH);
  let binderCount = 0;
  while (!r.atEnd) {
    // More binders than identities fails below anyway; stop counting as soon as it is certain.
    if (binderCount > identities.length) fail('tls.psk.binder-count');
    const n = r.u8(PSK_LENGTH);
    r.skip(n, PSK_LENGTH);
    if (n < 32) fail(PSK_LENGTH);
    binderCount++;
  }
  // "the server MUST validate that … the number of binders equals the number of identities" (§4.2.11).
  if (binderCount !== identities.length) fail('tls.psk.binder-count');
  return identities;
}

/**
 * The duplicate-extension check (RFC 8446 §4.2) keeps a bit per type below 64, where most registered types
 * are, and scans the types seen for the others (GREASE, ECH, renegotiation_info: a handful per hello).
 * Above this many extensions the scan becomes a Set, so a 64 KiB hello of 16 000 empty extensions stays
 * linear; real hellos carry a few dozen and allocate none.
 */
const SCAN_DUPLICATES_UP_TO = 32;

function scanHas(list: readonly number[], value: number): boolean {
  // A plain loop: Array#includes is a builtin call per extension, about 15 ns each in this walk.
  for (let i = 0; i < list.length; i++) if (list[i] === value) return true;
  return false;
}

/**
 * The fields of one hello. A class, so that every hello gets the same hidden class for the fixed fields
 * and `ja4` is one getter on the prototype: defining an accessor on each object (a closure per hello, as
 * this used to) costs a runtime call and leaves the object in dictionary mode, about 1 µs per hello.
 * Own properties are the decoded fields, in the order the walk finds them; `toJSON` adds `ja4` last.
 */
class ClientHelloFields implements TlsFields {
  // `declare`: no class-field definitions, so the constructor's assignments alone make the shape.
  declare readonly legacyVersion: number;
  declare readonly sessionId: Buffer;
  declare readonly cipherSuites: readonly number[];
  declare readonly compressionMethods: readonly number[];
  declare readonly extensionTypes: readonly number[];
  declare earlyData: boolean;
  declare ech: boolean;
  declare readonly records: number;
  declare readonly helloLength: number;
  declare sni?: string;
  declare alpn?: readonly string[];
  declare supportedVersions?: readonly number[];
  declare supportedGroups?: readonly number[];
  declare signatureAlgorithms?: readonly number[];
  declare keyShareGroups?: readonly number[];
  declare sessionTicket?: Buffer;
  declare pskIdentities?: readonly Buffer[];
  declare pskModes?: readonly number[];
  #ja4: string | undefined;

  constructor(
    legacyVersion: number,
    sessionId: Buffer,
    cipherSuites: readonly number[],
    compressionMethods: readonly number[],
    extensionTypes: readonly number[],
    records: number,
    helloLength: number,
  ) {
    this.legacyVersion = legacyVersion;
    this.sessionId = sessionId;
    this.cipherSuites = cipherSuites;
    this.compressionMethods = compressionMethods;
    this.extensionTypes = extensionTypes;
    this.earlyData = false;
    this.ech = false;
    this.records = records;
    this.helloLength = helloLength;
  }

  /**
   * JA4 costs about as much as the rest of the walk (two SHA-256 and sorts): computed on first read only,
   * so routing a connection that never logs or matches on it does not pay for it.
   */
  get ja4(): string {
    return (this.#ja4 ??= computeJa4(this));
  }

  toJSON(): object {
    return { ...this, ja4: this.ja4 };
  }
}

/** Walks the ClientHello body in buf[start, end) in one pass of one reader. Throws ParseStop. */
function walkBody(buf: Buffer, start: number, end: number, records: number): ClientHelloFields {
  const r = new ByteReader(buf, start, end, end);
  const legacyVersion = r.u16(HELLO_LENGTH);
  // Any 0x03XX is a TLS/SSL3 hello; higher minors are future versions a server negotiates down
  // (RFC 5246 Appendix E.1).
  if (legacyVersion >> 8 !== 3) fail('tls.hello.bad-version');
  r.skip(RANDOM_BYTES, HELLO_LENGTH);
  // A 32-byte session ID on a TLS 1.3 hello is the middlebox-compatibility fake (RFC 8446 §D.4): it means
  // nothing for resumption, but it is still bounded by <0..32>.
  const sidLength = r.u8(SESSION_ID);
  const sidAt = r.take(sidLength, SESSION_ID);
  if (sidLength > MAX_SESSION_ID_BYTES) fail(SESSION_ID);
  const csLength = r.u16(CIPHERS);
  const cipherSuites = u16List(buf, r.take(csLength, CIPHERS), csLength, CIPHERS, MAX_CIPHER_SUITES, 'tls.hello.too-many-ciphers');
  const cmLength = r.u8(COMPRESSION);
  const cmAt = r.take(cmLength, COMPRESSION);
  if (cmLength === 0) fail(COMPRESSION);
  const types: number[] = [];
  const f = new ClientHelloFields(
    legacyVersion,
    copyOf(buf, sidAt, sidLength),
    cipherSuites,
    u8List(buf, cmAt, cmLength),
    types,
    records,
    end - start,
  );

  // "extensions" may be absent entirely (RFC 5246 §7.4.1.2: the client knows whether it sent them by
  // checking for bytes after compression_methods).
  if (r.atEnd) return f;
  // The extensions block must end the message: the limit (the body's end) is also the block's.
  const blockLength = r.u16(EXT_LENGTH);
  if (blockLength > r.remaining) fail(EXT_LENGTH);
  if (blockLength < r.remaining) fail('tls.hello.trailing-data');
  let below32 = 0;
  let below64 = 0;
  let seen: Set<number> | undefined;
  let pskSeen = false;
  while (!r.atEnd) {
    if (types.length === MAX_EXTENSIONS) fail('tls.ext.too-many');
    const type = r.u16(EXT_LENGTH);
    // Extension = ExtensionType(2) | extension_data<0..2^16-1>: until `leave`, reads end with the data.
    const outer = r.enter16(EXT_LENGTH);
    // "There MUST NOT be more than one extension of the same type in a given extension block" (§4.2).
    let duplicate: boolean;
    if (type < 32) {
      duplicate = ((below32 >>> type) & 1) !== 0;
      below32 |= 1 << type;
    } else if (type < 64) {
      duplicate = ((below64 >>> (type - 32)) & 1) !== 0;
      below64 |= 1 << (type - 32);
    } else {
      duplicate = seen === undefined ? scanHas(types, type) : seen.has(type);
    }
    if (duplicate) fail('tls.ext.duplicate');
    // pre_shared_key "MUST be the last extension in the ClientHello" (§4.2.11): binders cover the rest.
    if (pskSeen) fail('tls.psk.not-last');
    types.push(type);
    if (seen !== undefined) seen.add(type);
    else if (types.length === SCAN_DUPLICATES_UP_TO) seen = new Set(types);
    switch (type) {
      case ExtensionType.serverName: {
        const sni = readSni(r, buf);
        if (sni !== undefined) f.sni = sni;
        break;
      }
      case ExtensionType.alpn:
        f.alpn = readAlpn(r, buf);
        break;
      case ExtensionType.supportedVersions: {
        // ProtocolVersion versions<2..254> (§4.2.1)
        const n = r.wholeVec8(VERSIONS_LENGTH);
        f.supportedVersions = u16List(buf, r.take(n, VERSIONS_LENGTH), n, VERSIONS_LENGTH); // <2..254>: 127 at most
        break;
      }
      case ExtensionType.supportedGroups: {
        const n = r.wholeVec16(GROUPS_LENGTH);
        f.supportedGroups = u16List(buf, r.take(n, GROUPS_LENGTH), n, GROUPS_LENGTH, MAX_LIST_ENTRIES, 'tls.groups.too-many');
        break;
      }
      case ExtensionType.signatureAlgorithms: {
        const n = r.wholeVec16(SIGALGS_LENGTH);
        f.signatureAlgorithms = u16List(buf, r.take(n, SIGALGS_LENGTH), n, SIGALGS_LENGTH, MAX_LIST_ENTRIES, 'tls.sigalgs.too-many');
        break;
      }
      case ExtensionType.keyShare:
        f.keyShareGroups = readKeyShareGroups(r);
        break;
      case ExtensionType.pskKeyExchangeModes: {
        // PskKeyExchangeMode ke_modes<1..255> (§4.2.9)
        const n = r.wholeVec8(PSKMODES_LENGTH);
        if (n === 0) fail(PSKMODES_LENGTH);
        f.pskModes = u8List(buf, r.take(n, PSKMODES_LENGTH), n);
        break;
      }
      case ExtensionType.preSharedKey:
        f.pskIdentities = readPskIdentities(r, buf);
        pskSeen = true;
        break;
      case ExtensionType.earlyData:
        // ClientHello form is empty (§4.2.10).
        r.expectEnd('tls.earlydata.bad-length');
        f.earlyData = true;
        break;
      case ExtensionType.sessionTicket: {
        // RFC 5077 §3.2: empty = "I support tickets", otherwise the ticket to resume with.
        const n = r.remaining;
        f.sessionTicket = copyOf(buf, r.take(n, EXT_LENGTH), n);
        break;
      }
      case ExtensionType.encryptedClientHello:
        f.ech = true;
        break;
      default:
        break;
    }
    r.leave(outer);
  }
  return f;
}

/** Walks the ClientHello body in buf[start, end) (in place: no view is made). Never throws. */
export function parseClientHelloBodyAt(buf: Buffer, start: number, end: number, records: number): TlsFields | Reject {
  try {
    return walkBody(buf, start, end, records);
  } catch (e) {
    // A need-more cannot happen on a complete body; treat it as a length that lies. Anything that is not
    // a ParseStop is a bug and propagates.
    if (e instanceof ParseStop) return reject(e.reason ?? HELLO_LENGTH, 'tls');
    throw e;
  }
}

