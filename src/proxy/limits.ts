// Connection limits beyond max_connections (docs/config.md `limits`): a token bucket of new connections
// per second for a scope (the process, a listener), and per client source the same plus a cap on open
// connections. A refused connection is closed with reason `limit` and a detail naming the limit, before
// any server is chosen.
//
// In memory, per process, synchronous. rate-limiter-flexible was considered: its limiters answer with a
// promise (a microtask and an allocation on every accept) and its cluster mode asks the primary over IPC
// for every connection; its memory limiter is a fixed window, which lets twice the rate through across a
// window edge. A token bucket is a dozen lines; lru-cache (already used for affinity) bounds the number
// of sources remembered, and evicting a bucket loses nothing once it would have refilled.
import { LRUCache } from 'lru-cache';
import type { LimitsConfig, RateLimitConfig } from '../config/types.js';

/** Which limit refused a connection: `limit` is a bounded name (a metric label), `detail` the close line's. */
export interface Refusal {
  readonly limit: string;
  readonly detail: string;
}

/** Most client sources whose rate buckets are remembered at once, per scope. */
const MAX_SOURCES = 100_000;

export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly cfg: RateLimitConfig,
    now: number,
  ) {
    this.tokens = cfg.burst;
    this.at = now;
  }

  /** Takes one token if there is one (refilled at `rate` per second up to `burst`). */
  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.at);
    this.at = now;
    this.tokens = Math.min(this.cfg.burst, this.tokens + (elapsed * this.cfg.rate) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** One scope's limits (`limits` at top level or on a listener). */
export class ScopeLimits {
  private readonly bucket: TokenBucket | undefined;
  private readonly sourceBuckets: LRUCache<string, TokenBucket> | undefined;
  private readonly open = new Map<string, number>();

  constructor(
    /** `global` or `listener`: the first part of a refusal's limit name. */
    readonly scope: 'global' | 'listener',
    readonly cfg: LimitsConfig,
    now: number,
  ) {
    if (cfg.rate !== undefined) this.bucket = new TokenBucket(cfg.rate, now);
    const per = cfg.perSource?.rate;
    if (per !== undefined) {
      // A bucket left alone this long is full again: forgetting it changes nothing.
      const refillMs = Math.ceil((per.burst / per.rate) * 1000);
      this.sourceBuckets = new LRUCache<string, TokenBucket>({ max: MAX_SOURCES, ttl: refillMs, ttlAutopurge: false });
    }
  }

  get hasSourceLimits(): boolean {
    return this.cfg.perSource !== undefined;
  }

  /** The scope's own rate: the refusal's detail, or undefined when admitted. */
  admitNew(now: number): Refusal | undefined {
    if (this.bucket === undefined || this.bucket.take(now)) return undefined;
    return this.refuse('rate', `${this.cfg.rate!.rate}/s`);
  }

  /**
   * The source's limits: the refusal's detail, or undefined when admitted. An admitted connection counts
   * towards the source's open connections until `release(ip)`.
   */
  admitSource(ip: string, now: number): Refusal | undefined {
    const per = this.cfg.perSource;
    if (per === undefined) return undefined;
    const open = this.open.get(ip) ?? 0;
    if (per.maxConnections !== undefined && open >= per.maxConnections) {
      return this.refuse('per_source.max_connections', `${per.maxConnections}`);
    }
    if (per.rate !== undefined && this.sourceBuckets !== undefined) {
      let b = this.sourceBuckets.get(ip);
      if (b === undefined) {
        b = new TokenBucket(per.rate, now);
        this.sourceBuckets.set(ip, b);
      }
      if (!b.take(now)) return this.refuse('per_source.rate', `${per.rate.rate}/s`);
    }
    this.open.set(ip, open + 1);
    return undefined;
  }

  release(ip: string): void {
    const n = this.open.get(ip);
    if (n === undefined) return;
    if (n <= 1) this.open.delete(ip);
    else this.open.set(ip, n - 1);
  }

  private refuse(what: string, value: string): Refusal {
    const limit = `${this.scope}.${what}`;
    return { limit, detail: `${limit} ${value}` };
  }
}
