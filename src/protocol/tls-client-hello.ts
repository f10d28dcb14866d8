// The TLS probe: recognises a ClientHello, reassembles it across records and TCP reads, and walks it once.
//
// Stream (RFC 8446 §5.1, §4):
//   record*  = 0x16 | version(2) | length(2) | fragment      (handshake records only, see tls-record.ts)
//   fragments concatenated = msg_type(1)=1 | length(3) | ClientHello body
//
// ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2):
//   ProtocolVersion legacy_version;                 2
//   Random random;                                  32
//   opaque legacy_session_id<0..32>;                1 + n
//   CipherSuite cipher_suites<2..2^16-2>;           2 + 2k
//   opaque legacy_compression_methods<1..2^8-1>;    1 + m
//   Extension extensions<8..2^16-1>;                absent in some pre-TLS-1.2 hellos (RFC 5246 §7.4.1.2)
//     Extension = ExtensionType(2) | opaque extension_data<0..2^16-1>
//
// Verdicts: before the first record header is valid and the first handshake byte is 1, a failure means
// "not mine" (reject without protocol); after it the bytes are TLS and failures carry protocol 'tls'.
// `consumed` covers the records up to and including the one that completed the hello: what follows (a
// CCS, 0-RTT data) is the client's next flight, not part of the verdict.

import { isUtf8 } from 'node:buffer';
import { ByteReader, ParseStop, runParser } from './byte-reader.js';
import { computeJa4 } from './ja4.js';
import {
  ContentType,
  ExtensionType,
  HANDSHAKE_HEADER_BYTES,
  HandshakeType,
  MAX_PLAINTEXT_RECORD,
  MAX_SESSION_ID_BYTES,
  RANDOM_BYTES,
  RECORD_HEADER_BYTES,
} from './tls-constants.js';
import {
  checkHandshakeRecord,
  GrowableBuffer,
  isRecordVersion,
  readRecordHeader,
  type RecordHeader,
} from './tls-record.js';
import { probeSslv2ClientHello } from './tls-sslv2.js';
import { NEED_MORE, reject, type Match, type NeedMore, type Probe, type ProbeOptions, type Reject } from './verdict.js';

export interface TlsFields {
  readonly legacyVersion: number;
  /** legacy_session_id as sent (may be empty). */
  readonly sessionId: Buffer;
  readonly cipherSuites: readonly number[];
  readonly compressionMethods: readonly number[];
  /** In wire order, GREASE included. */
  readonly extensionTypes: readonly number[];
  /** server_name host_name exactly as sent (UTF-8, no case folding). */
  readonly sni?: string;
  /** ALPN protocol names, latin1-decoded (one char per byte). */
  readonly alpn?: readonly string[];
  readonly supportedVersions?: readonly number[];
  readonly supportedGroups?: readonly number[];
  readonly signatureAlgorithms?: readonly number[];
  readonly keyShareGroups?: readonly number[];
  /** Extension 35 contents; an empty Buffer means "supports tickets, has none". */
  readonly sessionTicket?: Buffer;
  /** Extension 41 identities (raw bytes). */
  readonly pskIdentities?: readonly Buffer[];
  readonly pskModes?: readonly number[];
  /** Extension 42 present. */
  readonly earlyData: boolean;
  /** Extension 0xfe0d present. */
  readonly ech: boolean;
  readonly ja4: string;
  /** TLS records the hello spanned. */
  readonly records: number;
  /** Handshake body length (the u24). */
  readonly helloLength: number;
  /** An SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2), see tls-sslv2.ts. */
  readonly sslv2?: true;
}

export type TlsMatch = Match<'tls', TlsFields>;

export interface TlsProbeOptions {
  /** Largest handshake body length (the u24) accepted; default 65536. */
  readonly maxHelloBytes?: number;
}

export const DEFAULT_MAX_HELLO_BYTES = 65536;

/** RFC 6066 §3 allows 2^16-1; DNS names are at most 255 octets on the wire (RFC 1035 §2.3.4). */
export const MAX_SNI_BYTES = 255;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function fail(reason: string): never {
  throw new ParseStop(reason);
}

