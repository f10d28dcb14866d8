// The server's first flight, read for affinity learning (which server holds which session): the
// session ID it assigned or echoed, TLS 1.2 session tickets sent in the clear, the PSK it accepted.
//
// ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3):
//   ProtocolVersion legacy_version;                2
//   Random random;                                 32 (SHA-256("HelloRetryRequest") marks an HRR)
//   opaque legacy_session_id_echo<0..32>;          1 + n
//   CipherSuite cipher_suite;                      2
//   uint8 legacy_compression_method;               1
//   Extension extensions<6..2^16-1>;               may be absent up to TLS 1.2
//
// NewSessionTicket, TLS 1.2 (RFC 5077 §3.3):
//   uint32 ticket_lifetime_hint; opaque ticket<0..2^16-1>;
//
// When the flight is complete:
//   - TLS 1.3 (selected version 0x0304): right after the ServerHello; everything later is encrypted.
//     A HelloRetryRequest is noted, its compat CCS skipped, and the real ServerHello awaited.
//   - TLS ≤ 1.2: at the server's ChangeCipherSpec, after which everything is encrypted. Tickets come
//     before it (RFC 5077 §3.3), also when the client's flight lies between (full handshake).
//   - An alert before that: reject (a failed handshake teaches nothing); any other record type too.
// The parser is fed server→client chunks as they arrive and keeps its own state; it never throws.
//
// A streaming state machine, because an affinity pool runs one per spliced TLS connection for as long
// as the server's flight is incomplete — in a TLS 1.2 full handshake until the client's second flight,
// which a stalled client never sends. Record headers (5 bytes) and handshake message headers (4 bytes)
// are read in place from each chunk, byte by byte when they straddle chunks, into numbers; message
// bodies are length-skipped (Certificate, CertificateRequest, ServerKeyExchange, …) except the two it
// reads: the ServerHello (copied, at most MAX_SERVER_HELLO_BYTES) and, of each TLS 1.2 NewSessionTicket,
// the ticket length and its first NEW_SESSION_TICKET_BYTES_KEPT bytes. Nothing references a pushed chunk
// after push returns (the caller reuses its read buffers).
//
// Memory per parser: a few dozen numbers; while the ServerHello arrives, its body (≤ 8 KiB); after it,
// the session ID (≤ 32 bytes), the extension types (≤ MAX_SERVER_HELLO_EXTENSIONS numbers) and at most
// MAX_NEW_SESSION_TICKETS_KEPT prefixes of 16 bytes — under 1 KiB. (The reassembling reader it replaces
// kept two copies of the flight, up to 2 × 256 KiB.)

import { ByteReader, ParseStop, runParser } from './byte-reader.js';
import {
  ContentType,
  ExtensionType,
  HANDSHAKE_HEADER_BYTES,
  HandshakeType,
  HELLO_RETRY_REQUEST_RANDOM,
  MAX_SESSION_ID_BYTES,
  RANDOM_BYTES,
  RECORD_HEADER_BYTES,
  TlsVersion,
} from './tls-constants.js';
import { checkHandshakeRecord, type RecordHeader } from './tls-record.js';

export interface ServerFlight {
  /** Selected: the supported_versions extension if present, else legacy_version. */
  readonly version: number;
  /** As echoed/assigned by the server. */
  readonly sessionId: Buffer;
  readonly cipherSuite: number;
  /** An HRR was seen (special random, RFC 8446 §4.1.3). */
  readonly helloRetryRequest: boolean;
  /** ServerHello pre_shared_key (RFC 8446 §4.2.11). */
  readonly pskSelectedIdentity?: number;
  /**
   * The first NEW_SESSION_TICKET_BYTES_KEPT bytes (fewer when the ticket is shorter) of each TLS 1.2
   * NewSessionTicket's ticket (RFC 5077 §3.3), for the first MAX_NEW_SESSION_TICKETS_KEPT of them. The
   * rest of a ticket is opaque (RFC 5077 §4) and never kept.
   */
  readonly newSessionTicketPrefixes: readonly Buffer[];
  /** How many well-formed NewSessionTickets the flight carried, kept or not. */
  readonly newSessionTicketCount: number;
  /** Of the (final) ServerHello, in wire order. */
  readonly extensionTypes: readonly number[];
}

