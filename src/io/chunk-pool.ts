// Reusable buffers for the server→client direction of the splice. Node's default read path allocates
// a fresh 64 KiB buffer per read and hands it to V8 as external memory; in a bulk transfer that makes V8
// run a full mark-compact every few dozen MiB (perf: ~25 % of the proxy's CPU in S5 went to marking and
// sweeping, plus a realloc copy per read). Buffers taken here go back when their write completed, so a
// steady transfer allocates nothing.

export class ChunkPool {
  private readonly free: Buffer[] = [];

  constructor(
    /** Bytes per buffer: the most one read delivers. */
    readonly size: number,
    /** Buffers kept for reuse at most; beyond that a returned buffer is left to the GC. */
    private readonly maxFree: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Only for a buffer nothing refers to any more (its write completed). */
  give(buf: Buffer): void {
    if (this.free.length < this.maxFree) this.free.push(buf);
  }

  get available(): number {
    return this.free.length;
  }
}
