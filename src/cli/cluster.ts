// `--workers N`: N proxy processes sharing the listeners through node:cluster. The primary holds the
// listening sockets (primary-sockets.ts), supervises and speaks to the service manager:
// - SIGHUP: a change the workers can apply in place (routes, pools, timeouts…) is forwarded, each worker
//   reloads the file itself (one validation error message per worker, the old config stays everywhere);
//   a change they cannot (io_engine, the set of listener binds), or `twinport reload --restart-workers`,
//   replaces the workers one at a time (rolling restart): a new worker is ready before an old one stops
//   accepting and drains, so never fewer than N accept;
// - SIGUSR2: binary upgrade of the whole cluster (upgrade.ts): the new primary gets the sockets;
// - SIGTERM/SIGINT: each worker drains; a worker that dies unexpectedly is replaced.
import cluster, { type Worker } from 'node:cluster';
import { existsSync, rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError, formatIssue, loadConfigFile } from '../config/load.js';
import type { TwinportConfig } from '../config/types.js';
import { replaceHangupHandler, setSignalHandler } from './early-signals.js';
import { guardHandoffs } from './handoff-guard.js';
import { describeError, isWorkerReport, reclaimAdmin, releaseAdmin, STATUS_INTERVAL_MS, type AdminHandover } from './lifecycle.js';
import { monotonicUsec, type Notifier } from './notify.js';
import { removePidFileIfOurs, restartWorkersRequestFile, writePidFile, writeReloadResult, writeUpgradeResult } from './pid-file.js';
import { fdName, type PrimarySockets } from './primary-sockets.js';
import { spawnUpgrade } from './upgrade.js';

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
  readonly config: TwinportConfig;
  readonly configFile: string;
  readonly sockets: PrimarySockets;
  readonly pidFile?: string;
  /** The arguments a binary upgrade runs the new primary with (ours). */
  readonly upgradeArgs: readonly string[];
  readonly adminForUpgrade?: AdminHandover;
}

/** Minimum time between two forks of a replacement, so a worker that crashes at start cannot spin. */
const RESPAWN_BACKOFF_MS = 1000;
/** After an upgrade (rr), how long the workers keep accepting what the primary had queued for them. */
const HANDOVER_QUEUE_MS = 250;
/** A rolling restart gives up on a new worker that is not ready in this time (the old one stays). */
const WORKER_READY_TIMEOUT_MS = 30_000;

/** Why the workers must be replaced rather than reloaded, or undefined when a reload applies in place. */
export function restartReason(running: TwinportConfig, next: TwinportConfig): string | undefined {
  if (running.ioEngine !== next.ioEngine) return `io_engine ${running.ioEngine} → ${next.ioEngine}`;
  const binds = (c: TwinportConfig): string => c.listeners.map((l) => l.bind.text).sort().join(' ');
  if (binds(running) !== binds(next)) return `listeners ${binds(running)} → ${binds(next)}`;
  return undefined;
}

/** A worker that lost its IPC channel is exiting anyway: SIGTERM covers the gap. */
function tellRetire(worker: Worker): void {
  if (worker.isConnected()) worker.send({ twinport: 'retire' }, undefined, { keepOpen: false }, () => {});
  else worker.process.kill('SIGTERM');
}