/** A `<2..>` list of u16 values (groups, signature schemes, versions): non-empty, even length. */
function readU16List(list: ByteReader, reason: string): number[] {
  if (list.remaining === 0 || list.remaining % 2 !== 0) fail(reason);
  const out: number[] = [];
  while (!list.atEnd) out.push(list.u16(reason));
  return out;
}

/**
 * server_name (RFC 6066 §3):
 *   struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
 *   opaque HostName<1..2^16-1>;
 *   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 * "The ServerNameList MUST NOT contain more than one name of the same name_type." Other name types have
 * no defined layout; like OpenSSL and HAProxy we assume the same u16-prefixed opaque and skip them.
 */
function parseSni(data: ByteReader): string | undefined {
  const list = data.vec16('tls.sni.bad-length');
  data.expectEnd('tls.sni.bad-length');
  if (list.atEnd) fail('tls.sni.empty-list');
  let name: string | undefined;
  while (!list.atEnd) {
    const type = list.u8('tls.sni.bad-length');
    const raw = list.vec16('tls.sni.bad-length').rest('tls.sni.bad-length');
    if (type !== 0) continue;
    if (name !== undefined) fail('tls.sni.duplicate');
    if (raw.length === 0) fail('tls.sni.empty');
    // A NUL would let "good.example\0evil" match differently in C and JS consumers.
    if (raw.includes(0)) fail('tls.sni.nul');
    if (raw.length > MAX_SNI_BYTES) fail('tls.sni.too-long');
    // HostName is meant to be ASCII (A-labels); raw UTF-8 is tolerated and kept as text, anything that
    // is not UTF-8 cannot be shown or matched faithfully.
    if (!isUtf8(raw)) fail('tls.sni.bad-utf8');
    name = raw.toString('utf8');
  }
  return name;
}

/** ALPN (RFC 7301 §3.1): ProtocolName protocol_name_list<2..2^16-1>; opaque ProtocolName<1..2^8-1>. */
function parseAlpn(data: ByteReader): string[] {
  const list = data.vec16('tls.alpn.bad-length');
  data.expectEnd('tls.alpn.bad-length');
  if (list.atEnd) fail('tls.alpn.empty-list');
  const names: string[] = [];
  while (!list.atEnd) {
    const name = list.vec8('tls.alpn.bad-length').rest('tls.alpn.bad-length');
    if (name.length === 0) fail('tls.alpn.empty-name');
    names.push(name.toString('latin1'));
  }
  return names;
}

/** key_share, ClientHello form (RFC 8446 §4.2.8): KeyShareEntry client_shares<0..2^16-1>. */
function parseKeyShare(data: ByteReader): number[] {
  const shares = data.vec16('tls.keyshare.bad-length');
  data.expectEnd('tls.keyshare.bad-length');
  const groups: number[] = [];
  while (!shares.atEnd) {
    groups.push(shares.u16('tls.keyshare.bad-length'));
    // opaque key_exchange<1..2^16-1>
    if (shares.vec16('tls.keyshare.bad-length').remaining === 0) fail('tls.keyshare.bad-length');
  }
  return groups;
}

/**
 * pre_shared_key, ClientHello form (RFC 8446 §4.2.11):
 *   struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;
 *   opaque PskBinderEntry<32..255>;
 *   struct { PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
 */
function parsePsk(data: ByteReader): Buffer[] {
  const ids = data.vec16('tls.psk.bad-length');
  const binders = data.vec16('tls.psk.bad-length');
  data.expectEnd('tls.psk.bad-length');
  if (ids.atEnd || binders.atEnd) fail('tls.psk.bad-length');
  const identities: Buffer[] = [];
  while (!ids.atEnd) {
    const id = ids.vec16('tls.psk.bad-length').rest('tls.psk.bad-length');
    if (id.length === 0) fail('tls.psk.bad-length');
    ids.u32('tls.psk.bad-length');
    identities.push(Buffer.from(id));
  }
  let binderCount = 0;
  while (!binders.atEnd) {
    if (binders.vec8('tls.psk.bad-length').remaining < 32) fail('tls.psk.bad-length');
    binderCount++;
  }
  // "the server MUST validate that … the number of binders equals the number of identities" (§4.2.11).
  if (binderCount !== identities.length) fail('tls.psk.binder-count');
  return identities;
}

