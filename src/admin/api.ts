// What the admin API answers, apart from HTTP (docs/admin.md). `AdminBackend` is one interface with two
// implementations: LocalAdmin reads one ProxyRuntime; with --workers the primary's ClusterAdmin
// (cluster-admin.ts) asks every worker's LocalAdmin and merges. server.ts turns either into HTTP, and the
// dashboard and the CLI verbs read the same JSON.
import type { Connection, ConnectionView } from '../proxy/connection.js';
import type { PoolRuntime } from '../proxy/listener-context.js';
import { UnknownTargetError, type ProxyRuntime } from '../proxy/runtime.js';
import { ADMIN_STATES, type AdminState } from '../routing/pool-state.js';
import type { ServerHealth } from '../health/health-checker.js';
import type { Registry } from 'prom-client';

/** An answer other than 200: HTTP status, stable code, message (the body is `{ code, message }`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ServerView {
  readonly address: string;
  readonly weight: number;
  readonly backup: boolean;
  readonly state: AdminState;
  readonly health: {
    readonly up: boolean;
    /** False when the pool has neither active nor passive health configured (then always up). */
    readonly checked: boolean;
    readonly active?: { readonly up: boolean; readonly successes: number; readonly failures: number; readonly lastCheck?: ServerHealth['lastCheck'] };
    readonly passive?: { readonly down: boolean; readonly failures: number };
  };
  readonly activeConnections: number;
  readonly totalConnections: number;
}

export interface PoolView {
  readonly name: string;
  readonly balance: string;
  readonly affinity: string | null;
  readonly servers: readonly ServerView[];
  readonly activeConnections: number;
  readonly totalConnections: number;
}

export interface ConnectionFilter {
  readonly pool?: string;
  readonly server?: string;
  readonly listener?: string;
  readonly limit: number;
}

export interface StateChange {
  readonly state?: AdminState;
  readonly weight?: number;
  readonly deadlineMs?: number;
}

export interface AdminBackend {
  metrics(): Promise<{ contentType: string; text: string }>;
  status(): Promise<Record<string, unknown>>;
  pools(): Promise<PoolView[]>;
  pool(name: string): Promise<PoolView>;
  setServerState(pool: string, server: string, change: StateChange): Promise<Record<string, unknown>>;
  connections(filter: ConnectionFilter): Promise<{ total: number; connections: (ConnectionView | Record<string, unknown>)[] }>;
  closeConnection(id: string): Promise<Record<string, unknown>>;
  affinity(pool: string, limit: number): Promise<Record<string, unknown>>;
  migration(query: MigrationQuery): Promise<unknown>;
}

/** `GET /migration?since=24h&quietFor=24h&name=…` (the report's own options, docs/migration.md). */
export interface MigrationQuery {
  readonly since: number;
  readonly quietFor: number;
  readonly names?: readonly string[];
}

export interface ProcessFacts {
  readonly version: string;
  /** The config file as given on the command line, or "<demo>". */
  readonly configFile: string;
  readonly workers: number;
}

/** Some listener has a `migration` block: then the runtime keeps the record of clients. */
function hasMigrationRecord(runtime: ProxyRuntime): boolean {
  return runtime.currentConfig.listeners.some((l) => l.migration !== undefined);
}

export const MIGRATION_OFF = new ApiError(404, 'TWP_ADMIN_NOT_FOUND', 'migration record not enabled');

function serverView(pool: PoolRuntime, i: number, health: ReadonlyMap<string, ServerHealth>): ServerView {
  const s = pool.config.servers[i]!;
  const h = health.get(`${pool.config.name}\u0000${s.address.text}`);
  const st = pool.state;
  return {
    address: s.address.text,
    weight: st.baseWeight(i),
    backup: s.backup,
    state: st.adminState(i),
    health: {
      up: st.isUp(i),
      checked: h !== undefined,
      ...(h !== undefined &&
        pool.config.health !== undefined && {
          active: { up: h.activeUp, successes: h.successes, failures: h.failures, ...(h.lastCheck !== undefined && { lastCheck: h.lastCheck }) },
        }),
      ...(h !== undefined && pool.config.passiveHealth !== undefined && { passive: { down: h.passiveDown, failures: h.passiveFailures } }),
    },
    activeConnections: st.activeConnections(i),
    totalConnections: st.totalConnections(i),
  };
}

export function poolView(pool: PoolRuntime, health: ReadonlyMap<string, ServerHealth>): PoolView {
  const servers = pool.config.servers.map((_, i) => serverView(pool, i, health));
  return {
    name: pool.config.name,
    balance: pool.config.balance,
    affinity: pool.config.affinity ?? null,
    servers,
    activeConnections: servers.reduce((n, s) => n + s.activeConnections, 0),
    totalConnections: servers.reduce((n, s) => n + s.totalConnections, 0),
  };
}

