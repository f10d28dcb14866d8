// One bounded reader for every parser. Reads are checked against two ends:
//  - `limit`: the end declared by an enclosing length field. Reading past it means a length lies → reject.
//  - `available`: the end of the bytes seen so far. Reading past it (but inside `limit`) means the bytes
//    may still arrive → need more.
// Failures are raised as ParseStop and turned into a Verdict at the parser boundary (`runParser`), so a
// parser reads straight-line like the RFC's structs and every read is length-checked.
//
// Nested vectors can be read two ways: `sub`/`vec*` hand out a child reader (simple, one object per
// vector), or `enter*`/`leave` narrow this reader's limit and restore it (no object: the ClientHello walk
// runs once per connection and its dozens of vectors made it GC-bound).

export class ParseStop {
  /** `reason` undefined means "need more bytes". */
  constructor(readonly reason: string | undefined) {}
}

const NEED_MORE_STOP = new ParseStop(undefined);

export class ByteReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    private limit = buf.length,
    private readonly available = buf.length,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  /** Bytes left before the enclosing length ends. */
  get remaining(): number {
    return this.limit - this.pos;
  }

  get atEnd(): boolean {
    return this.pos >= this.limit;
  }

  private need(n: number, reason: string): number {
    const at = this.pos;
    const end = at + n;
    if (end > this.limit) throw new ParseStop(reason);
    if (end > this.available) throw NEED_MORE_STOP;
    this.pos = end;
    return at;
  }

  u8(reason: string): number {
    return this.buf[this.need(1, reason)]!;
  }

  u16(reason: string): number {
    const at = this.need(2, reason);
    return (this.buf[at]! << 8) | this.buf[at + 1]!;
  }

  u24(reason: string): number {
    const at = this.need(3, reason);
    return (this.buf[at]! << 16) | (this.buf[at + 1]! << 8) | this.buf[at + 2]!;
  }

  u32(reason: string): number {
    const at = this.need(4, reason);
    return this.buf.readUInt32BE(at);
  }

  /** n raw bytes (a view, not a copy). */
  bytes(n: number, reason: string): Buffer {
    const at = this.need(n, reason);
    return this.buf.subarray(at, at + n);
  }

  skip(n: number, reason: string): void {
    this.need(n, reason);
  }

  /** A reader over the next n bytes, whose own limit is their end; this reader moves past them. */
  sub(n: number, reason: string): ByteReader {
    const start = this.pos;
    const end = start + n;
    if (end > this.limit) throw new ParseStop(reason);
    this.pos = end;
    return new ByteReader(this.buf, start, end, Math.min(this.available, end));
  }

  /** `<lo..hi>` vector with a 1-byte length prefix (RFC 8446 §3.4). */
  vec8(reason: string): ByteReader {
    return this.sub(this.u8(reason), reason);
  }

  /** `<lo..2^16-1>` vector with a 2-byte length prefix. */
  vec16(reason: string): ByteReader {
    return this.sub(this.u16(reason), reason);
  }

  /** `<lo..2^24-1>` vector with a 3-byte length prefix. */
  vec24(reason: string): ByteReader {
    return this.sub(this.u24(reason), reason);
  }

  /** Everything up to the limit (must all be available). */
  rest(reason: string): Buffer {
    return this.bytes(this.limit - this.pos, reason);
  }

  /** Moves past n bytes and returns where they start: the caller reads buf[at, at + n) itself. */
  take(n: number, reason: string): number {
    return this.need(n, reason);
  }

  /**
   * Narrows the limit to the next n bytes (a vector's contents) and returns the enclosing limit, to be
   * handed back to `leave`.
   */
  enter(n: number, reason: string): number {
    const end = this.pos + n;
    if (end > this.limit) throw new ParseStop(reason);
    const outer = this.limit;
    this.limit = end;
    return outer;
  }

  /** `enter` for a vector with a 2-byte length prefix. */
  enter16(reason: string): number {
    return this.enter(this.u16(reason), reason);
  }

  /** Moves to the end of the entered vector (whatever was left unread) and restores the enclosing limit. */
  leave(outer: number): void {
    // Skipping is reading: bytes that have not arrived yet cannot be skipped.
    if (this.limit > this.available) throw NEED_MORE_STOP;
    this.pos = this.limit;
    this.limit = outer;
  }

  /**
   * Reads the 1-byte length of a vector that must fill the rest of the current one exactly (too long or
   * too short rejects with `reason`), and returns it. The limit stays: it already ends the vector.
   */
  wholeVec8(reason: string): number {
    const n = this.u8(reason);
    if (n !== this.limit - this.pos) throw new ParseStop(reason);
    return n;
  }

  /** `wholeVec8` with a 2-byte length. */
  wholeVec16(reason: string): number {
    const n = this.u16(reason);
    if (n !== this.limit - this.pos) throw new ParseStop(reason);
    return n;
  }

  /** Rejects when anything is left inside the enclosing length (a length that claims too much). */
  expectEnd(reason: string): void {
    if (this.pos !== this.limit) throw new ParseStop(reason);
  }

  peekU8(): number | undefined {
    return this.pos < this.available && this.pos < this.limit ? this.buf[this.pos] : undefined;
  }
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string | undefined };

/** Runs a parser body, turning a ParseStop into a result. Any other exception is a bug and propagates. */
export function runParser<T>(body: () => T): ParseResult<T> {
  try {
    return { ok: true, value: body() };
  } catch (e) {
    if (e instanceof ParseStop) return { ok: false, reason: e.reason };
    throw e;
  }
}