function walkBody(body: Buffer, records: number): TlsFields {
  const r = new ByteReader(body);
  const legacyVersion = r.u16('tls.hello.bad-length');
  // Any 0x03XX is a TLS/SSL3 hello; higher minors are future versions a server negotiates down
  // (RFC 5246 Appendix E.1).
  if (legacyVersion >> 8 !== 3) fail('tls.hello.bad-version');
  r.skip(RANDOM_BYTES, 'tls.hello.bad-length');
  const sid = r.vec8('tls.hello.bad-session-id');
  // A 32-byte session ID on a TLS 1.3 hello is the middlebox-compatibility fake (RFC 8446 §D.4): it means
  // nothing for resumption, but it is still bounded by <0..32>.
  if (sid.remaining > MAX_SESSION_ID_BYTES) fail('tls.hello.bad-session-id');
  const sessionId = Buffer.from(sid.rest('tls.hello.bad-session-id'));
  const cs = r.vec16('tls.hello.bad-ciphers');
  const cipherSuites = readU16List(cs, 'tls.hello.bad-ciphers');
  const cm = r.vec8('tls.hello.bad-compression');
  if (cm.atEnd) fail('tls.hello.bad-compression');
  const compressionMethods: number[] = [];
  while (!cm.atEnd) compressionMethods.push(cm.u8('tls.hello.bad-compression'));

  const f: Omit<Mutable<TlsFields>, 'ja4'> = {
    legacyVersion,
    sessionId,
    cipherSuites,
    compressionMethods,
    extensionTypes: [],
    earlyData: false,
    ech: false,
    records,
    helloLength: body.length,
  };
  const types: number[] = [];
  f.extensionTypes = types;

  // "extensions" may be absent entirely (RFC 5246 §7.4.1.2: the client knows whether it sent them by
  // checking for bytes after compression_methods).
  if (!r.atEnd) {
    const exts = r.vec16('tls.ext.bad-length');
    r.expectEnd('tls.hello.trailing-data');
    let pskSeen = false;
    while (!exts.atEnd) {
      const type = exts.u16('tls.ext.bad-length');
      const data = exts.vec16('tls.ext.bad-length');
      // "There MUST NOT be more than one extension of the same type in a given extension block" (§4.2).
      // (A linear scan: hellos carry a few dozen extensions, and no Set is allocated per hello.)
      if (types.includes(type)) fail('tls.ext.duplicate');
      // pre_shared_key "MUST be the last extension in the ClientHello" (§4.2.11): binders cover the rest.
      if (pskSeen) fail('tls.psk.not-last');
      types.push(type);
      switch (type) {
        case ExtensionType.serverName: {
          const sni = parseSni(data);
          if (sni !== undefined) f.sni = sni;
          break;
        }
        case ExtensionType.alpn:
          f.alpn = parseAlpn(data);
          break;
        case ExtensionType.supportedVersions: {
          // ProtocolVersion versions<2..254> (§4.2.1)
          const v = data.vec8('tls.versions.bad-length');
          data.expectEnd('tls.versions.bad-length');
          f.supportedVersions = readU16List(v, 'tls.versions.bad-length');
          break;
        }
        case ExtensionType.supportedGroups: {
          const g = data.vec16('tls.groups.bad-length');
          data.expectEnd('tls.groups.bad-length');
          f.supportedGroups = readU16List(g, 'tls.groups.bad-length');
          break;
        }
        case ExtensionType.signatureAlgorithms: {
          const s = data.vec16('tls.sigalgs.bad-length');
          data.expectEnd('tls.sigalgs.bad-length');
          f.signatureAlgorithms = readU16List(s, 'tls.sigalgs.bad-length');
          break;
        }
        case ExtensionType.keyShare:
          f.keyShareGroups = parseKeyShare(data);
          break;
        case ExtensionType.pskKeyExchangeModes: {
          // PskKeyExchangeMode ke_modes<1..255> (§4.2.9)
          const m = data.vec8('tls.pskmodes.bad-length');
          data.expectEnd('tls.pskmodes.bad-length');
          if (m.atEnd) fail('tls.pskmodes.bad-length');
          const modes: number[] = [];
          while (!m.atEnd) modes.push(m.u8('tls.pskmodes.bad-length'));
          f.pskModes = modes;
          break;
        }
        case ExtensionType.preSharedKey:
          f.pskIdentities = parsePsk(data);
          pskSeen = true;
          break;
        case ExtensionType.earlyData:
          // ClientHello form is empty (§4.2.10).
          data.expectEnd('tls.earlydata.bad-length');
          f.earlyData = true;
          break;
        case ExtensionType.sessionTicket:
          // RFC 5077 §3.2: empty = "I support tickets", otherwise the ticket to resume with.
          f.sessionTicket = Buffer.from(data.rest('tls.ext.bad-length'));
          break;
        case ExtensionType.encryptedClientHello:
          f.ech = true;
          break;
        default:
          break;
      }
    }
  }
  // JA4 costs about as much as the rest of the walk (two SHA-256 and sorts): computed on first read only,
  // so routing a connection that never logs or matches on it does not pay for it.
  const out = f as Mutable<TlsFields>;
  let ja4: string | undefined;
  Object.defineProperty(out, 'ja4', { enumerable: true, get: () => (ja4 ??= computeJa4(f)) });
  return out;
}

