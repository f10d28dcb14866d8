// One pool's TLS affinity at run time: the local table, the optional shared store, the counters, and
// the two moments a connection meets them — choosing the first server from the ClientHello's keys, and
// learning from the server's first flight (docs/affinity.md).
//
// Every lookup of a hello that carries keys counts exactly one of: hit (a learned, usable server takes
// the first attempt), stale (an entry named a server that is gone, down or drained: unlearned, the
// balance picks), miss (nothing learned). A hello without keys (a first visit) is not a lookup.
import type { PoolConfig } from '../config/types.js';
import {
  helloKeys,
  keyText,
  lessonsFromFlight,
  resolveLearned,
  type AffinityFlight,
  type AffinityHello,
  type AffinityKey,
  type AffinityPoolView,
} from '../routing/affinity.js';
import type { AffinityStore, StoreCounters } from './affinity-store.js';
import { AffinityTable, type AffinityTableOptions } from './affinity-table.js';

/** What affinity needs of a pool (the proxy's PoolRuntime is one): its servers and their state. */
export interface AffinityPoolRef {
  readonly config: PoolConfig;
  readonly state: AffinityPoolView;
}

export interface AffinityCounters extends StoreCounters {
  /** Entries added or moved to another server. */
  learned: number;
  hit: number;
  miss: number;
  stale: number;
  /** Entries forgotten because their server refused the session (stale ones are counted as stale). */
  unlearned: number;
  /** Hits answered by the shared store rather than the local table. */
  storeHits: number;
}

export interface AffinityStats extends AffinityCounters {
  /** Entries in the local table now. */
  readonly entries: number;
}

/** What a connection carries from the lookup to the splice. */
export interface AffinityChoice {
  readonly hello: AffinityHello;
  /** The key that chose the server; undefined when the balance chose. */
  readonly routedBy?: AffinityKey;
  /** The learned server for the first attempt. */
  readonly serverIndex?: number;
}

interface Found {
  readonly key: AffinityKey;
  readonly index: number;
  readonly server: string;
}

export class PoolAffinity {
  readonly counters: AffinityCounters = {
    learned: 0,
    hit: 0,
    miss: 0,
    stale: 0,
    unlearned: 0,
    storeHits: 0,
    storeErrors: 0,
    storeTimeouts: 0,
    storeSkipped: 0,
  };
  private readonly table: AffinityTable;

  constructor(
    readonly config: PoolConfig,
    private readonly store?: AffinityStore,
    opts: Pick<AffinityTableOptions, 'perf'> = {},
  ) {
    this.table = new AffinityTable({ ...config.affinityTable, ...opts });
  }

  /** Whether this table (and its learned entries) can serve a reloaded pool config as it is. */
  fits(config: PoolConfig, store: AffinityStore | undefined): boolean {
    const a = this.config.affinityTable;
    const b = config.affinityTable;
    return (
      config.affinity === 'tls' &&
      a.size === b.size &&
      a.ttl === b.ttl &&
      a.sidTtl === b.sidTtl &&
      store === this.store &&
      this.config.affinityStore?.prefix === config.affinityStore?.prefix
    );
  }

  /**
   * The learned table for the admin API: the key's kind and a prefix of it only (a whole session ID or
   * ticket key name is a credential-adjacent secret: never shown), its server, and how long ago it was
   * last used (its TTL minus what remains).
   */
  entries(limit: number): { kind: string; keyPrefix: string; server: string; idleMs: number; expiresInMs: number }[] {
    return this.table.list(limit).map((e) => {
      const [kind = '', hex = ''] = e.key.split(':');
      const ttl = kind === 'sid' ? this.config.affinityTable.sidTtl : this.config.affinityTable.ttl;
      return { kind, keyPrefix: `${hex.slice(0, 8)}…`, server: e.server, idleMs: Math.max(0, ttl - e.remainingMs), expiresInMs: e.remainingMs };
    });
  }

  stats(): AffinityStats {
    return { ...this.counters, entries: this.table.size };
  }

