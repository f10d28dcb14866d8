// The admin API with --workers (docs/admin.md "With --workers"): the primary holds the one admin
// listener and asks every worker, whose LocalAdmin answers over the cluster IPC channel; the answers are
// merged here. Metrics go through prom-client's AggregatorRegistry (counters and histograms summed over
// workers; gauges as each declares: server_up is the minimum, states and weights the maximum).
//
// Server states are an operator's decision for the whole process group: the primary keeps every change
// it applied and replays them to a worker that starts later (a replacement after a crash), so a drained
// server does not come back with a new worker.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { ApiError, MIGRATION_OFF, type AdminBackend, type ConnectionFilter, type MigrationQuery, type PoolView, type ServerView, type StateChange } from './api.js';

const REQ = 'twinport-admin:req';
const RES = 'twinport-admin:res';
const READY = 'twinport-admin:ready';
/** A worker that does not answer in this time is left out of the answer (and named in `missing`). */
const WORKER_TIMEOUT_MS = 5000;

type Op = 'status' | 'pools' | 'pool' | 'setServerState' | 'connections' | 'closeConnection' | 'affinity' | 'migration';

interface Request {
  readonly type: typeof REQ;
  readonly id: number;
  readonly op: Op;
  readonly args: unknown[];
}

interface Response {
  readonly type: typeof RES;
  readonly id: number;
  readonly value?: unknown;
  readonly error?: { status: number; code: string; message: string };
}

/** In a worker: answers the primary's admin requests from this worker's LocalAdmin, and says when ready. */
export function serveWorkerAdmin(local: AdminBackend): void {
  process.on('message', (msg: unknown) => {
    const m = msg as Partial<Request> | null;
    if (m?.type !== REQ || typeof m.id !== 'number' || typeof m.op !== 'string') return;
    const fn = (local as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m.op];
    const reply = (r: Omit<Response, 'type' | 'id'>): void => {
      process.send?.({ type: RES, id: m.id, ...r });
    };
    if (typeof fn !== 'function') {
      reply({ error: { status: 500, code: 'TWP_ADMIN_INTERNAL', message: `unknown op ${m.op}` } });
      return;
    }
    fn.apply(local, m.args ?? []).then(
      (value) => reply({ value }),
      (e: unknown) =>
        reply({
          error: e instanceof ApiError ? { status: e.status, code: e.code, message: e.message } : { status: 500, code: 'TWP_ADMIN_INTERNAL', message: String((e as Error)?.message ?? e) },
        }),
    );
  });
  process.send?.({ type: READY });
}

interface WorkerAnswer {
  readonly worker: number;
  readonly value?: unknown;
  readonly error?: ApiError;
}

function mergeServers(a: ServerView, b: ServerView): ServerView {
  return {
    ...a,
    health: { ...a.health, up: a.health.up && b.health.up },
    activeConnections: a.activeConnections + b.activeConnections,
    totalConnections: a.totalConnections + b.totalConnections,
  };
}

function mergePools(a: PoolView, b: PoolView): PoolView {
  const servers = a.servers.map((s) => {
    const other = b.servers.find((x) => x.address === s.address);
    return other === undefined ? s : mergeServers(s, other);
  });
  return {
    ...a,
    servers,
    activeConnections: a.activeConnections + b.activeConnections,
    totalConnections: a.totalConnections + b.totalConnections,
  };
}

/** The admin API of the primary of a --workers group. */
export class ClusterAdmin implements AdminBackend {
  private nextId = 1;
  private readonly pending = new Map<number, { worker: number; resolve: (r: Response) => void }>();
  private readonly aggregator = new AggregatorRegistry();
  /** Every state change applied, in order, replayed to workers that start later. */
  private readonly applied = new Map<string, { pool: string; server: string; change: StateChange }>();

  constructor(private readonly logger: Logger) {
    cluster.on('message', (worker: Worker, msg: unknown) => {
      const m = msg as (Omit<Partial<Response>, 'type'> & { type?: string }) | null;
      if (m?.type === READY) {
        this.replay(worker);
        return;
      }
      if (m?.type !== RES || typeof m.id !== 'number') return;
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      p.resolve(m as Response);
    });
  }

