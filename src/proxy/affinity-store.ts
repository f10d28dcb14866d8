// The learned affinity shared between twinport instances through Redis (`pools.<name>.affinity_store`).
//
// Redis is an optimisation, never a dependency of routing:
//  - reads are bounded by the pool's `timeout` (a few ms): past it, or on any error, the caller goes on
//    with its local table and the balance; a late answer is dropped;
//  - writes (`SET key server PX ttl`) and unlearns are fire-and-forget;
//  - while the connection is down nothing is queued (ioredis `enableOfflineQueue: false`): each command
//    fails at once, is counted, and ioredis reconnects in the background.
// Errors are counted per pool (storeErrors, storeTimeouts) and logged at most once per `logEveryMs`.
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

// ioredis costs ~20 MB of RSS and ~90 ms at start-up (measured: `require('ioredis')` alone), paid by
// every process and cluster worker although only pools with an affinity_store use it: loaded on first use.
const load = createRequire(import.meta.url);
let RedisClass: typeof Redis | undefined;
function redisClass(): typeof Redis {
  return (RedisClass ??= (load('ioredis') as typeof import('ioredis')).Redis);
}

export interface StoreCounters {
  storeErrors: number;
  storeTimeouts: number;
}

export interface AffinityStoreOptions {
  /** Bound on one connect attempt (default 1s). */
  readonly connectTimeout?: number;
  /** Minimum time between two error log lines (default 10s). */
  readonly logEveryMs?: number;
}

// Delete only while the key still names the server that refused it: another instance may have
// re-learned it for a different server since (compare-and-delete is atomic inside Redis).
const DELETE_IF_EQUAL = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** host:port of a redis:// URL, for logs (never the password). */
function describe(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'redis';
  }
}

export class AffinityStore {
  readonly url: string;
  /** Settles after the first connect attempt, whatever its outcome: start() waits for it, never longer. */
  readonly firstAttempt: Promise<void>;
  private readonly client: Redis;
  private readonly logger: Logger;
  private readonly where: string;
  private readonly logEveryMs: number;
  private lastLog = -Infinity;
  private suppressed = 0;
  private closed = false;

  constructor(url: string, logger: Logger, opts: AffinityStoreOptions = {}) {
    this.url = url;
    this.logger = logger;
    this.where = describe(url);
    this.logEveryMs = opts.logEveryMs ?? 10_000;
    this.client = new (redisClass())(url, {
      enableOfflineQueue: false,
      connectTimeout: opts.connectTimeout ?? 1000,
      maxRetriesPerRequest: 0,
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
      lazyConnect: false,
    });
    this.client.on('error', (err: Error) => this.note(err, 'connection'));
    this.firstAttempt = new Promise<void>((resolve) => {
      const settle = (): void => {
        this.client.off('ready', settle);
        this.client.off('error', settle);
        this.client.off('end', settle);
        resolve();
      };
      this.client.on('ready', settle);
      this.client.on('error', settle);
      this.client.on('end', settle);
    });
  }

  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /**
   * The values of `keys` (null where absent), or undefined when Redis is down, failed, or did not answer
   * within `timeoutMs`: the caller then routes without it.
   */
  get(keys: readonly string[], timeoutMs: number, counters: StoreCounters): Promise<readonly (string | null)[] | undefined> {
    if (!this.ready) {
      counters.storeErrors++;
      this.note(new Error(`not connected (${this.client.status})`), 'read');
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        counters.storeTimeouts++;
        this.note(new Error(`no answer within ${timeoutMs}ms`), 'read');
        resolve(undefined);
      }, timeoutMs);
      this.client.mget(...keys).then(
        (values) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(values);
        },
        (err: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          counters.storeErrors++;
          this.note(err, 'read');
          resolve(undefined);
        },
      );
    });
  }

  /** Fire-and-forget `SET key server PX ttl`. */
  set(key: string, server: string, ttlMs: number, counters: StoreCounters): void {
    if (!this.ready) {
      counters.storeErrors++;
      this.note(new Error(`not connected (${this.client.status})`), 'write');
      return;
    }
    this.client.set(key, server, 'PX', Math.max(1, Math.round(ttlMs))).catch((err: Error) => {
      counters.storeErrors++;
      this.note(err, 'write');
    });
  }

  /** Fire-and-forget delete of key while it still names `server`. */
  unlearn(key: string, server: string, counters: StoreCounters): void {
    if (!this.ready) {
      counters.storeErrors++;
      this.note(new Error(`not connected (${this.client.status})`), 'write');
      return;
    }
    this.client.eval(DELETE_IF_EQUAL, 1, key, server).catch((err: Error) => {
      counters.storeErrors++;
      this.note(err, 'write');
    });
  }

  /** Drops the connection now (no QUIT round trip: Redis may be gone) and stops reconnecting. */
  close(): void {
    this.closed = true;
    this.client.disconnect(false);
  }

  private note(err: Error, op: 'connection' | 'read' | 'write'): void {
    if (this.closed) return;
    const now = performance.now();
    if (now - this.lastLog < this.logEveryMs) {
      this.suppressed++;
      return;
    }
    this.lastLog = now;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.logger.warn({ store: this.where, op, err: err.message, suppressed }, 'affinity store unavailable');
  }
}
