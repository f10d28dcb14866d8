// Connections waiting for a server slot (HAProxy's server maxconn + `timeout queue`): when every usable
// server of a pool is at its max_connections, a new connection waits here, in arrival order, until a slot
// frees, its pool's queue.timeout passes (reason queue-timeout), or the queue is full (reason limit).

export interface QueueWaiter {
  /** A slot may have freed: true when this waiter took it (or no longer waits), false to keep waiting. */
  retry(): boolean;
}

export class PoolQueue {
  /** Insertion-ordered: the longest waiter first; O(1) removal when one times out or goes away. */
  private readonly waiters = new Set<QueueWaiter>();
  private scheduled = false;

  constructor(
    readonly size: number,
    readonly timeout: number,
  ) {}

  get length(): number {
    return this.waiters.size;
  }

  /** False when the queue is full. */
  enter(w: QueueWaiter): boolean {
    if (this.waiters.size >= this.size) return false;
    this.waiters.add(w);
    return true;
  }

  leave(w: QueueWaiter): void {
    this.waiters.delete(w);
  }

  /**
   * A slot freed: the longest waiters try in order until one cannot get a slot. Run on the next turn, not
   * inside the close that freed it (which is itself inside another connection's teardown).
   */
  wake(): void {
    if (this.scheduled || this.waiters.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const w of [...this.waiters]) if (!w.retry()) break;
    });
  }
}