  private workers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  }

  private ask(worker: Worker, op: Op, args: unknown[]): Promise<WorkerAnswer> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ worker: worker.id, error: new ApiError(504, 'TWP_ADMIN_WORKER_TIMEOUT', `worker ${worker.id} did not answer within ${WORKER_TIMEOUT_MS} ms`) });
      }, WORKER_TIMEOUT_MS);
      this.pending.set(id, {
        worker: worker.id,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r.error === undefined ? { worker: worker.id, value: r.value } : { worker: worker.id, error: new ApiError(r.error.status, r.error.code, r.error.message) });
        },
      });
      try {
        worker.send({ type: REQ, id, op, args } satisfies Request);
      } catch (e) {
        this.pending.delete(id);
        clearTimeout(timer);
        resolve({ worker: worker.id, error: new ApiError(502, 'TWP_ADMIN_WORKER_GONE', String((e as Error)?.message ?? e)) });
      }
    });
  }

  private async all(op: Op, args: unknown[] = []): Promise<WorkerAnswer[]> {
    const ws = this.workers();
    if (ws.length === 0) throw new ApiError(503, 'TWP_ADMIN_NO_WORKERS', 'no worker is running');
    return Promise.all(ws.map((w) => this.ask(w, op, args)));
  }

  /** The answers' values; the first error when every worker failed, or when `strict` and any did. */
  private values<T>(answers: WorkerAnswer[], strict = false): T[] {
    const failed = answers.filter((a) => a.error !== undefined);
    if (failed.length > 0 && (strict || failed.length === answers.length)) throw failed[0]!.error!;
    return answers.filter((a) => a.error === undefined).map((a) => a.value as T);
  }

  private replay(worker: Worker): void {
    for (const { pool, server, change } of this.applied.values()) {
      void this.ask(worker, 'setServerState', [pool, server, { ...change, deadlineMs: 0 }]).then((a) => {
        if (a.error !== undefined) this.logger.warn({ worker: worker.id, pool, server, err: a.error.message }, 'server state not replayed to a new worker');
      });
    }
  }

  async metrics(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.aggregator.contentType, text: await this.aggregator.clusterMetrics() };
  }

  async status(): Promise<Record<string, unknown>> {
    const answers = await this.all('status');
    const values = this.values<Record<string, unknown>>(answers);
    const first = values[0]!;
    const listeners = new Map<string, { name: string; bind: string; address: string; accepted: number; active: number }>();
    for (const v of values) {
      for (const l of v['listeners'] as { name: string; bind: string; address: string; accepted: number; active: number }[]) {
        const m = listeners.get(l.name);
        if (m === undefined) listeners.set(l.name, { ...l });
        else {
          m.accepted += l.accepted;
          m.active += l.active;
        }
      }
    }
    return {
      ...first,
      pid: process.pid,
      workers: values.length,
      workerPids: values.map((v) => v['pid']),
      activeConnections: values.reduce((n, v) => n + (v['activeConnections'] as number), 0),
      listeners: [...listeners.values()],
      reloads: {
        ok: values.reduce((n, v) => n + (v['reloads'] as { ok: number }).ok, 0),
        failed: values.reduce((n, v) => n + (v['reloads'] as { failed: number }).failed, 0),
      },
      ...(answers.some((a) => a.error !== undefined) && { missing: answers.filter((a) => a.error !== undefined).map((a) => a.worker) }),
    };
  }

  async pools(): Promise<PoolView[]> {
    const per = this.values<PoolView[]>(await this.all('pools'));
    return per.reduce((acc, pools) => acc.map((p) => {
      const other = pools.find((x) => x.name === p.name);
      return other === undefined ? p : mergePools(p, other);
    }));
  }

  async pool(name: string): Promise<PoolView> {
    const per = this.values<PoolView>(await this.all('pool', [name]));
    return per.reduce(mergePools);
  }

  async setServerState(pool: string, server: string, change: StateChange): Promise<Record<string, unknown>> {
    const values = this.values<Record<string, unknown>>(await this.all('setServerState', [pool, server, change]), true);
    const key = `${pool}\u0000${server}`;
    const prior = this.applied.get(key)?.change ?? {};
    this.applied.delete(key); // re-inserted last: replays keep the order of the changes
    this.applied.set(key, { pool, server, change: { ...prior, ...change } });
    return { ...values[0]!, workers: values.length };
  }

  async connections(filter: ConnectionFilter): Promise<{ total: number; connections: Record<string, unknown>[] }> {
    const answers = await this.all('connections', [filter]);
    let total = 0;
    const out: Record<string, unknown>[] = [];
    for (const a of answers) {
      if (a.error !== undefined) continue;
      const v = a.value as { total: number; connections: Record<string, unknown>[] };
      total += v.total;
      for (const c of v.connections) if (out.length < filter.limit) out.push({ ...c, id: `${a.worker}.${String(c['id'])}`, worker: a.worker });
    }
    return { total, connections: out };
  }

  async closeConnection(id: string): Promise<Record<string, unknown>> {
    const m = /^([0-9]{1,6})\.([0-9]{1,15})$/.exec(id);
    const worker = m === null ? undefined : cluster.workers?.[m[1]!];
    if (m === null || worker === undefined) throw new ApiError(404, 'TWP_ADMIN_UNKNOWN_CONNECTION', `no live connection ${JSON.stringify(id)} (ids are WORKER.CONN with --workers)`);
    const a = await this.ask(worker, 'closeConnection', [m[2]!]);
    if (a.error !== undefined) throw a.error;
    return { ...(a.value as Record<string, unknown>), id, worker: worker.id };
  }

  async affinity(pool: string, limit: number): Promise<Record<string, unknown>> {
    const answers = await this.all('affinity', [pool, limit]);
    const values = this.values<{ stats: Record<string, number> | null; entries: Record<string, unknown>[] }>(answers, true);
    const stats: Record<string, number> = {};
    for (const v of values) for (const [k, n] of Object.entries(v.stats ?? {})) stats[k] = (stats[k] ?? 0) + n;
    const entries = answers.flatMap((a) => (a.value as { entries: Record<string, unknown>[] }).entries.map((e) => ({ ...e, worker: a.worker }))).slice(0, limit);
    return { pool, stats, entries };
  }

  async migration(query: MigrationQuery): Promise<unknown> {
    const ws = this.workers();
    if (ws.length === 0) throw MIGRATION_OFF;
    // One record for the group (its store is shared): any worker's report is the report.
    const a = await this.ask(ws[0]!, 'migration', [query]);
    if (a.error !== undefined) throw a.error;
    return a.value;
  }
}