/** Walks a complete ClientHello body (the bytes after the 4-byte handshake header). Never throws. */
export function parseClientHelloBody(body: Buffer, records: number): TlsFields | Reject {
  const res = runParser(() => walkBody(body, records));
  if (res.ok) return res.value;
  // A need-more cannot happen on a complete body; treat it as a length that lies.
  return reject(res.reason ?? 'tls.hello.bad-length', 'tls');
}

/** Why the first record header (or its prefix) is not a TLS handshake record: "not mine" reasons. */
function firstHeaderReason(bytes: Buffer): string | undefined {
  if (bytes.length >= 1 && bytes[0] !== ContentType.handshake) return 'tls.record.bad-type';
  if (bytes.length >= 2 && bytes[1] !== 3) return 'tls.record.bad-version';
  if (bytes.length >= 3 && !isRecordVersion((bytes[1]! << 8) | bytes[2]!)) return 'tls.record.bad-version';
  if (bytes.length >= RECORD_HEADER_BYTES) {
    const h: RecordHeader = readRecordHeader(bytes, 0);
    if (h.length > MAX_PLAINTEXT_RECORD) return 'tls.record.too-large';
    if (h.length === 0) return 'tls.record.empty';
  }
  return undefined;
}

class TlsClientHelloProbe implements Probe<TlsMatch> {
  readonly name = 'tls';
  private readonly maxHelloBytes: number;
  /** Next stream byte not yet looked at. */
  private cursor = 0;
  /** Fragment bytes of the current record still to come (0: the next byte starts a record header). */
  private recordLeft = 0;
  private records = 0;
  /**
   * Handshake bytes collected so far. While the hello lies in the first record they are read in place
   * from the stream (no copy, no allocation: the common case); only a hello that spans records is
   * gathered into `gathered`.
   */
  private hsLength = 0;
  private gathered: GrowableBuffer | undefined;
  /** 4 + the declared body length, once the handshake header is complete. */
  private helloTotal = -1;
  private recognised = false;
  private settled: TlsMatch | Reject | undefined;

  constructor(opts: TlsProbeOptions) {
    this.maxHelloBytes = opts.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
  }

