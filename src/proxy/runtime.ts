// The running proxy: listeners bound from a config snapshot, the pools' runtime state, every live
// connection, reload (SIGHUP) and graceful shutdown (SIGTERM/SIGINT). Signals themselves are wired in
// src/cli: this module never exits the process.
import { closeSync, openSync } from 'node:fs';
import net, { type AddressInfo, type Server } from 'node:net';
import { devNull } from 'node:os';
import type { Logger } from 'pino';
import type { ListenerConfig, TwinportConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { PoolState } from '../routing/pool-state.js';
import type { AffinityStats } from '../affinity/affinity-pool.js';
import { AffinitySet, type AffinityDump } from '../affinity/affinity-set.js';
import { Connection } from './connection.js';
import type { Endpoint } from '../io/endpoint.js';
import { HealthChecker } from '../health/health-checker.js';
import { acceptEndpoints, chooseIoEngine, type Acceptor, type IoEngine } from '../io/io-engine.js';
import type { ListenerContext, PoolRuntime } from './listener-context.js';
import { connectionCeiling, openDescriptors, softNofileLimit, type ConnectionCeiling } from './fd-limit.js';
import { CLOSE_REASONS, type CloseReason } from './reasons.js';
import { PoolQueue } from './pool-queue.js';
import { DEFAULT_QUEUE } from '../config/compile.js';
import { takeListenFdsFor, type InheritedSocket } from './listen-fds.js';
import { ScopeLimits, type Refusal } from './limits.js';
import { ADMIN_STATES, type AdminState } from '../routing/pool-state.js';
import { openRecordStore, RecordWriter } from '../migration/record-writer.js';
import { buildReport, reportReadSince, type MigrationReport } from '../migration/report.js';
import { configPhaseOf } from '../migration/phase.js';
import { boundedOutcomes, type OutcomeCount } from '../migration/record.js';

/** See logFault. */
const FAULTS_PER_SECOND = 10;
const MAX_STACK = 4096;

/** Names per listener in migrationCounters(): the rest are summed under OVERFLOW_NAME. */
const METRIC_NAMES = 100;

function hasMigration(config: TwinportConfig): boolean {
  return config.listeners.some((l) => l.migration !== undefined);
}

interface ListenerHandle {
  /** Set right after the server is made (before it listens). */
  acceptor: Acceptor;
  ctx: ListenerContext;
  active: number;
  /** The inherited socket it serves, when it did not bind its own. */
  readonly inherited?: InheritedSocket;
  accepted: number;
  /** The listener's `limits`, kept across reloads while they do not change. */
  limits: ScopeLimits | undefined;
}

export interface RuntimeOptions {
  /**
   * Listening sockets passed by systemd or by the twinport being upgraded (listen-fds.ts); undefined when
   * none were. When given, every listener takes one and every one is taken, or start() throws.
   */
  readonly inherited?: readonly InheritedSocket[];
  /** Health and learned affinity handed over by the process this one replaces (binary upgrade). */
  readonly state?: RuntimeState;
}

/** What a binary upgrade carries from the old process to the new one (cli/state-handoff.ts). */
export interface RuntimeState {
  readonly health: readonly { readonly pool: string; readonly server: string; readonly up: boolean }[];
  readonly affinity: Readonly<Record<string, AffinityDump>>;
}

/** A listening socket as another process can inherit it (binary upgrade). */
export interface ListeningSocket {
  readonly listener: string;
  readonly fd: number;
  /** The name to pass in LISTEN_FDNAMES: the inherited socket's own, else the listener's. */
  readonly name: string;
}

/** Told of every connection's outcome, once, after its close line (the admin layer's metrics). */
export type CloseObserver = (conn: Connection, reason: CloseReason) => void;

/** A listener as the admin API shows it. */
export interface ListenerInfo {
  readonly name: string;
  readonly bind: string;
  readonly address: string;
  readonly accepted: number;
  readonly active: number;
}

/** What an operator set on a server (admin API); kept across reloads for servers that stay. */
interface ServerOverride {
  state: AdminState;
  /** A runtime weight, and the config's weight when it was set: a reload that changes the config's wins. */
  weight?: { value: number; configWeight: number };
}

/** The outcome of the last reload (admin API `/status`, metric `twinport_reloads_total`). */
export interface ReloadRecord {
  readonly at: string;
  readonly ok: boolean;
  readonly errors?: readonly string[];
}

/** An admin request named a pool or server that the running config does not have. */
export class UnknownTargetError extends TwinportError {}

function overrideKey(pool: string, server: string): string {
  return `${pool}\0${server}`;
}

function sameLimits(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

export interface RuntimeStats {
  accepted: number;
  acceptErrors: number;
  readonly closes: Record<CloseReason, number>;
}

export class ProxyRuntime {
  private config: TwinportConfig;
  private readonly logger: Logger;
  private readonly handles = new Map<string, ListenerHandle>();
  private pools = new Map<string, PoolRuntime>();
  private readonly connections = new Set<Connection>();
  private nextId = 1;
  private stopping = false;
  private lastAcceptErrorLog = 0;
  /** The process-wide connection ceiling (fd-limit.ts): from RLIMIT_NOFILE, or a lower max_connections. */
  private ceiling: ConnectionCeiling | undefined;
  /** Inputs of the ceiling, read once at start: a reload recomputes it with a new max_connections. */
  private fdBase: { soft: number | undefined; openAtStart: number | undefined } = { soft: undefined, openAtStart: undefined };
  private lastLimitLog = 0;
  /** Internal-error log lines in the current second, and those left out (see onFault). */
  private faultWindow = { start: 0, logged: 0, suppressed: 0 };
  /** Once-a-second descriptor probe (see probeDescriptors). */
  private descriptorProbe: NodeJS.Timeout | undefined;
  readonly stats: RuntimeStats;
  /** Active and passive health of the pools that configure it (docs/health.md). */
  readonly health: HealthChecker;
  /** TLS affinity tables and stores of `affinity: tls` pools (docs/affinity.md). */
  private readonly affinity: AffinitySet;
  /** Fixed for the process's life: a reload that changes io_engine is reported and not applied. */
  readonly engine: IoEngine;
  private readonly inherited: readonly InheritedSocket[] | undefined;
  /** Why `engine` runs (the start line). */
  private readonly engineWhy: string;
  private readonly closeObservers: CloseObserver[] = [];
  private readonly overrides = new Map<string, ServerOverride>();
  private maintTimers = new Set<NodeJS.Timeout>();
  /** The top-level `limits`, kept across reloads while they do not change. */
  private globalLimits: ScopeLimits | undefined;
  readonly startedAt = Date.now();
  /** Reloads applied and refused, and the last one's outcome. */
  readonly reloads = { ok: 0, failed: 0, last: undefined as ReloadRecord | undefined };
  /** A digest of the config file's text (set by the CLI that read it). */
  configHash: string | undefined;
  /** The record of clients (docs/migration.md), when some listener has a `migration` block. */
  private record: RecordWriter | undefined;

  constructor(config: TwinportConfig, logger: Logger, options: RuntimeOptions = {}) {
    this.config = config;
    this.inherited = options.inherited;
    const choice = chooseIoEngine(config.ioEngine);
    this.engine = choice.engine;
    this.engineWhy = choice.why;
    this.logger = logger;
    this.health = new HealthChecker(logger);
    // HAProxy's on-marked-down shutdown-sessions: a pool that asks for it loses its down server's
    // spliced connections at once (the clients reconnect to a server that is up).
    this.health.onServerDown = (pool, server, why) => {
      if (this.pools.get(pool)?.config.onDown !== 'close') return;
      for (const c of [...this.connections]) if (c.spliced && c.poolName === pool && c.server === server) c.abort('server-down', why.slice(0, 200));
    };
    this.affinity = new AffinitySet(logger);
    if (options.state !== undefined) {
      this.health.seedWith(options.state.health);
      this.affinity.seedWith(options.state.affinity);
    }
    const closes = Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>;
    this.stats = { accepted: 0, acceptErrors: 0, closes };
    this.globalLimits = config.limits === undefined ? undefined : new ScopeLimits('global', config.limits, performance.now());
  }

  /** The running config snapshot. */
  get currentConfig(): TwinportConfig {
    return this.config;
  }

  /** The pools as new connections see them. */
  get poolRuntimes(): ReadonlyMap<string, PoolRuntime> {
    return this.pools;
  }

  addCloseObserver(o: CloseObserver): void {
    this.closeObservers.push(o);
  }

  listeners(): ListenerInfo[] {
    return [...this.handles.values()].map((h) => {
      const a = h.acceptor.address();
      const address = a === null ? '' : a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      return { name: h.ctx.listener.name, bind: h.ctx.listener.bind.text, address, accepted: h.accepted, active: h.active };
    });
  }

  /** Live connections, oldest first. */
  liveConnections(): IterableIterator<Connection> {
    return this.connections.values();
  }

  /** Closes one live connection with reason `admin`; false when no live connection has that id. */
  closeConnection(id: number, detail = 'closed by an operator'): boolean {
    for (const c of this.connections) {
      if (c.id !== id) continue;
      c.adminClose(detail);
      return true;
    }
    return false;
  }

  /** Records a reload that failed before reaching reload() (the file did not load or validate). */
  noteReloadFailure(errors: readonly string[]): void {
    this.reloads.failed++;
    this.reloads.last = { at: new Date().toISOString(), ok: false, errors };
  }

  /**
   * An operator's `set server state` (HAProxy's runtime API): `drain` and `maint` take the server out of
   * new picks (affinity and hash included), `ready` returns it; `maint` also closes its open connections
   * (reason `admin`) after `deadlineMs` (0: at once). A weight may be set with it. Kept across reloads
   * for servers that stay, like health.
   */
  setServerState(
    poolName: string,
    server: string,
    change: { state?: AdminState; weight?: number; deadlineMs?: number },
  ): { pool: string; server: string; state: AdminState; weight: number } {
    const pool = this.pools.get(poolName);
    if (pool === undefined) throw new UnknownTargetError('TWP_ERR_ADMIN_UNKNOWN_POOL', `no pool "${poolName}" (pools: ${[...this.pools.keys()].join(', ')})`);
    const index = pool.config.servers.findIndex((s) => s.address.text === server);
    if (index < 0) {
      throw new UnknownTargetError(
        'TWP_ERR_ADMIN_UNKNOWN_SERVER',
        `pool "${poolName}" has no server "${server}" (servers: ${pool.config.servers.map((s) => s.address.text).join(', ')})`,
      );
    }
    const key = overrideKey(poolName, server);
    const o = this.overrides.get(key) ?? { state: pool.state.adminState(index) };
    if (change.state !== undefined) o.state = change.state;
    if (change.weight !== undefined) {
      pool.state.setWeight(index, change.weight);
      o.weight = { value: change.weight, configWeight: pool.config.servers[index]!.weight };
    }
    pool.state.setAdminState(index, o.state);
    if (o.state === 'ready' && o.weight === undefined) this.overrides.delete(key);
    else this.overrides.set(key, o);
    this.logger.info({ pool: poolName, server, state: o.state, weight: pool.state.baseWeight(index) }, 'server state set');
    if (change.state === 'maint') {
      const closeOpen = (): void => {
        if (this.overrides.get(key)?.state !== 'maint') return;
        for (const c of [...this.connections]) if (c.poolName === poolName && c.server === server) c.adminClose('server in maint');
      };
      if ((change.deadlineMs ?? 0) <= 0) closeOpen();
      else {
        const t = setTimeout(() => {
          this.maintTimers.delete(t);
          closeOpen();
        }, change.deadlineMs);
        t.unref();
        this.maintTimers.add(t);
      }
    }
    return { pool: poolName, server, state: o.state, weight: pool.state.baseWeight(index) };
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  /** Open connections per listener name (STATUS= for systemd, logs). */
  connectionsByListener(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const h of this.handles.values()) out[h.ctx.listener.name] = h.active;
    return out;
  }

  /**
   * The listening descriptors, for a process that takes them over (binary upgrade). Undefined in a
   * cluster worker, whose listening handle lives in the primary.
   */
  listeningSockets(): ListeningSocket[] | undefined {
    const out: ListeningSocket[] = [];
    for (const h of this.handles.values()) {
      const fd = h.acceptor.fd();
      if (fd === undefined) return undefined;
      const name = h.inherited?.name ?? h.ctx.listener.name;
      out.push({ listener: h.ctx.listener.name, fd, name });
    }
    return out;
  }

  /** Health and learned affinity, for the process that takes over (binary upgrade). */
  exportState(): RuntimeState {
    return {
      health: this.health.status().map((h) => ({ pool: h.pool, server: h.server, up: h.up })),
      affinity: this.affinity.dump(),
    };
  }

  /** Stop accepting on every listener (the sockets stay open in whoever else holds them). */
  stopAccepting(): void {
    this.stopping = true;
    for (const h of this.handles.values()) h.acceptor.close();
  }

  async start(): Promise<void> {
    this.logger.info({ engine: this.engine, why: this.engineWhy }, 'io engine');
    this.pools = this.buildPools(this.config);
    this.health.apply(this.pools);
    this.affinity.apply(this.pools);
    // Bounded by the store's connect timeout; a Redis that is down does not stop the proxy.
    await this.affinity.ready();
    // A store that cannot be opened is a startup error (TWP_ERR_MIGRATION_STORE_OPEN names the path).
    if (hasMigration(this.config)) await this.openRecord(this.config);
    // Read before the listeners open (each will hold one descriptor, counted here), so that no connection
    // accepted meanwhile is mistaken for the process's own descriptors; the stores are connected by now.
    const open = openDescriptors();
    this.fdBase = { soft: softNofileLimit(), openAtStart: open === undefined ? undefined : open + this.config.listeners.length };
    this.ceiling = connectionCeiling(this.config.maxConnections, this.fdBase.soft, this.fdBase.openAtStart);
    const taken = this.takeInherited(this.config.listeners, true);
    for (const l of this.config.listeners) await this.bind(l, taken.get(l.bind.text));
    if (this.ceiling !== undefined) this.logger.info({ maxConnections: this.ceiling.limit, why: this.ceiling.why }, 'connection ceiling');
    this.descriptorProbe = setInterval(() => this.probeDescriptors(), 1000);
    this.descriptorProbe.unref();
  }

  /** Bound addresses by listener name (port 0 in the config becomes the real port here). */
  addresses(): Map<string, AddressInfo> {
    const out = new Map<string, AddressInfo>();
    for (const h of this.handles.values()) out.set(h.ctx.listener.name, h.acceptor.address()!);
    return out;
  }

  /**
   * New routes and pools apply to connections accepted from now on; live connections keep the snapshot
   * they were accepted with. Listeners whose bind disappeared stop accepting; new binds are opened.
   */
  async reload(config: TwinportConfig): Promise<void> {
    if (config.ioEngine !== this.config.ioEngine) {
      this.logger.warn({ running: this.engine, configured: config.ioEngine }, 'io_engine changes need a restart: keeping the running engine');
    }
    if (this.record !== undefined && config.migrationStore.text !== this.config.migrationStore.text) {
      this.logger.warn({ running: this.record.store.describe, configured: config.migrationStore.text }, 'migration_store changes need a restart: keeping the running store');
    }
    if (this.record === undefined && hasMigration(config)) {
      // The first migration block arrives with a reload: open the store now. Failing that, the reload
      // still applies the phases; the record is off until a restart, and the log says why.
      try {
        await this.openRecord(config);
      } catch (e) {
        this.logger.error({ err: { code: (e as { code?: string }).code, message: (e as Error).message } }, 'migration record off: the store could not be opened');
      }
    }
    this.record?.reconfigure(config.migrationRecord);
    let pools: Map<string, PoolRuntime>;
    try {
      pools = this.buildPools(config);
    } catch (e) {
      this.noteReloadFailure([String((e as Error)?.message ?? e)]);
      throw e;
    }
    // Before any connection sees the new PoolStates: servers that stay keep their health.
    this.health.apply(pools);
    this.affinity.apply(pools);
    const keep = new Set(config.listeners.map((l) => l.bind.text));
    for (const l of config.listeners) {
      const h = this.handles.get(l.bind.text);
      if (h === undefined) continue;
      h.ctx = this.contextFor(l, pools);
      if (!sameLimits(h.limits?.cfg, l.limits)) h.limits = l.limits === undefined ? undefined : new ScopeLimits('listener', l.limits, performance.now());
    }
    if (!sameLimits(this.globalLimits?.cfg, config.limits)) {
      this.globalLimits = config.limits === undefined ? undefined : new ScopeLimits('global', config.limits, performance.now());
    }
    for (const [bind, h] of this.handles) {
      if (!keep.has(bind)) {
        h.acceptor.close();
        this.handles.delete(bind);
      }
    }
    this.config = config;
    this.pools = pools;
    this.ceiling = connectionCeiling(config.maxConnections, this.fdBase.soft, this.fdBase.openAtStart);
    try {
      const added = config.listeners.filter((l) => !this.handles.has(l.bind.text));
      const taken = this.takeInherited(added, false);
      for (const l of added) await this.bind(l, taken.get(l.bind.text));
    } catch (e) {
      this.noteReloadFailure([String((e as Error)?.message ?? e)]);
      throw e;
    }
    this.reloads.ok++;
    this.reloads.last = { at: new Date().toISOString(), ok: true };
  }

  /** Which listeners serve an inherited socket (listen-fds.ts); strict at start, see matchListenFds. */
  private takeInherited(listeners: readonly ListenerConfig[], strict: boolean): Map<string, InheritedSocket> {
    const inUse = new Set([...this.handles.values()].map((h) => h.inherited?.fd));
    return takeListenFdsFor(listeners, this.inherited?.filter((s) => !inUse.has(s.fd)), strict);
  }

  /**
   * Stop accepting, close connections that are still peeking or connecting (they have no backend
   * yet; unless `handOver`), let the others finish for `shutdown_timeout`, then close them with `shutdown`.
   */
  async shutdown(opts: { handOver?: boolean } = {}): Promise<void> {
    this.stopping = true;
    clearInterval(this.descriptorProbe);
    for (const t of this.maintTimers) clearTimeout(t);
    this.maintTimers.clear();
    this.health.stop();
    for (const h of this.handles.values()) h.acceptor.close();
    // A stop closes connections that have no backend yet. After a binary upgrade the service goes on in
    // the new process: those clients were accepted here and are served here (peek and connect are
    // bounded by their timeouts), or they would see a reset the upgrade promised not to cause.
    if (opts.handOver !== true) for (const c of this.connections) if (c.peeking) c.abort('shutdown');
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        const deadline = setTimeout(() => {
          for (const c of this.connections) c.abort('shutdown');
          resolve();
        }, this.config.shutdownTimeout);
        this.onDrained = () => {
          clearTimeout(deadline);
          resolve();
        };
      });
    }
    this.handles.clear();
    this.affinity.close();
    // The last batch: what the drained connections recorded is on disk before the process exits.
    await this.record?.close();
  }

  /** The migration report over the running instance's store (the admin API's GET /migration). */
  async migrationReport(opts: { since: number; quietFor: number; names?: readonly string[] }): Promise<MigrationReport | undefined> {
    const record = this.record;
    if (record === undefined) return undefined;
    const now = Date.now();
    // What this process recorded in the last interval is part of the answer.
    await record.flush();
    const view = await record.read(reportReadSince({ now, ...opts }));
    return buildReport(view, { now, ...opts, phaseOf: configPhaseOf(this.config) });
  }

  /**
   * Connections per (listener, name, protocol, outcome) since start, on migration listeners: the `maxNames`
   * busiest names of each listener, the rest summed under "*" (a metric's label set must stay small
   * whatever Host headers clients make up).
   */
  migrationCounters(maxNames = METRIC_NAMES): OutcomeCount[] {
    const record = this.record;
    if (record === undefined) return [];
    return boundedOutcomes([...record.recorder.outcomeCounts()], maxNames);
  }

  /** The record writer's and recorder's counters (batches, failures, lost, evictions), when recording. */
  migrationRecordStats(): Record<string, number> | undefined {
    const r = this.record;
    if (r === undefined) return undefined;
    return { ...r.counters, ...r.recorder.counters };
  }

  private async openRecord(config: TwinportConfig): Promise<void> {
    const store = await openRecordStore(config.migrationStore, config.migrationRecord, this.logger);
    this.record = new RecordWriter(store, config.migrationRecord, this.logger);
    this.record.start();
    this.logger.info({ store: store.describe }, 'migration record');
  }

  /** TLS affinity counters and table size per `affinity: tls` pool (docs/affinity.md). */
  affinityStats(): Record<string, AffinityStats> {
    return this.affinity.stats();
  }

  /** A pool's learned TLS affinity entries (keys shown as prefixes only), or undefined without affinity. */
  affinityEntries(pool: string, limit: number): ReturnType<AffinitySet['entries']> {
    return this.affinity.entries(pool, limit);
  }

  private onDrained: (() => void) | undefined;

  private buildPools(config: TwinportConfig): Map<string, PoolRuntime> {
    const pools = new Map<string, PoolRuntime>();
    for (const p of Object.values(config.pools)) {
      const state = new PoolState(p);
      const old = this.pools.get(p.name);
      if (old !== undefined) {
        p.servers.forEach((s, i) => {
          const j = old.config.servers.findIndex((o) => o.address.text === s.address.text);
          if (j >= 0) state.carryTotal(i, old.state.totalConnections(j));
        });
      }
      const q = p.queue ?? DEFAULT_QUEUE;
      const limited = p.servers.some((s) => s.maxConnections !== undefined);
      pools.set(p.name, { config: p, state, ...(limited && { queue: new PoolQueue(q.size, q.timeout) }) });
    }
    // An operator's states and weights carry over to the servers that stay; a weight set at run time
    // yields to the config when the reload changed that server's weight.
    for (const [key, o] of this.overrides) {
      const [poolName, server] = key.split('\0') as [string, string];
      const pool = pools.get(poolName);
      const index = pool?.config.servers.findIndex((s) => s.address.text === server) ?? -1;
      if (pool === undefined || index < 0) {
        this.overrides.delete(key);
        continue;
      }
      if (o.weight !== undefined) {
        if (o.weight.configWeight === pool.config.servers[index]!.weight) pool.state.setWeight(index, o.weight.value);
        else delete o.weight;
      }
      pool.state.setAdminState(index, o.state);
    }
    return pools;
  }

  private contextFor(listener: ListenerConfig, pools: ReadonlyMap<string, PoolRuntime>): ListenerContext {
    const logger = this.logger;
    return {
      listener,
      pools,
      hasSilentRoute: listener.routes.some((r) => r.match.protocol?.includes('silent') === true),
      routesUseSource: listener.routes.some((r) => r.match.source !== undefined),
      logger,
      rawBytes: this.config.log.rawBytes,
      logJa4: this.config.log.ja4,
      ...(listener.migration !== undefined && this.record !== undefined && { record: this.record.recorder }),
      engine: this.engine,
      nextConnectionId: () => this.nextId++,
      onClose: (conn, reason) => this.onClose(conn, reason),
      onFault: (conn, err) => this.onFault(conn, err),
      onServerFailure: (pool, index, why) => {
        logger.debug({ pool: pool.config.name, server: pool.config.servers[index]?.address.text, why }, 'connect failed');
        this.health.onConnectFailure(pool, index, why);
      },
      onServerSuccess: (pool, index) => this.health.onConnectSuccess(pool, index),
      ...(listener.proxyProtocol !== undefined && { admitSource: (conn: Connection, ip: string) => this.admitSource(conn, ip, listener) }),
    };
  }

  private async bind(l: ListenerConfig, inherited: InheritedSocket | undefined): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true });
    const handle: ListenerHandle = {
      acceptor: undefined as unknown as Acceptor,
      ctx: this.contextFor(l, this.pools),
      active: 0,
      accepted: 0,
      limits: l.limits === undefined ? undefined : new ScopeLimits('listener', l.limits, performance.now()),
      ...(inherited !== undefined && { inherited }),
    };
    handle.acceptor = acceptEndpoints(
      this.engine,
      server,
      (ep) => this.onAccept(handle, ep),
      (err) => this.onAcceptError(handle, err),
    );
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        const what = inherited === undefined ? l.bind.text : `${l.bind.text}, inherited fd ${inherited.fd}`;
        reject(new TwinportError('TWP_ERR_LISTEN', `${l.name} (${what}): ${err.message}`, { cause: err }));
      };
      server.once('error', onError);
      // An inherited socket is already bound and listening: net takes the descriptor as it is.
      server.listen(inherited === undefined ? { host: l.bind.host, port: l.bind.port } : { fd: inherited.fd }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.handles.set(l.bind.text, handle);
    const a = handle.acceptor.address()!;
    this.logger.info(
      { listener: l.name, address: `${a.address}:${a.port}`, engine: this.engine, accepts: handle.acceptor.accepts, ...(inherited !== undefined && { fd: inherited.fd, fdName: inherited.name }) },
      'listening',
    );
  }

  private onAccept(handle: ListenerHandle, client: Endpoint): void {
    this.stats.accepted++;
    handle.accepted++;
    const ctx = handle.ctx;
    let conn: Connection;
    try {
      conn = new Connection(client, ctx);
    } catch (e) {
      // Nothing of the connection exists to close itself: count and log it here, drop the socket.
      this.stats.closes['internal-error']++;
      this.logFault({ listener: ctx.listener.name }, e);
      client.destroy();
      return;
    }
    this.connections.add(conn);
    handle.active++;
    conn.owner = handle;
    const max = ctx.listener.maxConnections;
    const ceiling = this.ceiling;
    let refused: Refusal | undefined;
    if (this.stopping) {
      conn.abort('shutdown');
    } else if (max !== undefined && handle.active > max) {
      conn.limitName = 'listener.max_connections';
      conn.abort('limit', `max_connections ${max}`);
    } else if (ceiling !== undefined && this.connections.size > ceiling.limit) {
      // libuv accepts before JavaScript hears of a connection, so it cannot be left in the kernel's
      // backlog: it is closed at once, with its close line and counter, before descriptors run out.
      this.noteCeiling(ceiling);
      conn.limitName = 'global.max_connections';
      conn.abort('limit', ceiling.why);
    } else if ((refused = this.admitNew(handle, conn, client)) !== undefined) {
      conn.limitName = refused.limit;
      conn.abort('limit', refused.detail);
    } else {
      conn.start();
    }
  }

  /**
   * The rate limits of the process and the listener, then (unless a trusted PROXY header will name the
   * source, see admitSource) the per-source limits of both.
   */
  private admitNew(handle: ListenerHandle, conn: Connection, client: Endpoint): Refusal | undefined {
    const g = this.globalLimits;
    const l = handle.limits;
    if (g === undefined && l === undefined) return undefined;
    const now = performance.now();
    const refused = g?.admitNew(now) ?? l?.admitNew(now);
    if (refused !== undefined) return refused;
    if (handle.ctx.listener.proxyProtocol !== undefined) return undefined;
    if (g?.hasSourceLimits !== true && l?.hasSourceLimits !== true) return undefined;
    return this.admitSourceAt(conn, client.remote()?.address ?? '', g, l, now);
  }

  private admitSource(conn: Connection, ip: string, listener: ListenerConfig): Refusal | undefined {
    const handle = this.handles.get(listener.bind.text);
    const g = this.globalLimits;
    const l = handle?.limits;
    if (g?.hasSourceLimits !== true && l?.hasSourceLimits !== true) return undefined;
    return this.admitSourceAt(conn, ip, g, l, performance.now());
  }

  private admitSourceAt(conn: Connection, rawIp: string, g: ScopeLimits | undefined, l: ScopeLimits | undefined, now: number): Refusal | undefined {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one source either way.
    const ip = rawIp.startsWith('::ffff:') && rawIp.includes('.') ? rawIp.slice(7) : rawIp;
    const holds: { scope: ScopeLimits; ip: string }[] = [];
    for (const scope of [g, l]) {
      if (scope === undefined || !scope.hasSourceLimits) continue;
      const refused = scope.admitSource(ip, now);
      if (refused !== undefined) {
        for (const h of holds) h.scope.release(h.ip);
        return refused;
      }
      holds.push({ scope, ip });
    }
    conn.limitHolds = holds;
    return undefined;
  }

  private noteCeiling(ceiling: ConnectionCeiling): void {
    const now = Date.now();
    if (now - this.lastLimitLog < 1000) return;
    this.lastLimitLog = now;
    this.logger.warn({ maxConnections: ceiling.limit, why: ceiling.why, limitCloses: this.stats.closes.limit }, 'connection ceiling reached: closing new connections');
  }

  /**
   * accept(2) failures (EMFILE/ENFILE when descriptors run out) are reported by net.Server as 'error'
   * events while it keeps listening; libuv sheds the pending connection. Log at most once a second.
   */
  private onAcceptError(handle: ListenerHandle, err: NodeJS.ErrnoException): void {
    this.stats.acceptErrors++;
    const now = Date.now();
    if (now - this.lastAcceptErrorLog >= 1000) {
      this.lastAcceptErrorLog = now;
      this.logger.error({ listener: handle.ctx.listener.name, code: err.code, acceptErrors: this.stats.acceptErrors }, 'accept failed');
    }
  }

  /**
   * In practice net.Server rarely reports EMFILE: libuv answers it with its reserve-descriptor trick
   * (close a descriptor kept for this, accept and close every pending connection, reopen it) and reports
   * nothing unless the trick itself fails. Clients are shed unseen. So once a second take and release one
   * descriptor: when that fails, accept(2) fails too, and each listener's accept error is counted and
   * logged (rate-limited as above) with the errno code.
   */
  private probeDescriptors(): void {
    let fd: number;
    try {
      fd = openSync(devNull, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'EMFILE' && err.code !== 'ENFILE') return;
      for (const h of this.handles.values()) this.onAcceptError(h, err);
      return;
    }
    closeSync(fd);
  }

  private onClose(conn: Connection, reason: CloseReason): void {
    this.connections.delete(conn);
    const owner = conn.owner as ListenerHandle | undefined;
    if (owner !== undefined) owner.active--;
    this.stats.closes[reason]++;
    if (conn.limitHolds !== undefined) for (const h of conn.limitHolds) h.scope.release(h.ip);
    if (this.stopping && this.connections.size === 0) this.onDrained?.();
    // Below `info` the line is not written: do not build it either (a dozen fields per connection).
    if (this.logger.isLevelEnabled('info')) {
      try {
        this.logger.info(conn.closeLogFields(), 'close');
      } catch (e) {
        this.logFault({ conn: conn.id }, e);
      }
    }
    for (const o of this.closeObservers) {
      try {
        o(conn, reason);
      } catch (e) {
        this.logFault({ conn: conn.id }, e);
      }
    }
  }

  private onFault(conn: Connection, err: unknown): void {
    this.logFault({ conn: conn.id, listener: (conn.owner as ListenerHandle | undefined)?.ctx.listener.name }, err);
  }

  /**
   * One error line per fault, with the stack (up to MAX_STACK characters), at most FAULTS_PER_SECOND a
   * second: a bug that every connection of a flood hits must not become the flood's log amplifier. The
   * next line says how many were left out.
   */
  private logFault(fields: Record<string, unknown>, err: unknown): void {
    const w = this.faultWindow;
    const now = performance.now();
    if (now - w.start >= 1000) {
      w.start = now;
      w.logged = 0;
    }
    if (w.logged >= FAULTS_PER_SECOND) {
      w.suppressed++;
      return;
    }
    w.logged++;
    const e = err as { message?: unknown; stack?: unknown; code?: unknown } | undefined;
    const stack = typeof e?.stack === 'string' ? e.stack : String(err);
    try {
      this.logger.error(
        {
          ...fields,
          err: {
            ...(typeof e?.code === 'string' && { code: e.code }),
            message: typeof e?.message === 'string' ? e.message.slice(0, MAX_STACK) : undefined,
            stack: stack.slice(0, MAX_STACK),
          },
          suppressed: w.suppressed,
        },
        'internal error: connection closed',
      );
      w.suppressed = 0;
    } catch {
      // The logger itself failed: nothing left to tell it with.
    }
  }
}
