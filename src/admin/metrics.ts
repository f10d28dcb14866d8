// The Prometheus metrics of one proxy process (docs/admin.md lists each with its labels), on a registry
// of its own: tests run several runtimes in one process, and with --workers the primary sums the
// workers' registries (prom-client's AggregatorRegistry, see cluster-admin.ts).
//
// Nothing here runs per byte, and per connection only a close observer that adds to plain maps: the
// prom-client objects are brought up to date when a scrape asks (`collect`), so the splice path does not
// pay for label hashing. Counters kept this way only ever grow: a scrape adds what changed since the last.
import { AggregatorRegistry, Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';
import cluster from 'node:cluster';
import type { Connection } from '../proxy/connection.js';
import type { CloseReason } from '../proxy/reasons.js';
import type { PoolRuntime } from '../proxy/listener-context.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { ADMIN_STATES } from '../routing/pool-state.js';

/** Seconds; the peek is usually one round trip, a connect one more. */
const PEEK_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const CONNECT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const SEP = '\u0000';

/** Counts by a joined label key, turned into counter increments at scrape time. */
class Tally {
  private readonly counts = new Map<string, number>();
  private readonly reported = new Map<string, number>();

  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  /** Increments `counter` by what each key gained since the last flush. */
  flush(counter: Counter<string>, labelNames: readonly string[]): void {
    for (const [key, n] of this.counts) {
      const delta = n - (this.reported.get(key) ?? 0);
      if (delta <= 0) continue;
      this.reported.set(key, n);
      const values = key.split(SEP);
      counter.inc(Object.fromEntries(labelNames.map((l, i) => [l, values[i] ?? ''])), delta);
    }
  }
}

export interface ProxyMetrics {
  readonly registry: Registry;
}

/** The cluster-aware registry class: with --workers, the primary's scrape asks every worker for this. */
export function createRegistry(): Registry {
  return new AggregatorRegistry();
}

/**
 * Registers every metric of `runtime` on a new registry and starts counting its connections' outcomes.
 * Call once per runtime, before it accepts connections (outcomes before that are not seen).
 */
export function createProxyMetrics(runtime: ProxyRuntime, opts: { readonly processMetrics?: boolean } = {}): ProxyMetrics {
  const registry = createRegistry();
  const outcomes = new Tally();
  const limits = new Tally();
  const rejects = new Tally();
  const retries = new Tally();
  const closedBytes = new Map<string, { in: number; out: number }>();

  const peek = new Histogram({
    name: 'twinport_peek_duration_seconds',
    help: 'Time from accept to the routing decision (the peek), per listener.',
    labelNames: ['listener'],
    buckets: PEEK_BUCKETS,
    registers: [registry],
  });
  const connect = new Histogram({
    name: 'twinport_connect_duration_seconds',
    help: 'Time from the routing decision to the server connect that was spliced (retries included), per pool.',
    labelNames: ['pool'],
    buckets: CONNECT_BUCKETS,
    registers: [registry],
  });

  // One labelled child per listener / pool, kept: `observe(labels, v)` hashes the label set on every call,
  // which at one call per connection cost more than the rest of the close observer.
  const peekChildren = new Map<string, { observe(v: number): void }>();
  const connectChildren = new Map<string, { observe(v: number): void }>();
  const peekFor = (listener: string) => {
    let h = peekChildren.get(listener);
    if (h === undefined) peekChildren.set(listener, (h = peek.labels({ listener })));
    return h;
  };
  const connectFor = (pool: string) => {
    let h = connectChildren.get(pool);
    if (h === undefined) connectChildren.set(pool, (h = connect.labels({ pool })));
    return h;
  };

  runtime.addCloseObserver((conn: Connection, reason: CloseReason) => {
    const listener = conn.listenerName;
    outcomes.add(`${listener}${SEP}${conn.protocol ?? 'unknown'}${SEP}${reason}`);
    if (reason === 'limit') limits.add(`${listener}${SEP}${conn.limitName ?? 'unknown'}`);
    if (reason === 'rejected') rejects.add(`${listener}${SEP}${conn.closeDetailText ?? 'unknown'}`);
    const pool = conn.poolName;
    if (pool !== undefined) {
      const b = closedBytes.get(pool) ?? { in: 0, out: 0 };
      b.in += conn.bytesIn;
      b.out += conn.bytesOut;
      closedBytes.set(pool, b);
      if (conn.retries > 0) retries.add(pool, conn.retries);
    }
    const p = conn.peekSeconds;
    if (p !== undefined) peekFor(listener).observe(p);
    const c = conn.connectSeconds;
    if (c !== undefined && pool !== undefined) connectFor(pool).observe(c);
  });

  new Counter({
    name: 'twinport_connections_total',
    help: 'Connections closed, by listener, protocol (unknown before a verdict) and close reason: exactly one per close line.',
    labelNames: ['listener', 'protocol', 'reason'],
    registers: [registry],
    collect() {
      outcomes.flush(this, ['listener', 'protocol', 'reason']);
    },
  });
  const acceptedSeen = new Map<string, number>();
  new Counter({
    name: 'twinport_connections_accepted_total',
    help: 'Connections accepted, by listener.',
    labelNames: ['listener'],
    registers: [registry],
    collect() {
      for (const l of runtime.listeners()) {
        const delta = l.accepted - (acceptedSeen.get(l.name) ?? 0);
        acceptedSeen.set(l.name, l.accepted);
        if (delta > 0) this.inc({ listener: l.name }, delta);
        else this.inc({ listener: l.name }, 0);
      }
    },
  });
  new Gauge({
    name: 'twinport_connections_active',
    help: 'Connections open now, by listener.',
    labelNames: ['listener'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of runtime.listeners()) this.set({ listener: l.name }, l.active);
    },
  });
  const bytesSeen = new Map<string, number>();
  new Counter({
    name: 'twinport_bytes_total',
    help: 'Bytes spliced, by pool; direction in is client to server, out is server to client. Open connections count as they go.',
    labelNames: ['pool', 'direction'],
    registers: [registry],
    collect() {
      // Closed connections' totals plus what the open ones moved so far: a connection's bytes move from
      // the second sum to the first at its close, with the same value, so the sum never goes down.
      const now = new Map<string, number>();
      for (const [pool, b] of closedBytes) {
        now.set(`${pool}${SEP}in`, b.in);
        now.set(`${pool}${SEP}out`, b.out);
      }
      for (const c of runtime.liveConnections()) {
        const pool = c.poolName;
        if (pool === undefined) continue;
        now.set(`${pool}${SEP}in`, (now.get(`${pool}${SEP}in`) ?? 0) + c.bytesIn);
        now.set(`${pool}${SEP}out`, (now.get(`${pool}${SEP}out`) ?? 0) + c.bytesOut);
      }
      for (const [key, n] of now) {
        const delta = n - (bytesSeen.get(key) ?? 0);
        if (delta <= 0) continue;
        bytesSeen.set(key, n);
        const [pool, direction] = key.split(SEP) as [string, string];
        this.inc({ pool, direction }, delta);
      }
    },
  });
  new Counter({
    name: 'twinport_retries_total',
    help: 'Server connect attempts after the first, by pool.',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      retries.flush(this, ['pool']);
    },
  });
  new Counter({
    name: 'twinport_limit_rejections_total',
    help: 'Connections closed by a limit (reason limit), by listener and limit (listener.max_connections, global.per_source.rate, ...).',
    labelNames: ['listener', 'limit'],
    registers: [registry],
    collect() {
      limits.flush(this, ['listener', 'limit']);
    },
  });
  new Counter({
    name: 'twinport_rejected_total',
    help: 'Connections a parser refused (reason rejected), by listener and the parser reason (tls.record.bad-type, proxy.untrusted, ...).',
    labelNames: ['listener', 'parser_reason'],
    registers: [registry],
    collect() {
      rejects.flush(this, ['listener', 'parser_reason']);
    },
  });

  const servers = (): { pool: string; server: string; index: number; state: PoolRuntime }[] => {
    const out: { pool: string; server: string; index: number; state: PoolRuntime }[] = [];
    for (const [pool, p] of runtime.poolRuntimes) {
      for (let i = 0; i < p.config.servers.length; i++) out.push({ pool, server: p.config.servers[i]!.address.text, index: i, state: p });
    }
    return out;
  };
  new Gauge({
    name: 'twinport_server_active_connections',
    help: 'Connections open (or connecting) to each server.',
    labelNames: ['pool', 'server'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of servers()) this.set({ pool: s.pool, server: s.server }, s.state.state.activeConnections(s.index));
    },
  });
  new Gauge({
    name: 'twinport_server_up',
    help: 'Health: 1 when the server is up (active and passive checks agree), 0 when down. With --workers, 1 only when every worker sees it up.',
    labelNames: ['pool', 'server'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      for (const s of servers()) this.set({ pool: s.pool, server: s.server }, s.state.state.isUp(s.index) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'twinport_server_state',
    help: 'The operator state of each server: 1 for the current one of ready, drain, maint.',
    labelNames: ['pool', 'server', 'state'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      for (const s of servers()) {
        const current = s.state.state.adminState(s.index);
        for (const state of ADMIN_STATES) this.set({ pool: s.pool, server: s.server, state }, state === current ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'twinport_server_weight',
    help: 'The weight of each server (as configured or set at run time), whatever its state.',
    labelNames: ['pool', 'server'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      for (const s of servers()) this.set({ pool: s.pool, server: s.server }, s.state.state.baseWeight(s.index));
    },
  });
  const affinitySeen = new Map<string, number>();
  new Counter({
    name: 'twinport_affinity_total',
    help: 'TLS affinity lookups and lessons, by pool and event: learned, hit, miss, stale, unlearned.',
    labelNames: ['pool', 'event'],
    registers: [registry],
    collect() {
      for (const [pool, st] of Object.entries(runtime.affinityStats())) {
        for (const event of ['learned', 'hit', 'miss', 'stale', 'unlearned'] as const) {
          const key = `${pool}${SEP}${event}`;
          const delta = st[event] - (affinitySeen.get(key) ?? 0);
          affinitySeen.set(key, st[event]);
          this.inc({ pool, event }, Math.max(0, delta));
        }
      }
    },
  });
  new Gauge({
    name: 'twinport_affinity_entries',
    help: 'Entries in each pool\'s local TLS affinity table.',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [pool, st] of Object.entries(runtime.affinityStats())) this.set({ pool }, st.entries);
    },
  });
  const reloadSeen = { ok: 0, failed: 0 };
  new Counter({
    name: 'twinport_reloads_total',
    help: 'Config reloads (SIGHUP), by result: ok or failed (the running config was kept).',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      for (const result of ['ok', 'failed'] as const) {
        const delta = runtime.reloads[result] - reloadSeen[result];
        reloadSeen[result] = runtime.reloads[result];
        this.inc({ result }, Math.max(0, delta));
      }
    },
  });
  new Gauge({
    name: 'twinport_config_info',
    help: 'Always 1; the label hash is the SHA-256 (first 16 hex digits) of the running config file.',
    labelNames: ['hash'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.reset();
      this.set({ hash: runtime.configHash ?? 'none' }, 1);
    },
  });
  new Gauge({
    name: 'twinport_config_last_reload_successful',
    help: '1 when the last reload applied (or none was tried), 0 when it failed. With --workers, 0 when any worker failed.',
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.set(runtime.reloads.last?.ok === false ? 0 : 1);
    },
  });
  new Counter({
    name: 'twinport_migration_connections_total',
    help: 'Plaintext and TLS connections on migration listeners, by listener, name (Host or SNI; the 100 busiest per listener, the rest as "*"), protocol and outcome (spliced, redirected, rejected, exempt).',
    labelNames: ['listener', 'name', 'protocol', 'outcome'],
    registers: [registry],
    collect() {
      // The record's own totals, exposed as they are: a name that drops out of the busiest 100 moves its
      // count under "*", which Prometheus reads as that series' reset.
      this.reset();
      for (const c of runtime.migrationCounters()) this.inc({ listener: c.listener, name: c.name, protocol: c.protocol, outcome: c.outcome }, c.count);
    },
  });
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  // A worker answers the primary's scrape with this registry (prom-client's default is its global one).
  if (cluster.isWorker) AggregatorRegistry.setRegistries([registry]);
  return { registry };
}
