// `--workers N`: N proxy processes sharing the listeners through node:cluster. The primary only supervises:
// it forwards SIGHUP (each worker reloads the file itself, so one validation error message per worker is
// logged and the old config stays everywhere) and SIGTERM/SIGINT (each worker drains), and replaces a
// worker that dies unexpectedly so the count never reaches zero while the listeners are open.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { replaceHangupHandler } from './early-signals.js';
import { guardHandoffs } from './handoff-guard.js';

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
}

/** Minimum time between two forks of a replacement, so a worker that crashes at start cannot spin. */
const RESPAWN_BACKOFF_MS = 1000;

export function runPrimary(opts: ClusterOptions): void {
  cluster.schedulingPolicy = opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const { logger } = opts;
  let stopping = false;
  let lastRespawn = 0;
  const fork = (): Worker => {
    const worker = cluster.fork();
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
    each('SIGTERM');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  replaceHangupHandler(() => each('SIGHUP'));
}
