// The parser contract of docs/protocol.md: every probe answers one of three things for the bytes seen so far.
// `final` is set at EOF, at the peek deadline and at the byte cap; after it "need-more" is not an answer.

/** What a connection is, as far as routing is concerned (docs/config.md `protocol`). */
export type Protocol = 'tls' | 'http' | 'h2c' | 'other';

export interface ProbeOptions {
  /** No more bytes will come (EOF, deadline, byte cap): answer match or reject. */
  readonly final: boolean;
}

export interface NeedMore {
  readonly kind: 'need-more';
}

export interface Reject {
  readonly kind: 'reject';
  /** Dotted parser reason, e.g. `tls.sni.bad-length` (docs/reasons.md). */
  readonly reason: string;
  /**
   * Set when the probe had already recognised its protocol before finding the bytes broken (a malformed
   * ClientHello is still TLS). Absent for "not mine": the bytes never looked like this protocol.
   */
  readonly protocol?: Protocol;
}

export interface Match<P extends Protocol, F> {
  readonly kind: 'match';
  readonly protocol: P;
  readonly fields: F;
  /** Bytes that belong to what was parsed (PROXY header + hello / request head / preface). */
  readonly consumed: number;
}

export const NEED_MORE: NeedMore = Object.freeze({ kind: 'need-more' });

export function reject(reason: string, protocol?: Protocol): Reject {
  return protocol === undefined ? { kind: 'reject', reason } : { kind: 'reject', reason, protocol };
}

/**
 * A probe sees the whole byte stream received so far on every call. The stream is append-only between
 * calls on the same instance, so a probe may keep a cursor and never re-walk what it has already checked
 * (the 64 KiB-one-byte-at-a-time budget of issue 3). A fresh instance per connection.
 */
export interface Probe<V> {
  readonly name: string;
  probe(bytes: Buffer, opts: ProbeOptions): V | NeedMore | Reject;
}

export function assertNever(x: never): never {
  throw new Error(`unexpected value ${JSON.stringify(x)}`);
}