export type ServerFlightState =
  | { kind: 'need-more' }
  | { kind: 'done'; flight: ServerFlight }
  | { kind: 'reject'; reason: string };

export interface ServerFlightParser {
  push(chunk: Buffer): ServerFlightState;
}

/** Bytes of server flight read without a verdict before giving up (`tls.server.too-large`). */
export const DEFAULT_MAX_SERVER_FLIGHT_BYTES = 256 * 1024;

/**
 * Largest ServerHello body buffered (`tls.server.too-large` above). A real one is under 200 bytes in
 * TLS 1.2 and under 1.5 KiB in TLS 1.3 with a post-quantum hybrid key share (X25519MLKEM768: 1120
 * bytes); the extensions a server may send are answers to the client's (RFC 8446 §4.2, RFC 5246
 * §7.4.1.4), so 8 KiB leaves room for signed certificate timestamps and larger key shares while
 * keeping what one connection can make us hold small.
 */
export const MAX_SERVER_HELLO_BYTES = 8 * 1024;

/**
 * Ticket bytes kept per NewSessionTicket: the 16-byte key_name that starts an RFC 5077 §4-format ticket,
 * which is all affinity reads of it (routing/affinity.ts TICKET_KEY_NAME_BYTES).
 */
export const NEW_SESSION_TICKET_BYTES_KEPT = 16;

/**
 * NewSessionTickets whose prefixes are kept. A TLS 1.2 server sends one per handshake (RFC 5077 §3.3);
 * a hostile backend can send thousands, which are read (and checked) but not kept.
 */
export const MAX_NEW_SESSION_TICKETS_KEPT = 2;

/**
 * Most ServerHello extensions read (`tls.server.too-many-extensions` above). A server may only answer
 * extensions the client offered, each once (RFC 8446 §4.2, RFC 5246 §7.4.1.4); real ServerHellos carry
 * fewer than 15. Without a cap a hostile backend packs 16 382 empty ones in 64 KiB.
 */
export const MAX_SERVER_HELLO_EXTENSIONS = 64;

/** ticket_lifetime_hint (4) + the ticket's length (2) (RFC 5077 §3.3). */
const TICKET_FIXED_BYTES = 4 + 2;

interface ServerHello {
  readonly version: number;
  readonly sessionId: Buffer;
  readonly cipherSuite: number;
  readonly retry: boolean;
  readonly pskSelectedIdentity?: number;
  readonly extensionTypes: readonly number[];
}

function fail(reason: string): never {
  throw new ParseStop(reason);
}

