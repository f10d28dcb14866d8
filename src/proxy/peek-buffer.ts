// The bytes a connection sent before its verdict. The common case is one chunk holding the whole first
// flight: it is kept as is, no copy. Later chunks go into a buffer whose capacity doubles, so one-byte
// writes of a 64 KiB hello stay linear, and the detector always sees one contiguous view.

export class PeekBuffer {
  private buf: Buffer | undefined;
  private len = 0;

  get length(): number {
    return this.len;
  }

  append(chunk: Buffer): void {
    if (this.buf === undefined) {
      this.buf = chunk;
      this.len = chunk.length;
      return;
    }
    const need = this.len + chunk.length;
    if (need > this.buf.length || this.len === this.buf.length) {
      // Also taken when `buf` is still the first chunk: it belongs to the socket, never write into it.
      let cap = Math.max(4096, this.buf.length * 2);
      while (cap < need) cap *= 2;
      const next = Buffer.allocUnsafe(cap);
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    chunk.copy(this.buf, this.len);
    this.len = need;
  }

  /** Forgets the bytes (their last view stays valid for whoever holds it). */
  release(): void {
    this.buf = undefined;
    this.len = 0;
  }

  /** A view of everything appended so far; valid until the next append. */
  view(): Buffer {
    return this.buf === undefined ? Buffer.alloc(0) : this.buf.subarray(0, this.len);
  }
}
