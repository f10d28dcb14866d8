// The TLS record layer as the hello parsers need it (RFC 8446 §5.1, RFC 5246 §6.2.1):
//
//   struct {
//       ContentType type;                       // 1 byte: 20 CCS, 21 alert, 22 handshake, 23 data
//       ProtocolVersion legacy_record_version;  // 2 bytes: 0x0300..0x0304 seen in the wild
//       uint16 length;                          // MUST NOT exceed 2^14
//       opaque fragment[TLSPlaintext.length];
//   } TLSPlaintext;
//
// Handshake messages may be split over any number of records and records over any number of TCP reads,
// so both hello parsers copy fragment bytes into a growable buffer and walk a message only once it is
// complete (the nginx ssl_preread way, done by reassembly instead of a state machine).

import { ContentType, MAX_PLAINTEXT_RECORD } from './tls-constants.js';

export interface RecordHeader {
  readonly type: number;
  readonly version: number;
  readonly length: number;
}

/** Reads the 5-byte header at `at`; the caller has checked that 5 bytes are there. */
export function readRecordHeader(buf: Buffer, at: number): RecordHeader {
  return {
    type: buf[at]!,
    version: (buf[at + 1]! << 8) | buf[at + 2]!,
    length: (buf[at + 3]! << 8) | buf[at + 4]!,
  };
}

/**
 * legacy_record_version: TLS 1.3 clients send 0x0301 (or 0x0303), older stacks their version down to SSL
 * 3.0 (RFC 8446 §5.1, RFC 5246 Appendix E). Anything else is not a TLS record.
 */
export function isRecordVersion(version: number): boolean {
  return version >= 0x0300 && version <= 0x0304;
}

/**
 * Why a record of this type may not appear before the hello is complete. Before its ClientHello a client
 * sends only handshake records: a CCS (RFC 8446 §5, middlebox compatibility) comes after it, alerts and
 * application data need a handshake first.
 */
export function unexpectedRecordReason(type: number): string {
  switch (type) {
    case ContentType.changeCipherSpec:
      return 'tls.record.unexpected-ccs';
    case ContentType.alert:
      return 'tls.record.unexpected-alert';
    case ContentType.applicationData:
      return 'tls.record.unexpected-app-data';
    default:
      return 'tls.record.bad-type';
  }
}

/**
 * Checks a handshake record header after the first one (the first is checked by the caller, whose
 * failures mean "not mine"). Returns a reject reason or undefined.
 */
export function checkHandshakeRecord(h: RecordHeader): string | undefined {
  if (h.type !== ContentType.handshake) return unexpectedRecordReason(h.type);
  if (!isRecordVersion(h.version)) return 'tls.record.bad-version';
  if (h.length > MAX_PLAINTEXT_RECORD) return 'tls.record.too-large';
  // "Implementations MUST NOT send zero-length fragments of Handshake types" (RFC 8446 §5.1).
  if (h.length === 0) return 'tls.record.empty';
  return undefined;
}

/**
 * An append-only byte buffer that doubles its capacity, so collecting a message from many tiny records
 * costs linear time in total (no Buffer.concat per fragment).
 */
export class GrowableBuffer {
  private buf: Buffer;
  private len = 0;

  constructor(initialCapacity = 512) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialCapacity));
  }

  get length(): number {
    return this.len;
  }

  append(bytes: Buffer): void {
    this.appendFrom(bytes, 0, bytes.length);
  }

  /** Appends src[start, end) without making a view first (cheap for the 1-byte reads of slow clients). */
  appendFrom(src: Buffer, start: number, end: number): void {
    const n = end - start;
    const need = this.len + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = Buffer.allocUnsafe(cap);
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    if (n <= 32) {
      // A byte loop beats Buffer#copy's native call overhead for tiny fragments.
      const buf = this.buf;
      for (let i = 0; i < n; i++) buf[this.len + i] = src[start + i]!;
    } else {
      src.copy(this.buf, this.len, start, end);
    }
    this.len = need;
  }

  byteAt(i: number): number {
    return this.buf[i]!;
  }

  /** A view of [start, end) — valid until the next append. */
  view(start = 0, end = this.len): Buffer {
    return this.buf.subarray(start, Math.min(end, this.len));
  }
}