  probe(bytes: Buffer, opts: ProbeOptions): TlsMatch | NeedMore | Reject {
    if (this.settled !== undefined) return this.settled;
    if (this.records === 0) {
      // The SSLv2-compatible hello has no records (RFC 5246 Appendix E.2); its first byte has the high bit.
      if (bytes.length > 0 && (bytes[0]! & 0x80) !== 0) {
        const v = probeSslv2ClientHello(bytes, { final: opts.final, maxHelloBytes: this.maxHelloBytes });
        if (v.kind !== 'need-more') this.settled = v;
        return v;
      }
      const why = firstHeaderReason(bytes);
      if (why !== undefined) return this.settle(reject(why));
    }
    const v = this.advance(bytes);
    if (v !== undefined) return this.settle(v);
    if (!opts.final) return NEED_MORE;
    return this.settle(
      this.recognised ? reject('tls.hello.truncated', 'tls') : reject('tls.record.truncated'),
    );
  }

  private settle(v: TlsMatch | Reject): TlsMatch | Reject {
    this.settled = v;
    return v;
  }

  /** Reads new record headers and fragment bytes; a verdict once one is reached. */
  private advance(bytes: Buffer): TlsMatch | Reject | undefined {
    for (;;) {
      if (this.recordLeft === 0) {
        if (bytes.length - this.cursor < RECORD_HEADER_BYTES) return undefined;
        if (this.records > 0) {
          const why = checkHandshakeRecord(readRecordHeader(bytes, this.cursor));
          if (why !== undefined) return reject(why, 'tls');
        }
        // The first header was checked by firstHeaderReason.
        this.recordLeft = readRecordHeader(bytes, this.cursor).length;
        this.cursor += RECORD_HEADER_BYTES;
        this.records++;
        if (this.records === 2) {
          // The hello continues in a second record: from here on, gather the fragments.
          this.gathered = new GrowableBuffer(Math.max(512, this.hsLength * 2));
          this.gathered.appendFrom(bytes, RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + this.hsLength);
        }
        continue;
      }
      const available = bytes.length - this.cursor;
      if (available <= 0) return undefined;
      const take = Math.min(available, this.recordLeft);
      this.gathered?.appendFrom(bytes, this.cursor, this.cursor + take);
      this.hsLength += take;
      this.cursor += take;
      this.recordLeft -= take;
      const v = this.checkHandshake(bytes);
      if (v !== undefined) return v;
    }
  }

  /** Byte i of the handshake stream. */
  private hsByte(bytes: Buffer, i: number): number {
    return this.gathered === undefined ? bytes[RECORD_HEADER_BYTES + i]! : this.gathered.byteAt(i);
  }

  private checkHandshake(bytes: Buffer): TlsMatch | Reject | undefined {
    if (!this.recognised) {
      // Only a client_hello opens a client's flight; any other type is not a TLS client (RFC 8446 §4).
      if (this.hsByte(bytes, 0) !== HandshakeType.clientHello) return reject('tls.hello.bad-type');
      this.recognised = true;
    }
    if (this.helloTotal < 0) {
      if (this.hsLength < HANDSHAKE_HEADER_BYTES) return undefined;
      const declared = (this.hsByte(bytes, 1) << 16) | (this.hsByte(bytes, 2) << 8) | this.hsByte(bytes, 3);
      if (declared > this.maxHelloBytes) return reject('tls.hello.too-large', 'tls');
      this.helloTotal = HANDSHAKE_HEADER_BYTES + declared;
    }
    if (this.hsLength < this.helloTotal) return undefined;
    // The record that completes the hello must end with it: a client's next handshake message would only
    // come after the server's flight (RFC 8446 §2), so bytes here are not a well-formed first flight.
    if (this.hsLength > this.helloTotal || this.recordLeft > 0) return reject('tls.record.trailing-data', 'tls');
    const body =
      this.gathered === undefined
        ? bytes.subarray(RECORD_HEADER_BYTES + HANDSHAKE_HEADER_BYTES, RECORD_HEADER_BYTES + this.helloTotal)
        : this.gathered.view(HANDSHAKE_HEADER_BYTES, this.helloTotal);
    const fields = parseClientHelloBody(body, this.records);
    if ('kind' in fields) return fields;
    return { kind: 'match', protocol: 'tls', fields, consumed: this.cursor };
  }
}

export function createTlsProbe(opts: TlsProbeOptions = {}): Probe<TlsMatch> {
  return new TlsClientHelloProbe(opts);
}
