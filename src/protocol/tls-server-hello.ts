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
//   - An alert or any other record: done if a ServerHello was seen, else reject.
// The parser is fed server→client chunks as they arrive and keeps its own state; it never throws.

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
import { checkHandshakeRecord, GrowableBuffer, readRecordHeader } from './tls-record.js';

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
  /** TLS 1.2 NewSessionTicket (RFC 5077 §3.3) ticket bytes sent in the clear. */
  readonly newSessionTickets: readonly Buffer[];
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

export const DEFAULT_MAX_SERVER_FLIGHT_BYTES = 256 * 1024;

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
  const sessionId = Buffer.from(sid.rest('tls.server.bad-length'));
  const cipherSuite = r.u16('tls.server.bad-length');
  r.u8('tls.server.bad-length');
  let version = legacyVersion;
  let psk: number | undefined;
  const extensionTypes: number[] = [];
  if (!r.atEnd) {
    const exts = r.vec16('tls.server.bad-length');
    r.expectEnd('tls.server.bad-length');
    while (!exts.atEnd) {
      const type = exts.u16('tls.server.bad-length');
      const data = exts.vec16('tls.server.bad-length');
      if (extensionTypes.includes(type)) fail('tls.server.ext-duplicate');
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

function walkNewSessionTicket(body: Buffer): Buffer {
  const r = new ByteReader(body);
  r.u32('tls.server.bad-ticket');
  const ticket = r.vec16('tls.server.bad-ticket').rest('tls.server.bad-ticket');
  r.expectEnd('tls.server.bad-ticket');
  return Buffer.from(ticket);
}

type Phase = 'hello' | 'after-hrr' | 'tls12';

class ServerFlightReader implements ServerFlightParser {
  private readonly maxBytes: number;
  private readonly stream = new GrowableBuffer(1024);
  private cursor = 0;
  /** Fragment bytes of the current record still to come. */
  private recordLeft = 0;
  /** The current record is a compat CCS to skip rather than handshake bytes. */
  private skipping = false;
  private readonly handshake = new GrowableBuffer(1024);
  /** Start of the first handshake message not yet walked. */
  private messageStart = 0;
  private phase: Phase = 'hello';
  private hello: ServerHello | undefined;
  private retried = false;
  private readonly tickets: Buffer[] = [];
  private state: ServerFlightState = { kind: 'need-more' };

  constructor(opts: { maxBytes?: number }) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_SERVER_FLIGHT_BYTES;
  }

  push(chunk: Buffer): ServerFlightState {
    if (this.state.kind !== 'need-more') return this.state;
    const room = this.maxBytes - this.stream.length;
    const over = chunk.length > room;
    this.stream.append(over ? chunk.subarray(0, Math.max(0, room)) : chunk);
    const res = runParser(() => this.advance());
    if (!res.ok) this.state = { kind: 'reject', reason: res.reason ?? 'tls.server.bad-length' };
    else if (res.value !== undefined) this.state = res.value;
    else if (over) this.state = { kind: 'reject', reason: 'tls.server.too-large' };
    return this.state;
  }

  private done(): ServerFlightState {
    const h = this.hello!;
    const flight: ServerFlight = {
      version: h.version,
      sessionId: h.sessionId,
      cipherSuite: h.cipherSuite,
      helloRetryRequest: this.retried,
      newSessionTickets: this.tickets,
      extensionTypes: h.extensionTypes,
      ...(h.pskSelectedIdentity === undefined ? {} : { pskSelectedIdentity: h.pskSelectedIdentity }),
    };
    return { kind: 'done', flight };
  }

  private advance(): ServerFlightState | undefined {
    const s = this.stream;
    for (;;) {
      if (this.recordLeft === 0) {
        if (s.length - this.cursor < RECORD_HEADER_BYTES) return undefined;
        const h = readRecordHeader(s.view(this.cursor, this.cursor + RECORD_HEADER_BYTES), 0);
        if (h.type === ContentType.changeCipherSpec && this.phase === 'after-hrr') {
          // The middlebox-compatibility CCS after an HRR (RFC 8446 §D.4): skip it.
          this.skipping = true;
        } else if (h.type !== ContentType.handshake) {
          // CCS ends a TLS ≤ 1.2 server flight; an alert or anything else ends whatever we have.
          if (this.hello !== undefined) return this.done();
          return { kind: 'reject', reason: h.type === ContentType.alert ? 'tls.server.alert' : 'tls.server.bad-type' };
        } else {
          const why = checkHandshakeRecord(h);
          if (why !== undefined) return { kind: 'reject', reason: why };
          this.skipping = false;
        }
        this.recordLeft = h.length;
        this.cursor += RECORD_HEADER_BYTES;
        if (this.recordLeft === 0) this.skipping = false;
        continue;
      }
      const available = s.length - this.cursor;
      if (available <= 0) return undefined;
      const take = Math.min(available, this.recordLeft);
      if (!this.skipping) this.handshake.append(s.view(this.cursor, this.cursor + take));
      this.cursor += take;
      this.recordLeft -= take;
      if (this.recordLeft === 0) this.skipping = false;
      const v = this.walkMessages();
      if (v !== undefined) return v;
    }
  }

  /** Walks every complete handshake message collected so far. */
  private walkMessages(): ServerFlightState | undefined {
    const hs = this.handshake;
    for (;;) {
      const at = this.messageStart;
      if (hs.length - at < HANDSHAKE_HEADER_BYTES) return undefined;
      const type = hs.byteAt(at);
      const length = (hs.byteAt(at + 1) << 16) | (hs.byteAt(at + 2) << 8) | hs.byteAt(at + 3);
      if (length > this.maxBytes) return { kind: 'reject', reason: 'tls.server.too-large' };
      const end = at + HANDSHAKE_HEADER_BYTES + length;
      if (hs.length < end) return undefined;
      const body = hs.view(at + HANDSHAKE_HEADER_BYTES, end);
      this.messageStart = end;
      if (this.phase === 'tls12') {
        if (type === HandshakeType.newSessionTicket) this.tickets.push(walkNewSessionTicket(body));
        // Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone… carry nothing we learn.
        continue;
      }
      // A server's flight starts with ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.3).
      if (type !== HandshakeType.serverHello) return { kind: 'reject', reason: 'tls.server.unexpected-message' };
      const hello = walkServerHello(body);
      this.hello = hello;
      if (hello.retry) {
        this.retried = true;
        this.phase = 'after-hrr';
        continue;
      }
      if (hello.version === TlsVersion.tls13) return this.done();
      this.phase = 'tls12';
    }
  }
}

export function createServerFlightParser(opts: { maxBytes?: number } = {}): ServerFlightParser {
  return new ServerFlightReader(opts);
}