function walkServerHello(body: Buffer): ServerHello {
  const r = new ByteReader(body);
  const legacyVersion = r.u16('tls.server.bad-length');
  if (legacyVersion >> 8 !== 3) fail('tls.server.bad-version');
  const retry = r.bytes(RANDOM_BYTES, 'tls.server.bad-length').equals(HELLO_RETRY_REQUEST_RANDOM);
  const sid = r.vec8('tls.server.bad-length');
  if (sid.remaining > MAX_SESSION_ID_BYTES) fail('tls.server.bad-session-id');
  // A copy: the body is dropped once walked.
  const sessionId = Buffer.from(sid.rest('tls.server.bad-length'));
  const cipherSuite = r.u16('tls.server.bad-length');
  r.u8('tls.server.bad-length');
  let version = legacyVersion;
  let psk: number | undefined;
  const extensionTypes: number[] = [];
  const seen = new Set<number>();
  if (!r.atEnd) {
    const exts = r.vec16('tls.server.bad-length');
    r.expectEnd('tls.server.bad-length');
    while (!exts.atEnd) {
      const type = exts.u16('tls.server.bad-length');
      const data = exts.vec16('tls.server.bad-length');
      // "There MUST NOT be more than one extension of the same type" (RFC 8446 §4.2, RFC 5246 §7.4.1.4).
      if (seen.has(type)) fail('tls.server.ext-duplicate');
      if (seen.size === MAX_SERVER_HELLO_EXTENSIONS) fail('tls.server.too-many-extensions');
      seen.add(type);
      extensionTypes.push(type);
      if (type === ExtensionType.supportedVersions) {
        // ServerHello form: ProtocolVersion selected_version (RFC 8446 §4.2.1).
        version = data.u16('tls.server.bad-length');
        data.expectEnd('tls.server.bad-length');
      } else if (type === ExtensionType.preSharedKey) {
        // ServerHello form: uint16 selected_identity (RFC 8446 §4.2.11).
        psk = data.u16('tls.server.bad-length');
        data.expectEnd('tls.server.bad-length');
      }
    }
  }
  const hello = { version, sessionId, cipherSuite, retry, extensionTypes };
  return psk === undefined ? hello : { ...hello, pskSelectedIdentity: psk };
}

type Phase = 'hello' | 'after-hrr' | 'tls12';

/** What the reader does with the body of the current handshake message. */
type BodyUse = 'server-hello' | 'ticket' | 'skip';

class ServerFlightReader implements ServerFlightParser {
  private readonly maxBytes: number;
  /** Stream bytes read so far (at most maxBytes). */
  private seen = 0;
  private state: ServerFlightState = { kind: 'need-more' };

  // ── record layer ──
  /** Bytes of the current record header read so far (0 to 5), accumulated into the three fields. */
  private recordHeaderHave = 0;
  private recordType = 0;
  private recordVersion = 0;
  private recordLength = 0;
  /** Fragment bytes of the current record still to come. */
  private recordLeft = 0;
  /** The current record is a compat CCS to skip rather than handshake bytes. */
  private skipping = false;

  // ── handshake layer (messages span records) ──
  /** Bytes of the current handshake message header read so far (0 to 4). */
  private messageHeaderHave = 0;
  private messageType = 0;
  private messageLength = 0;
  /** Body bytes of the current message still to come (once its header is complete). */
  private messageLeft = 0;
  private use: BodyUse = 'skip';
  /** The ServerHello body being collected (exactly messageLength bytes), dropped once walked. */
  private helloBody: Buffer | undefined;
  /** NewSessionTicket: its length field, accumulated from body bytes 4–5. */
  private ticketLength = 0;
  /** NewSessionTicket: where its first bytes go when it will be kept. */
  private ticketPrefix: Buffer | undefined;

  // ── what the flight taught ──
  private phase: Phase = 'hello';
  private hello: ServerHello | undefined;
  private retried = false;
  private readonly tickets: Buffer[] = [];
  private ticketCount = 0;

