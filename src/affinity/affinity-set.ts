// The runtime's TLS affinity across config snapshots: one PoolAffinity per `affinity: tls` pool and one
// Redis connection per distinct `affinity_store.redis` URL. A reload keeps a pool's learned table when
// the pool keeps its name, table size, TTL and store (entries name servers by address text, so removed
// servers simply become stale entries); anything else starts empty.
import type { Logger } from 'pino';
import type { PoolConfig } from '../config/types.js';
import { PoolAffinity, type AffinityStats } from './affinity-pool.js';
import { AffinityStore } from './affinity-store.js';

/** A pool as the set sees it (the proxy's PoolRuntime is one): affinity is attached to it here. */
export interface AffinityPoolSlot {
  readonly config: PoolConfig;
  affinity?: PoolAffinity;
}

export class AffinitySet {
  private readonly pools = new Map<string, PoolAffinity>();
  private readonly stores = new Map<string, AffinityStore>();

  constructor(private readonly logger: Logger) {}

  /**
   * Gives every `affinity: tls` pool of a new snapshot its affinity (new or carried over), then forgets
   * pools and closes stores the snapshot no longer names. Call before connections see the pools.
   */
  apply(pools: ReadonlyMap<string, AffinityPoolSlot>): void {
    const urls = new Set<string>();
    const names = new Set<string>();
    for (const pool of pools.values()) {
      const config = pool.config;
      if (config.affinity !== 'tls') continue;
      names.add(config.name);
      if (config.affinityStore !== undefined) urls.add(config.affinityStore.redis);
      const store = this.storeFor(config);
      let affinity = this.pools.get(config.name);
      if (affinity === undefined || !affinity.fits(config, store)) {
        affinity = new PoolAffinity(config, store);
        this.pools.set(config.name, affinity);
      }
      pool.affinity = affinity;
    }
    for (const name of this.pools.keys()) if (!names.has(name)) this.pools.delete(name);
    for (const [url, store] of this.stores) {
      if (urls.has(url)) continue;
      store.close();
      this.stores.delete(url);
    }
  }

  /** Settles once every store has made its first connection attempt (successful or not). */
  async ready(): Promise<void> {
    await Promise.all([...this.stores.values()].map((s) => s.firstAttempt));
  }

  /** Counters and table size per pool name. */
  stats(): Record<string, AffinityStats> {
    return Object.fromEntries([...this.pools].map(([name, a]) => [name, a.stats()]));
  }

  /** The pool's learned entries (admin API), or undefined when the pool has no `affinity: tls`. */
  entries(pool: string, limit: number): ReturnType<PoolAffinity['entries']> | undefined {
    return this.pools.get(pool)?.entries(limit);
  }

  close(): void {
    for (const s of this.stores.values()) s.close();
    this.stores.clear();
  }

  private storeFor(config: PoolConfig): AffinityStore | undefined {
    const url = config.affinityStore?.redis;
    if (url === undefined) return undefined;
    let store = this.stores.get(url);
    if (store === undefined) {
      store = new AffinityStore(url, this.logger);
      this.stores.set(url, store);
    }
    return store;
  }
}
