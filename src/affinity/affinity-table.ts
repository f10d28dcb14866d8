// One pool's learned affinity: key text ("sid:…", "tkt:…") → server address text, bounded by
// `affinity_table.size` (least recently used out first) and a TTL per entry (`affinity_table.ttl` for
// ticket key names, `sid_ttl` for session IDs, chosen by the caller). Per process.
//
// It lives in affinity/ rather than routing/ because it reads a clock (lru-cache's TTL) and routing/ is
// kept free of clocks and third-party state; the decisions it stores come from routing/affinity.ts.
import { LRUCache, type Perf } from 'lru-cache';
import type { AffinityTableConfig } from '../config/types.js';

/** Size and default TTL; per-kind TTLs (`sid_ttl`) are the caller's, passed to `learn`. */
export interface AffinityTableOptions extends Pick<AffinityTableConfig, 'size' | 'ttl'> {
  /** Clock for TTLs (tests); default: lru-cache's `performance`. */
  readonly perf?: Perf;
}

export class AffinityTable {
  private readonly cache: LRUCache<string, string>;

  constructor(opts: AffinityTableOptions) {
    this.cache = new LRUCache<string, string>({
      max: opts.size,
      ttl: opts.ttl,
      // `ttl` counts from the last use (docs/config.md): a hit keeps a busy session's entry alive even
      // when the resumption teaches nothing new (a TLS 1.2 session-ID resumption only echoes the ID).
      updateAgeOnGet: true,
      // Expired entries are dropped when read; no timer per entry (ttlAutopurge would set one each).
      ttlAutopurge: false,
      ...(opts.perf === undefined ? {} : { perf: opts.perf, ttlResolution: 0 }),
    });
  }

  get size(): number {
    return this.cache.size;
  }

  /** The server that holds `key`, if learned and not expired; restarts its TTL. */
  get(key: string): string | undefined {
    return this.cache.get(key);
  }

  /**
   * Records key → server and restarts its TTL (`ttlMs`, default the table's `ttl`); true when the entry
   * is new or moved to another server.
   */
  learn(key: string, server: string, ttlMs?: number): boolean {
    const before = this.cache.get(key);
    this.cache.set(key, server, ttlMs === undefined ? undefined : { ttl: ttlMs });
    return before !== server;
  }

  /** Up to `limit` entries, most recently used first, with their remaining TTL; reading does not refresh them. */
  list(limit: number): { key: string; server: string; remainingMs: number }[] {
    const out: { key: string; server: string; remainingMs: number }[] = [];
    for (const [key, server] of this.cache.entries()) {
      if (out.length >= limit) break;
      out.push({ key, server, remainingMs: Math.max(0, Math.round(this.cache.getRemainingTTL(key))) });
    }
    return out;
  }

  /** Forgets key only while it still names `server` (another connection may have moved it since). */
  unlearn(key: string, server: string): boolean {
    if (this.cache.get(key) !== server) return false;
    return this.cache.delete(key);
  }
}
