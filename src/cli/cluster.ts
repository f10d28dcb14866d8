// `--workers N`: N proxy processes sharing the listeners through node:cluster. The primary only supervises:
// it forwards SIGHUP (each worker reloads the file itself, so one validation error message per worker is
// logged and the old config stays everywhere) and SIGTERM/SIGINT (each worker drains), and replaces a
// worker that dies unexpectedly so the count never reaches zero while the listeners are open.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { replaceHangupHandler, setSignalHandler } from './early-signals.js';
import { guardHandoffs } from './handoff-guard.js';
import { isWorkerReport, STATUS_INTERVAL_MS } from './lifecycle.js';
import { monotonicUsec, type Notifier } from './notify.js';

export type SchedulingPolicy = 'rr' | 'none';

export interface ClusterOptions {
  readonly workers: number;
  /**
   * rr: the primary accepts and hands each connection to a worker (even spread, one IPC hop per
   * connection). none: every worker accepts on the shared socket itself (no hop; the kernel decides,
   * which can be uneven under bursts). docs/benchmarks.md has the measurement behind the default.
   */
  readonly scheduling: SchedulingPolicy;
  readonly logger: Logger;
  /** The primary speaks to the service manager for the cluster: workers report to it over IPC. */
  readonly notifier: Notifier;
}

/** Minimum time between two forks of a replacement, so a worker that crashes at start cannot spin. */
const RESPAWN_BACKOFF_MS = 1000;

export function runPrimary(opts: ClusterOptions): void {
  cluster.schedulingPolicy = opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const { logger, notifier } = opts;
  let stopping = false;
  let lastRespawn = 0;
  /** Workers that reported ready, with their open connections as last reported. */
  const ready = new Map<number, number>();
  let announced = false;
  /** Workers whose answer to the current SIGHUP is awaited; READY=1 follows the last one. */
  let reloading: Set<number> | undefined;
  const status = (state: string): string => {
    const conns = [...ready.values()].reduce((a, b) => a + b, 0);
    return `${state}: ${ready.size} of ${opts.workers} workers accepting, ${conns} connections`;
  };
  const reloadAnswered = (id: number): void => {
    if (reloading === undefined || !reloading.delete(id) || reloading.size > 0) return;
    reloading = undefined;
    void notifier.send({ READY: 1, STATUS: status('reloaded') });
  };
  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (m: unknown) => {
      if (!isWorkerReport(m)) return;
      if (m.twinport === 'ready') {
        ready.set(worker.id, 0);
        logger.info({ worker: worker.process.pid, accepting: ready.size }, 'worker ready');
        if (!announced && ready.size >= opts.workers) {
          announced = true;
          void notifier.send({ READY: 1, STATUS: status('serving') });
        }
      } else if (m.twinport === 'connections') {
        if (ready.has(worker.id)) ready.set(worker.id, m.active);
      } else reloadAnswered(worker.id);
    });
    worker.on('exit', () => {
      ready.delete(worker.id);
      reloadAnswered(worker.id);
    });
    // rr: the connections handed to a worker that dies before acknowledging them are closed, not leaked.
    if (opts.scheduling === 'rr') {
      guardHandoffs(worker, (count) => logger.warn({ worker: worker.process.pid, connections: count }, 'closed connections handed to a dead worker'));
    }
    return worker;
  };

  for (let i = 0; i < opts.workers; i++) fork();
  logger.info({ workers: opts.workers, scheduling: opts.scheduling }, 'primary started');

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info('all workers stopped');
        process.exit(0);
      }
      return;
    }
    logger.error({ worker: worker.process.pid, code, signal }, 'worker died: replacing it');
    const wait = Math.max(0, lastRespawn + RESPAWN_BACKOFF_MS - Date.now());
    lastRespawn = Date.now() + wait;
    setTimeout(() => {
      if (!stopping) fork();
    }, wait);
  });

  const each = (signal: NodeJS.Signals): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
  };
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'primary stopping workers');
    void notifier.send({ STOPPING: 1, STATUS: status('draining') });
    each('SIGTERM');
  };
  setSignalHandler('SIGTERM', () => stop('SIGTERM'));
  setSignalHandler('SIGINT', () => stop('SIGINT'));
  replaceHangupHandler(() => {
    reloading = new Set(Object.values(cluster.workers ?? {}).flatMap((w) => (w === undefined ? [] : [w.id])));
    void notifier.send({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec() });
    each('SIGHUP');
  });
  if (notifier.active) {
    const timer = setInterval(() => {
      if (!stopping && announced && reloading === undefined) void notifier.send({ STATUS: status('serving') });
    }, STATUS_INTERVAL_MS);
    timer.unref();
  }
}
