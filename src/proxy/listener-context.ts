// What a connection needs from its listener: one frozen snapshot taken at accept, so a SIGHUP reload
// changes routes and pools for new connections only.
import type { Logger } from 'pino';
import type { ListenerConfig, PoolConfig } from '../config/types.js';
import type { PoolState } from '../routing/pool-state.js';
import type { PoolAffinity } from '../affinity/affinity-pool.js';
import type { Connection } from './connection.js';
import type { IoEngine } from '../io/io-engine.js';
import type { CloseReason } from './reasons.js';
import type { Refusal } from './limits.js';
import type { MigrationRecorder } from '../migration/record.js';
import type { PoolQueue } from './pool-queue.js';

export interface PoolRuntime {
  readonly config: PoolConfig;
  readonly state: PoolState;
  /** Set by AffinitySet for `affinity: tls` pools before connections see the pool. */
  affinity?: PoolAffinity;
  /** Where connections wait for a slot, when some server has max_connections (pool-queue.ts). */
  readonly queue?: PoolQueue;
}

export interface ListenerContext {
  readonly listener: ListenerConfig;
  readonly pools: ReadonlyMap<string, PoolRuntime>;
  /** A `protocol: silent` route exists: only then is `timeouts.silent` acted on. */
  readonly hasSilentRoute: boolean;
  /** Some route matches on `source`: only then does routing need the client's address. */
  readonly routesUseSource: boolean;
  readonly logger: Logger;
  /** Log peeked bytes in hex at debug level (explicit opt-in: docs/reasons.md). */
  readonly rawBytes: boolean;
  /** Compute JA4 for every TLS hello and put it in the close line (`log.ja4`). */
  readonly logJa4: boolean;
  /** The record of clients, on a listener with a `migration` block whose store is open. */
  readonly record?: MigrationRecorder;
  /** How server connections are opened (the accepted side is the listener's business). */
  readonly engine: IoEngine;
  nextConnectionId(): number;
  /** Called once per connection; `conn.closeLogFields()` gives the close line. */
  onClose(conn: Connection, reason: CloseReason): void;
  /** Our code threw while handling `conn` (logged with its stack); the connection closes itself. */
  onFault(conn: Connection, err: unknown): void;
  onServerFailure(pool: PoolRuntime, index: number, why: string): void;
  onServerSuccess(pool: PoolRuntime, index: number): void;
  /**
   * Per-source limits for a source known only after a trusted PROXY header (absent when none apply):
   * the refusal, undefined when admitted (then counted until the connection closes).
   */
  readonly admitSource?: (conn: Connection, ip: string) => Refusal | undefined;
}
