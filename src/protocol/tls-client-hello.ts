// The TLS probe: recognises a ClientHello, reassembles it across records and TCP reads, and walks it once.
//
// Stream (RFC 8446 §5.1, §4):
//   record*  = 0x16 | version(2) | length(2) | fragment      (handshake records only, see tls-record.ts)
//   fragments concatenated = msg_type(1)=1 | length(3) | ClientHello body
//
// The body, once complete, is walked by tls-client-hello-body.ts.
//
// Verdicts: the bytes are TLS's (the probe "claims" them, and every later failure carries protocol 'tls',
// which the proxy refuses rather than routing as `other`) once they start like a TLS record header: a
// content type 0x14–0x17 and a record version 0x0300–0x0304 (RFC 8446 §5.1). Before that, a failure means
// "not mine". A claimed stream that is not a ClientHello (an alert or application data first, a record
// over 2^14, an empty record, a ServerHello) is a broken TLS client, not some other protocol.
// `consumed` covers the records up to and including the one that completed the hello: what follows (a
// CCS, 0-RTT data) is the client's next flight, not part of the verdict.

import { parseClientHelloBodyAt } from './tls-client-hello-body.js';
import {
  ContentType,
  HANDSHAKE_HEADER_BYTES,
  HandshakeType,
  MAX_PLAINTEXT_RECORD,
  RECORD_HEADER_BYTES,
} from './tls-constants.js';
import {
  checkHandshakeRecord,
  GrowableBuffer,
  isRecordVersion,
  readRecordHeader,
  unexpectedRecordReason,
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
  /**
   * JA4 fingerprint (ja4.ts). On a parsed hello it is a getter that computes it on first read: read it by
   * name (JSON.stringify includes it, object spread and Object.keys do not).
   */
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

export { MAX_SNI_BYTES } from './tls-client-hello-body.js';

/** Walks a complete ClientHello body (the bytes after the 4-byte handshake header). Never throws. */
export function parseClientHelloBody(body: Buffer, records: number): TlsFields | Reject {
  return parseClientHelloBodyAt(body, 0, body.length, records);
}

/** The content types a TLS record may carry (RFC 8446 §5.1 ContentType): what a record header starts with. */
function isRecordType(type: number): boolean {
  return type >= ContentType.changeCipherSpec && type <= ContentType.applicationData;
}

/**
 * Why the first record header (or its prefix) is not the start of a ClientHello, or undefined. Before the
 * type and version are seen (3 bytes) a failure is "not mine"; after them the stream is claimed as TLS.
 */
function firstHeaderReason(bytes: Buffer): Reject | undefined {
  if (bytes.length >= 1 && !isRecordType(bytes[0]!)) return reject('tls.record.bad-type');
  if (bytes.length >= 2 && bytes[1] !== 3) return reject('tls.record.bad-version');
  if (bytes.length >= 3 && !isRecordVersion((bytes[1]! << 8) | bytes[2]!)) return reject('tls.record.bad-version');
  if (bytes.length < 3) return undefined;
  // Claimed: a record header. A client's first record is a handshake record carrying its hello.
  if (bytes[0] !== ContentType.handshake) return reject(unexpectedRecordReason(bytes[0]!), 'tls');
  if (bytes.length >= RECORD_HEADER_BYTES) {
    const h: RecordHeader = readRecordHeader(bytes, 0);
    if (h.length > MAX_PLAINTEXT_RECORD) return reject('tls.record.too-large', 'tls');
    if (h.length === 0) return reject('tls.record.empty', 'tls');
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
      if (why !== undefined) return this.settle(why);
    }
    const v = this.advance(bytes);
    if (v !== undefined) return this.settle(v);
    if (!opts.final) return NEED_MORE;
    if (this.recognised) return this.settle(reject('tls.hello.truncated', 'tls'));
    // A record header's type and version were seen: a truncated TLS stream, not some other protocol.
    return this.settle(bytes.length >= 3 ? reject('tls.record.truncated', 'tls') : reject('tls.record.truncated'));
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
      // Only a client_hello opens a client's flight (RFC 8446 §4): anything else is a broken TLS stream.
      if (this.hsByte(bytes, 0) !== HandshakeType.clientHello) return reject('tls.hello.bad-type', 'tls');
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
    // Walked in place: in the stream's one record (no view made), or in the gathered fragments.
    const bodyStart = RECORD_HEADER_BYTES + HANDSHAKE_HEADER_BYTES;
    const fields =
      this.gathered === undefined
        ? parseClientHelloBodyAt(bytes, bodyStart, RECORD_HEADER_BYTES + this.helloTotal, this.records)
        : parseClientHelloBody(this.gathered.view(HANDSHAKE_HEADER_BYTES, this.helloTotal), this.records);
    if ('kind' in fields) return fields;
    return { kind: 'match', protocol: 'tls', fields, consumed: this.cursor };
  }
}

export function createTlsProbe(opts: TlsProbeOptions = {}): Probe<TlsMatch> {
  return new TlsClientHelloProbe(opts);
}
