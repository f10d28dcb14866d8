// The learned affinity shared between twinport instances through Redis (`pools.<name>.affinity_store`).
//
// Redis is an optimisation, never a dependency of routing:
//  - reads are bounded by the pool's `timeout` (a few ms): past it, or on any error, the caller goes on
//    with its local table and the balance; a late answer is dropped;
//  - writes (`SET key server PX ttl`) and unlearns are fire-and-forget;
//  - while the connection is down nothing is queued (ioredis `enableOfflineQueue: false`): each command
//    fails at once, is counted, and ioredis reconnects in the background;
//  - while it is up but Redis does not answer (a long command or fork, SIGSTOP, a network black hole),
//    what ioredis holds is bounded — see "A stalled Redis" below.
// Errors are counted per pool (storeErrors, storeTimeouts, storeSkipped) and logged at most once per
// `logEveryMs`.
//
// A stalled Redis. A read gives up after its own timeout, but that does not take its command back: ioredis
// keeps every written command in `commandQueue` until a reply (or a flush) shifts it out, with its
// arguments, its promise and its bytes in the socket's write buffer. `commandTimeout` does not help on
// its own: Command#setTimeout only rejects the promise (ioredis 6 built/Command.js), the command stays
// queued to be matched with a reply that may never come. So a stall grew the queue with every TLS
// connection (review F2: 143 MB → 1.4 GB of RSS). Three bounds, on what ioredis really holds:
//  - at most MAX_COMMANDS_IN_FLIGHT commands in `commandQueue` (ioredis's own count, public in its
//    typings: a command is in it from its write until its reply is read or the queue is flushed). Past
//    it, reads route without the store and writes/unlearns are dropped, counted as `storeSkipped`;
//  - `socketTimeout: STALL_MS`: when no byte has come from Redis for that long while commands wait,
//    ioredis destroys the socket; its close handler flushes the queue (with maxRetriesPerRequest: 0 it
//    flushes on every reconnect attempt) and reconnects. `autoResendUnfulfilledCommands: false` keeps
//    it from replaying the flushed commands on the new connection;
//  - `commandTimeout: STALL_MS` rejects a stuck command's promise, releasing what waits on it (the
//    handshake's INFO too, which makes ioredis drop and retry a connection that never gets ready).
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
  /** Operations not sent because MAX_COMMANDS_IN_FLIGHT commands already await Redis. */
  storeSkipped: number;
}

/**
 * Most commands ioredis may hold for the store at once. A healthy Redis answers in well under a
 * millisecond, so even thousands of TLS connections per second keep only a handful in flight (rate ×
 * round trip: 5000/s × 0.5 ms ≈ 3); 1000 leaves two orders of magnitude for bursts and slow moments,
 * while capping what a stall can pin at about 1000 × ~0.5 KB (a command of ≤ 4 keys and its bytes).
 */
export const MAX_COMMANDS_IN_FLIGHT = 1000;

/**
 * Silence from Redis, with commands waiting, after which the connection is dropped and its queue
 * flushed. Every command the store sends is O(1) for Redis (MGET of ≤ 4 keys, SET, a 2-call script), so
 * a second without a byte is Redis stalled for every client, not a slow answer.
 */
export const STALL_MS = 1000;

export interface AffinityStoreOptions {
  /** Bound on one connect attempt (default 1s). */
  readonly connectTimeout?: number;
  /** Minimum time between two error log lines (default 10s). */
  readonly logEveryMs?: number;
  /** Default MAX_COMMANDS_IN_FLIGHT (tests). */
  readonly maxInFlight?: number;
  /** Default STALL_MS (tests). */
  readonly stallMs?: number;
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
  private readonly maxInFlight: number;
  private lastLog = -Infinity;
  private suppressed = 0;
  private closed = false;

  constructor(url: string, logger: Logger, opts: AffinityStoreOptions = {}) {
    this.url = url;
    this.logger = logger;
    this.where = describe(url);
    this.logEveryMs = opts.logEveryMs ?? 10_000;
    this.maxInFlight = opts.maxInFlight ?? MAX_COMMANDS_IN_FLIGHT;
    const stallMs = opts.stallMs ?? STALL_MS;
    this.client = new (redisClass())(url, {
      enableOfflineQueue: false,
      connectTimeout: opts.connectTimeout ?? 1000,
      commandTimeout: stallMs,
      socketTimeout: stallMs,
      autoResendUnfulfilledCommands: false,
      // Also what makes the close handler flush the queue on every reconnect attempt.
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

  /** Commands written to Redis whose reply has not been read (nor the queue flushed): what a stall pins. */
  get inFlight(): number {
    return this.client.commandQueue.length;
  }

  /** Whether an operation may be sent now; counts and notes it when not. */
  private admit(counters: StoreCounters, op: 'read' | 'write'): boolean {
    if (!this.ready) {
      counters.storeErrors++;
      this.note(new Error(`not connected (${this.client.status})`), op);
      return false;
    }
    if (this.client.commandQueue.length >= this.maxInFlight) {
      counters.storeSkipped++;
      this.note(new Error(`${this.client.commandQueue.length} commands awaiting an answer: skipped`), op);
      return false;
    }
    return true;
  }

  /**
   * The values of `keys` (null where absent), or undefined when Redis is down, failed, or did not answer
   * within `timeoutMs`: the caller then routes without it.
   */
  get(keys: readonly string[], timeoutMs: number, counters: StoreCounters): Promise<readonly (string | null)[] | undefined> {
    if (!this.admit(counters, 'read')) return Promise.resolve(undefined);
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
    if (!this.admit(counters, 'write')) return;
    this.client.set(key, server, 'PX', Math.max(1, Math.round(ttlMs))).catch((err: Error) => {
      counters.storeErrors++;
      this.note(err, 'write');
    });
  }

  /** Fire-and-forget delete of key while it still names `server`. */
  unlearn(key: string, server: string, counters: StoreCounters): void {
    if (!this.admit(counters, 'write')) return;
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