export function runPrimary(opts: ClusterOptions): void {
  cluster.schedulingPolicy = opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const { logger, notifier } = opts;
  let running = opts.config;
  let stopping = false;
  let upgrading = false;
  let lastRespawn = 0;
  let drainStarted = 0;
  /** Workers that reported ready and still accept, with their open connections as last reported. */
  const ready = new Map<number, number>();
  /** Workers told to drain (rolling restart, upgrade): their exit is expected, not replaced. */
  const retiring = new Set<number>();
  const readyWaiters = new Map<number, (ok: boolean) => void>();
  let announced = false;
  /** Workers whose answer to the current SIGHUP is awaited; READY=1 follows the last one. */
  let reloading: { waiting: Set<number>; failed: boolean } | undefined;
  let rolling = false;

  const status = (state: string): string => {
    const conns = [...ready.values()].reduce((a, b) => a + b, 0);
    return `${state}: ${ready.size} of ${opts.workers} workers accepting, ${conns} connections`;
  };
  const reloadDone = (ok: boolean, detail: string): void => {
    void notifier.send({ READY: 1, STATUS: status(ok ? 'reloaded' : 'reload failed, running config kept') });
    if (opts.pidFile !== undefined) writeReloadResult(opts.pidFile, { ok, detail });
  };
  const reloadAnswered = (id: number, ok: boolean): void => {
    if (reloading === undefined || !reloading.waiting.delete(id)) return;
    if (!ok) reloading.failed = true;
    if (reloading.waiting.size > 0) return;
    const failed = reloading.failed;
    reloading = undefined;
    reloadDone(!failed, failed ? 'a worker kept its running config: see its log' : 'reloaded in place by every worker');
  };
  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !retiring.has(w.id));

  const fork = (): Worker => {
    const worker = cluster.fork();
    // rr: the connections handed to a worker that dies before acknowledging them are closed, not leaked.
    if (opts.scheduling === 'rr') {
      guardHandoffs(worker, (count) => logger.warn({ worker: worker.process.pid, connections: count }, 'closed connections handed to a dead worker'));
    }
    worker.on('message', (m: unknown) => {
      if (!isWorkerReport(m)) return;
      if (m.twinport === 'ready') {
        ready.set(worker.id, 0);
        logger.info({ worker: worker.process.pid, accepting: ready.size }, 'worker ready');
        readyWaiters.get(worker.id)?.(true);
        if (!announced && ready.size >= opts.workers) {
          announced = true;
          if (opts.pidFile !== undefined) writePidFile(opts.pidFile);
          void notifier.send({ READY: 1, STATUS: status('serving') });
        }
      } else if (m.twinport === 'connections') {
        if (ready.has(worker.id)) ready.set(worker.id, m.active);
      } else reloadAnswered(worker.id, m.ok);
    });
    worker.on('exit', () => {
      ready.delete(worker.id);
      readyWaiters.get(worker.id)?.(false);
      reloadAnswered(worker.id, true);
    });
    return worker;
  };

  /** Resolves true once `worker` reported ready, false when it exits or times out first. */
  const whenReady = (worker: Worker): Promise<boolean> =>
    new Promise((resolve) => {
      if (ready.has(worker.id)) return resolve(true);
      const timer = setTimeout(() => done(false), WORKER_READY_TIMEOUT_MS);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        readyWaiters.delete(worker.id);
        resolve(ok);
      };
      readyWaiters.set(worker.id, done);
    });

  /** A worker stops accepting and drains; its exit is expected. */
  const retire = (worker: Worker, why: string): void => {
    retiring.add(worker.id);
    ready.delete(worker.id);
    logger.info({ worker: worker.process.pid, accepting: ready.size, why }, 'worker retiring');
    tellRetire(worker);
  };

  /** Replaces every worker, one at a time, each new one ready before an old one drains. */
  const roll = async (why: string): Promise<boolean> => {
    rolling = true;
    const old = live();
    logger.info({ workers: old.length, why }, 'rolling restart');
    try {
      for (const w of old) {
        if (stopping || upgrading) return false;
        const next = fork();
        if (!(await whenReady(next))) {
          logger.error({ worker: next.process.pid, kept: w.process.pid }, 'rolling restart stopped: a new worker did not become ready; the remaining workers keep their config');
          if (!next.isDead()) retire(next, 'not ready in time');
          return false;
        }
        if (!w.isDead()) retire(w, why);
      }
      logger.info({ workers: live().length, accepting: ready.size }, 'rolling restart done');
      return true;
    } finally {
      rolling = false;
    }
  };

  for (let i = 0; i < opts.workers; i++) fork();
  logger.info({ workers: opts.workers, scheduling: opts.scheduling }, 'primary started');

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        if (opts.pidFile !== undefined) removePidFileIfOurs(opts.pidFile);
        logger.info({ drainMs: Math.round(performance.now() - drainStarted) }, 'all workers stopped');
        process.exit(0);
      }
      return;
    }
    if (retiring.delete(worker.id)) {
      logger.info({ worker: worker.process.pid, code, signal }, 'worker retired');
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
  /** handOver: after an upgrade the new primary is the service (no STOPPING=1 for the manager). */
  const stop = (signal: NodeJS.Signals | 'SIGUSR2', handOver = false): void => {
    if (stopping) return;
    stopping = true;
    drainStarted = performance.now();
    logger.info({ signal }, 'primary stopping workers');
    if (!handOver) {
      void notifier.send({ STOPPING: 1, STATUS: status('draining') });
      each('SIGTERM');
      return;
    }
    // rr: stop this process's accepting first, let the workers take what it queued, then retire them.
    if (opts.scheduling === 'rr') opts.sockets.stopAcceptingHere();
    setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) if (w !== undefined) tellRetire(w);
    }, opts.scheduling === 'rr' ? HANDOVER_QUEUE_MS : 0);
  };
  setSignalHandler('SIGTERM', () => stop('SIGTERM'));
  setSignalHandler('SIGINT', () => stop('SIGINT'));

  replaceHangupHandler(() => {
    if (stopping || upgrading || rolling || reloading !== undefined) {
      logger.warn({ stopping, upgrading, rolling, reloading: reloading !== undefined }, 'SIGHUP ignored: the previous reload, restart or upgrade is still going on');
      return;
    }
    void notifier.send({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec() });
    const requested = opts.pidFile !== undefined && existsSync(restartWorkersRequestFile(opts.pidFile));
    if (opts.pidFile !== undefined) rmSync(restartWorkersRequestFile(opts.pidFile), { force: true });
    let next: TwinportConfig | undefined;
    try {
      next = loadConfigFile(opts.configFile);
    } catch (e) {
      // Each worker reads the file too and logs the same errors; the running config stays everywhere.
      if (!requested) {
        reloading = { waiting: new Set(live().map((w) => w.id)), failed: false };
        each('SIGHUP');
        return;
      }
      const errors = e instanceof ConfigError ? e.issues.map(formatIssue) : [describeError(e)];
      logger.error({ file: opts.configFile, errors }, 'restart of the workers refused: the config has errors');
      reloadDone(false, errors.join('; '));
      return;
    }
    const why = restartReason(running, next) ?? (requested ? 'restart requested (twinport reload --restart-workers)' : undefined);
    if (why === undefined) {
      reloading = { waiting: new Set(live().map((w) => w.id)), failed: false };
      for (const w of live()) w.process.kill('SIGHUP');
      return;
    }
    const target = next;
    void (async () => {
      try {
        // New binds are opened by the primary before any new worker looks for them; removed ones are
        // forgotten so new workers do not refuse a socket nobody binds (old workers serve them until retired).
        await opts.sockets.ensure(target.listeners, false);
        opts.sockets.retain(target.listeners);
      } catch (e) {
        logger.error({ file: opts.configFile, err: describeError(e) }, 'reload failed: keeping the running config and workers');
        reloadDone(false, describeError(e));
        return;
      }
      const ok = await roll(why);
      if (ok) running = target;
      reloadDone(ok, ok ? `workers replaced: ${why}` : 'rolling restart stopped: see the log');
    })();
  });

  setSignalHandler('SIGUSR2', () => {
    if (stopping || upgrading || rolling) {
      logger.warn({ stopping, upgrading, rolling }, 'SIGUSR2 ignored: already stopping, upgrading or restarting workers');
      return;
    }
    upgrading = true;
    const sockets = opts.sockets.list().map((s) => ({ fd: s.fd, name: fdName(s.name) }));
    logger.info({ sockets }, 'upgrade: starting the installed twinport (primary)');
    void (async () => {
      await releaseAdmin(opts.adminForUpgrade, logger);
      return spawnUpgrade({ logger, sockets, args: opts.upgradeArgs });
    })().then(async (outcome) => {
      if (!outcome.ok) {
        await reclaimAdmin(opts.adminForUpgrade, logger);
        upgrading = false;
        logger.error({ newPid: outcome.pid, reason: outcome.reason, ms: Math.round(outcome.ms) }, 'upgrade failed: this process keeps serving');
        if (opts.pidFile !== undefined) writeUpgradeResult(opts.pidFile, { ok: false, oldPid: process.pid, reason: outcome.reason });
        return;
      }
      logger.info({ newPid: outcome.pid, readyMs: outcome.ms }, 'upgrade: new process ready, this one stops accepting and drains');
      if (opts.pidFile !== undefined) writeUpgradeResult(opts.pidFile, { ok: true, oldPid: process.pid, newPid: outcome.pid, readyMs: outcome.ms });
      stop('SIGUSR2', true);
    });
  });

  if (notifier.active) {
    const timer = setInterval(() => {
      if (!stopping && announced && reloading === undefined && !rolling) void notifier.send({ STATUS: status('serving') });
    }, STATUS_INTERVAL_MS);
    timer.unref();
  }
}