/** Parses and checks a `POST …/state` body: `{ state?, weight?, deadline? }` with at least one of state and weight. */
export function parseStateChange(body: unknown, parseDuration: (text: string) => number | string): StateChange {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, 'TWP_ADMIN_BAD_REQUEST', 'the body must be a JSON object such as {"state":"drain"}');
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => k !== 'state' && k !== 'weight' && k !== 'deadline');
  if (unknown.length > 0) throw new ApiError(400, 'TWP_ADMIN_BAD_REQUEST', `unknown field ${unknown.map((k) => `"${k}"`).join(', ')}: allowed are state, weight, deadline`);
  if (b['state'] === undefined && b['weight'] === undefined) {
    throw new ApiError(400, 'TWP_ADMIN_BAD_REQUEST', `give "state" (one of ${ADMIN_STATES.join(', ')}) or "weight", or both`);
  }
  const out: { -readonly [K in keyof StateChange]: StateChange[K] } = {};
  if (b['state'] !== undefined) {
    if (!(ADMIN_STATES as readonly unknown[]).includes(b['state'])) {
      throw new ApiError(400, 'TWP_ADMIN_BAD_STATE', `state ${JSON.stringify(b['state'])} is not one of ${ADMIN_STATES.join(', ')}`);
    }
    out.state = b['state'] as AdminState;
  }
  if (b['weight'] !== undefined) {
    const w = b['weight'];
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 256) {
      throw new ApiError(400, 'TWP_ADMIN_BAD_WEIGHT', `weight ${JSON.stringify(w)} must be a whole number from 0 to 256`);
    }
    out.weight = w;
  }
  if (b['deadline'] !== undefined) {
    if (out.state !== 'maint') throw new ApiError(400, 'TWP_ADMIN_BAD_REQUEST', 'deadline applies to state maint only');
    const d = typeof b['deadline'] === 'string' ? parseDuration(b['deadline']) : 'a duration string such as "30s"';
    if (typeof d === 'string') throw new ApiError(400, 'TWP_ADMIN_BAD_REQUEST', `deadline ${JSON.stringify(b['deadline'])}: ${d}`);
    out.deadlineMs = d;
  }
  return out;
}

export function matchesFilter(v: ConnectionView, f: ConnectionFilter): boolean {
  return (f.pool === undefined || v.pool === f.pool) && (f.server === undefined || v.server === f.server) && (f.listener === undefined || v.listener === f.listener);
}

/** The admin API of one proxy process. */
export class LocalAdmin implements AdminBackend {
  constructor(
    private readonly runtime: ProxyRuntime,
    private readonly registry: Registry,
    private readonly facts: ProcessFacts,
  ) {}

  async metrics(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  async status(): Promise<Record<string, unknown>> {
    const r = this.runtime;
    return {
      version: this.facts.version,
      pid: process.pid,
      startedAt: new Date(r.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - r.startedAt) / 1000),
      configFile: this.facts.configFile,
      configHash: r.configHash ?? null,
      lastReload: r.reloads.last ?? null,
      reloads: { ok: r.reloads.ok, failed: r.reloads.failed },
      engine: r.engine,
      workers: this.facts.workers,
      activeConnections: r.activeConnections,
      listeners: r.listeners(),
      migration: hasMigrationRecord(r),
    };
  }

  private healthMap(): Map<string, ServerHealth> {
    return new Map(this.runtime.health.status().map((h) => [`${h.pool}\u0000${h.server}`, h]));
  }

  async pools(): Promise<PoolView[]> {
    const health = this.healthMap();
    return [...this.runtime.poolRuntimes.values()].map((p) => poolView(p, health));
  }

  async pool(name: string): Promise<PoolView> {
    const p = this.runtime.poolRuntimes.get(name);
    if (p === undefined) throw new ApiError(404, 'TWP_ADMIN_UNKNOWN_POOL', `no pool "${name}" (pools: ${[...this.runtime.poolRuntimes.keys()].join(', ')})`);
    return poolView(p, this.healthMap());
  }

  async setServerState(pool: string, server: string, change: StateChange): Promise<Record<string, unknown>> {
    try {
      return this.runtime.setServerState(pool, server, change);
    } catch (e) {
      if (e instanceof UnknownTargetError) {
        throw new ApiError(404, e.code === 'TWP_ERR_ADMIN_UNKNOWN_POOL' ? 'TWP_ADMIN_UNKNOWN_POOL' : 'TWP_ADMIN_UNKNOWN_SERVER', e.message.replace(/^[^:]*: /, ''));
      }
      throw e;
    }
  }

  async connections(filter: ConnectionFilter): Promise<{ total: number; connections: ConnectionView[] }> {
    const out: ConnectionView[] = [];
    let total = 0;
    for (const c of this.runtime.liveConnections() as Iterable<Connection>) {
      const v = c.view;
      if (!matchesFilter(v, filter)) continue;
      total++;
      if (out.length < filter.limit) out.push(v);
    }
    return { total, connections: out };
  }

  async closeConnection(id: string): Promise<Record<string, unknown>> {
    const n = /^[0-9]{1,15}$/.test(id) ? Number(id) : NaN;
    if (!Number.isSafeInteger(n) || !this.runtime.closeConnection(n, 'DELETE /connections')) {
      throw new ApiError(404, 'TWP_ADMIN_UNKNOWN_CONNECTION', `no live connection ${JSON.stringify(id)}`);
    }
    return { id: n, closed: true, reason: 'admin' };
  }

  async affinity(pool: string, limit: number): Promise<Record<string, unknown>> {
    if (!this.runtime.poolRuntimes.has(pool)) throw new ApiError(404, 'TWP_ADMIN_UNKNOWN_POOL', `no pool "${pool}"`);
    const entries = this.runtime.affinityEntries(pool, limit);
    if (entries === undefined) throw new ApiError(404, 'TWP_ADMIN_NO_AFFINITY', `pool "${pool}" has no affinity: tls`);
    return { pool, stats: this.runtime.affinityStats()[pool] ?? null, entries };
  }

  async migration(query: MigrationQuery): Promise<unknown> {
    const report = await this.runtime.migrationReport({ since: query.since, quietFor: query.quietFor, ...(query.names !== undefined && { names: query.names }) });
    if (report === undefined) throw MIGRATION_OFF;
    return report;
  }
}