  /**
   * Looks the hello's keys up (local table, then the store within its timeout) and calls `done` once,
   * synchronously when the store is not asked.
   */
  choose(hello: AffinityHello, pool: AffinityPoolRef, done: (choice: AffinityChoice) => void): void {
    const keys = helloKeys(hello);
    if (keys.length === 0) {
      done({ hello });
      return;
    }
    const local = this.resolve(keys, keys.map((k) => this.table.get(keyText(k))), pool);
    if (local.found !== undefined) {
      this.counters.hit++;
      done({ hello, routedBy: local.found.key, serverIndex: local.found.index });
      return;
    }
    const store = this.store;
    const storeConfig = this.config.affinityStore;
    if (store === undefined || storeConfig === undefined) {
      this.counters[local.sawStale ? 'stale' : 'miss']++;
      done({ hello });
      return;
    }
    let answered = false;
    const answer = (choice: AffinityChoice): void => {
      answered = true;
      done(choice);
    };
    void store
      .get(keys.map((k) => this.storeKey(k)), storeConfig.timeout, this.counters)
      .then((values) => this.chooseFromStore(hello, keys, values, local.sawStale, pool, answer))
      .catch(() => {
        // Our own code threw on a store answer (a rejection nobody handles would end the process): the
        // connection is routed by its balance, as when the store is down.
        this.counters.storeErrors++;
        if (!answered) answer({ hello });
      });
  }

  private chooseFromStore(
    hello: AffinityHello,
    keys: readonly AffinityKey[],
    values: readonly (string | null)[] | undefined,
    localStale: boolean,
    pool: AffinityPoolRef,
    done: (choice: AffinityChoice) => void,
  ): void {
    let sawStale = localStale;
    if (values !== undefined) {
      const remote = this.resolve(keys, values, pool);
      if (remote.found !== undefined) {
        const { key, index, server } = remote.found;
        this.counters.hit++;
        this.counters.storeHits++;
        // Learned by another instance: cache it here without counting it as learned.
        this.table.learn(keyText(key), server, this.ttlOf(key));
        done({ hello, routedBy: key, serverIndex: index });
        return;
      }
      sawStale ||= remote.sawStale;
    }
    this.counters[sawStale ? 'stale' : 'miss']++;
    done({ hello });
  }

  /** Applies what the answering server's first flight teaches (routing/affinity.ts lessonsFromFlight). */
  observe(choice: AffinityChoice, flight: AffinityFlight, serverText: string): void {
    const { learn, unlearn } = lessonsFromFlight(choice.hello, flight, choice.routedBy);
    for (const k of unlearn) {
      if (this.table.unlearn(keyText(k), serverText)) this.counters.unlearned++;
      this.store?.unlearn(this.storeKey(k), serverText, this.counters);
    }
    for (const k of learn) {
      const ttl = this.ttlOf(k);
      if (this.table.learn(keyText(k), serverText, ttl)) this.counters.learned++;
      this.store?.set(this.storeKey(k), serverText, ttl, this.counters);
    }
  }

  /**
   * A session ID lives as long as its server's session cache keeps it (`sid_ttl`, 5 minutes by default);
   * a ticket key name as long as the key is in use (`ttl`).
   */
  private ttlOf(k: AffinityKey): number {
    const t = this.config.affinityTable;
    return k.kind === 'sid' ? t.sidTtl : t.ttl;
  }

  /** The first usable learned server among `values` (aligned with `keys`); unusable ones are unlearned. */
  private resolve(
    keys: readonly AffinityKey[],
    values: readonly (string | null | undefined)[],
    pool: AffinityPoolRef,
  ): { found?: Found; sawStale: boolean } {
    let sawStale = false;
    for (let i = 0; i < keys.length; i++) {
      const server = values[i];
      if (server === undefined || server === null) continue;
      const key = keys[i]!;
      const r = resolveLearned(pool.config.servers, pool.state, server);
      if ('index' in r) return { found: { key, index: r.index, server }, sawStale };
      sawStale = true;
      this.table.unlearn(keyText(key), server);
      this.store?.unlearn(this.storeKey(key), server, this.counters);
    }
    return { sawStale };
  }

  /** Redis key: prefix + pool + kind + hex, e.g. "twinport:affinity:https:tkt:0a1b…". */
  private storeKey(k: AffinityKey): string {
    return `${this.config.affinityStore?.prefix ?? ''}${this.config.name}:${k.kind}:${k.hex}`;
  }
}