  constructor(opts: { maxBytes?: number }) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_SERVER_FLIGHT_BYTES;
  }

  push(chunk: Buffer): ServerFlightState {
    if (this.state.kind !== 'need-more') return this.state;
    const room = Math.max(0, this.maxBytes - this.seen);
    const over = chunk.length > room;
    const end = over ? room : chunk.length;
    this.seen += end;
    const res = runParser(() => this.advance(chunk, end));
    if (!res.ok) this.state = { kind: 'reject', reason: res.reason ?? 'tls.server.bad-length' };
    else if (res.value !== undefined) this.state = res.value;
    else if (over) this.state = { kind: 'reject', reason: 'tls.server.too-large' };
    if (this.state.kind !== 'need-more') this.helloBody = undefined;
    return this.state;
  }

  private done(): ServerFlightState {
    const h = this.hello!;
    const flight: ServerFlight = {
      version: h.version,
      sessionId: h.sessionId,
      cipherSuite: h.cipherSuite,
      helloRetryRequest: this.retried,
      newSessionTicketPrefixes: this.tickets,
      newSessionTicketCount: this.ticketCount,
      extensionTypes: h.extensionTypes,
      ...(h.pskSelectedIdentity === undefined ? {} : { pskSelectedIdentity: h.pskSelectedIdentity }),
    };
    return { kind: 'done', flight };
  }

  /** Reads chunk[0, end) through the record layer. */
  private advance(chunk: Buffer, end: number): ServerFlightState | undefined {
    let at = 0;
    while (at < end) {
      if (this.recordLeft === 0) {
        // Record header bytes, as many as this chunk holds.
        while (this.recordHeaderHave < RECORD_HEADER_BYTES && at < end) this.recordHeaderByte(chunk[at++]!);
        if (this.recordHeaderHave < RECORD_HEADER_BYTES) return undefined;
        this.recordHeaderHave = 0;
        const v = this.startRecord({ type: this.recordType, version: this.recordVersion, length: this.recordLength });
        if (v !== undefined) return v;
        continue;
      }
      const take = Math.min(end - at, this.recordLeft);
      const from = at;
      at += take;
      this.recordLeft -= take;
      if (this.skipping) {
        if (this.recordLeft === 0) this.skipping = false;
        continue;
      }
      const v = this.handshakeBytes(chunk, from, at);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  private recordHeaderByte(b: number): void {
    switch (this.recordHeaderHave++) {
      case 0:
        this.recordType = b;
        this.recordVersion = 0;
        this.recordLength = 0;
        return;
      case 1:
      case 2:
        this.recordVersion = (this.recordVersion << 8) | b;
        return;
      default:
        this.recordLength = (this.recordLength << 8) | b;
    }
  }

  private startRecord(h: RecordHeader): ServerFlightState | undefined {
    if (h.type === ContentType.changeCipherSpec && this.phase === 'after-hrr') {
      // The middlebox-compatibility CCS after an HRR (RFC 8446 §D.4): skip it.
      this.skipping = true;
    } else if (h.type !== ContentType.handshake) {
      // Only the server's ChangeCipherSpec completes a TLS ≤ 1.2 flight: the server has then committed to
      // the session (everything after it is encrypted). An alert after a ServerHello is a handshake that
      // failed — the session it announced was never established, so it teaches nothing.
      if (h.type === ContentType.changeCipherSpec && this.phase === 'tls12') return this.done();
      return { kind: 'reject', reason: h.type === ContentType.alert ? 'tls.server.alert' : 'tls.server.bad-type' };
    } else {
      const why = checkHandshakeRecord(h);
      if (why !== undefined) return { kind: 'reject', reason: why };
      this.skipping = false;
    }
    this.recordLeft = h.length;
    if (this.recordLeft === 0) this.skipping = false;
    return undefined;
  }

  /** Handshake bytes chunk[from, to) of the current record: message headers and bodies. */
  private handshakeBytes(chunk: Buffer, from: number, to: number): ServerFlightState | undefined {
    let at = from;
    while (at < to) {
      if (this.messageHeaderHave < HANDSHAKE_HEADER_BYTES) {
        while (this.messageHeaderHave < HANDSHAKE_HEADER_BYTES && at < to) this.messageHeaderByte(chunk[at++]!);
        if (this.messageHeaderHave < HANDSHAKE_HEADER_BYTES) return undefined;
        const v = this.startMessage();
        if (v !== undefined) return v;
        if (this.messageLeft === 0) {
          const w = this.endMessage();
          if (w !== undefined) return w;
        }
        continue;
      }
      const take = Math.min(to - at, this.messageLeft);
      this.bodyBytes(chunk, at, at + take, this.messageLength - this.messageLeft);
      at += take;
      this.messageLeft -= take;
      if (this.messageLeft === 0) {
        const v = this.endMessage();
        if (v !== undefined) return v;
      }
    }
    return undefined;
  }

  private messageHeaderByte(b: number): void {
    if (this.messageHeaderHave++ === 0) {
      this.messageType = b;
      this.messageLength = 0;
    } else {
      this.messageLength = (this.messageLength << 8) | b;
    }
  }

  /** The message header is complete: decide what its body is for. */
  private startMessage(): ServerFlightState | undefined {
    const type = this.messageType;
    const length = this.messageLength;
    if (length > this.maxBytes) return { kind: 'reject', reason: 'tls.server.too-large' };
    this.messageLeft = length;
    if (this.phase === 'tls12') {
      // Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone… carry nothing we learn.
      this.use = type === HandshakeType.newSessionTicket ? 'ticket' : 'skip';
      this.ticketLength = 0;
      this.ticketPrefix = undefined;
      return undefined;
    }
    // A server's flight starts with ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.3).
    if (type !== HandshakeType.serverHello) return { kind: 'reject', reason: 'tls.server.unexpected-message' };
    if (length > MAX_SERVER_HELLO_BYTES) return { kind: 'reject', reason: 'tls.server.too-large' };
    this.use = 'server-hello';
    this.helloBody = Buffer.allocUnsafe(length);
    return undefined;
  }

  /** Body bytes chunk[from, to), which start at `offset` in the message body. */
  private bodyBytes(chunk: Buffer, from: number, to: number, offset: number): void {
    if (this.use === 'server-hello') {
      chunk.copy(this.helloBody!, offset, from, to);
      return;
    }
    if (this.use !== 'ticket') return;
    // Only the ticket's length (body bytes 4–5) and its first bytes are read; the rest is skipped.
    const keep = TICKET_FIXED_BYTES + NEW_SESSION_TICKET_BYTES_KEPT;
    for (let i = from, o = offset; i < to && o < keep; i++, o++) {
      const b = chunk[i]!;
      if (o === 4 || o === 5) {
        this.ticketLength = (this.ticketLength << 8) | b;
        if (o === 5 && this.tickets.length < MAX_NEW_SESSION_TICKETS_KEPT) {
          // Sized by what the message can hold; a length that lies is caught at the end of the message.
          const room = Math.max(0, this.messageLength - TICKET_FIXED_BYTES);
          this.ticketPrefix = Buffer.alloc(Math.min(this.ticketLength, room, NEW_SESSION_TICKET_BYTES_KEPT));
        }
      } else if (o >= TICKET_FIXED_BYTES && this.ticketPrefix !== undefined && o - TICKET_FIXED_BYTES < this.ticketPrefix.length) {
        this.ticketPrefix[o - TICKET_FIXED_BYTES] = b;
      }
    }
  }

  /** The current message's body is complete. */
  private endMessage(): ServerFlightState | undefined {
    this.messageHeaderHave = 0;
    if (this.use === 'skip') return undefined;
    if (this.use === 'ticket') {
      // uint32 ticket_lifetime_hint; opaque ticket<0..2^16-1>; and nothing after (RFC 5077 §3.3).
      const length = this.messageLength;
      if (length < TICKET_FIXED_BYTES || TICKET_FIXED_BYTES + this.ticketLength !== length) fail('tls.server.bad-ticket');
      this.ticketCount++;
      if (this.ticketPrefix !== undefined) this.tickets.push(this.ticketPrefix);
      this.ticketPrefix = undefined;
      return undefined;
    }
    const hello = walkServerHello(this.helloBody!);
    this.helloBody = undefined;
    this.hello = hello;
    if (hello.retry) {
      this.retried = true;
      this.phase = 'after-hrr';
      return undefined;
    }
    if (hello.version === TlsVersion.tls13) return this.done();
    this.phase = 'tls12';
    return undefined;
  }
}

export function createServerFlightParser(opts: { maxBytes?: number } = {}): ServerFlightParser {
  return new ServerFlightReader(opts);
}
