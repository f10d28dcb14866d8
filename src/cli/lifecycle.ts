// The signals of one proxy process (a single process, or a cluster worker): SIGTERM/SIGINT drain and exit
// 0, SIGHUP reloads the file (the running config stays on error), SIGUSR2 upgrades the binary
// (upgrade.ts). What happens is told to the service manager (notify.ts) or, in a worker, to the primary,
// which tells the manager for the whole cluster (cluster.ts).
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError, formatIssue, loadConfigFile } from '../config/load.js';
import type { TwinportConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { setHangupHandler, setSignalHandler } from './early-signals.js';
import { monotonicUsec, type Notifier } from './notify.js';
import { rmSync } from 'node:fs';
import { removePidFileIfOurs, restartWorkersRequestFile, writePidFile, writeReloadResult, writeUpgradeResult } from './pid-file.js';
import { removeStateFile, STATE_FILE_ENV, writeStateFile } from './state-handoff.js';
import { spawnUpgrade } from './upgrade.js';

/** How often STATUS= carries fresh connection counts (each costs one short systemd-notify run). */
export const STATUS_INTERVAL_MS = 5000;

/** See stop() in wireLifecycle. */
const RETIRED_WORKER_GRACE_MS = 300;

/** Messages a worker sends the primary (cluster.ts) about its own lifecycle. */
export type WorkerReport =
  | { readonly twinport: 'ready' }
  | { readonly twinport: 'reloaded'; readonly ok: boolean }
  | { readonly twinport: 'connections'; readonly active: number };

export function isWorkerReport(m: unknown): m is WorkerReport {
  return typeof m === 'object' && m !== null && typeof (m as { twinport?: unknown }).twinport === 'string';
}

/** SHA-256 of the config file's text, first 16 hex digits (`/status`, metric twinport_config_info). */
export function configHash(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
  } catch {
    return undefined;
  }
}

/**
 * The admin listener's address is not among the sockets an upgrade passes on: the old process closes
 * its admin listener just before it starts the new one (which binds it), and opens it again when the
 * upgrade fails. Only the admin API is unreachable meanwhile, never a data listener.
 */
export interface AdminHandover {
  release(): Promise<void>;
  reclaim(): Promise<void>;
}

export function describeError(e: unknown): string {
  if (e instanceof ConfigError) return e.issues.map(formatIssue).join('\n') || e.message;
  if (e instanceof TwinportError) return `${e.code}: ${e.message}`;
  return String((e as Error)?.stack ?? e);
}

export function statusText(runtime: ProxyRuntime, state: string): string {
  const per = Object.entries(runtime.connectionsByListener()).map(([name, n]) => `${name} ${n}`);
  return `${state}: ${runtime.activeConnections} connections${per.length > 1 ? ` (${per.join(', ')})` : ''}`;
}

export interface LifecycleOptions {
  readonly runtime: ProxyRuntime;
  readonly logger: Logger;
  readonly configFile: string | undefined;
  readonly onExit: () => Promise<void>;
  /** A reloaded `log.level` applies unless --log-level fixed it for the process's life. */
  readonly levelFromConfig: boolean;
  readonly notifier: Notifier;
  /** The arguments a binary upgrade starts the new process with (ours); undefined: SIGUSR2 is refused. */
  readonly upgradeArgs?: readonly string[];
  readonly pidFile?: string;
  readonly adminForUpgrade?: AdminHandover;
}

/** Call once the runtime listens: READY=1, then a periodic STATUS=. */
export function wireLifecycle(o: LifecycleOptions): void {
  const { runtime, logger, configFile, notifier } = o;
  const report = (m: WorkerReport): void => {
    if (cluster.isWorker && process.connected) process.send?.(m);
  };
  let stopping = false;
  let upgrading = false;
  /**
   * handOver: after an upgrade the new process is the service. The manager must not hear STOPPING=1
   * from us, and connections accepted here but not yet spliced are still served (runtime.shutdown).
   */
  const stop = (signal: string, handOver = false): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, connections: runtime.activeConnections }, 'shutting down');
    if (!handOver) void notifier.send({ STOPPING: 1, STATUS: statusText(runtime, 'draining') });
    const drainStarted = performance.now();
    void runtime
      .shutdown({ handOver })
      .then(o.onExit)
      // A retired worker stays a moment after its drain: a connection the primary handed it just before
      // it stopped accepting is still on its way over IPC, and is handed back to another worker only if
      // this one answers; once it has exited, the primary closes it (handoff-guard.ts), a reset.
      .then(() => (handOver && cluster.isWorker ? new Promise((r) => setTimeout(r, RETIRED_WORKER_GRACE_MS)) : undefined))
      .then(() => {
        if (o.pidFile !== undefined) removePidFileIfOurs(o.pidFile);
        const drainMs = Math.round(performance.now() - drainStarted);
        const migration = runtime.migrationRecordStats();
        logger.info(
          { closes: runtime.stats.closes, acceptErrors: runtime.stats.acceptErrors, affinity: runtime.affinityStats(), ...(migration !== undefined && { migration }), drainMs },
          'stopped',
        );
        process.exit(0);
      });
  };
  const reload = async (file: string): Promise<boolean> => {
    void notifier.send({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec() });
    let next: TwinportConfig;
    try {
      next = loadConfigFile(file);
    } catch (e) {
      const issues = e instanceof ConfigError ? e.issues.map(formatIssue) : [describeError(e)];
      runtime.noteReloadFailure(issues);
      logger.error({ file, errors: issues }, 'reload failed: keeping the running config');
      return false;
    }
    if (JSON.stringify(next.admin ?? null) !== JSON.stringify(runtime.currentConfig.admin ?? null)) {
      logger.warn({ file }, 'admin changes need a restart: keeping the running admin listener');
    }
    const hash = configHash(file);
    try {
      await runtime.reload(next);
      runtime.configHash = hash;
    } catch (e) {
      logger.error({ file, err: describeError(e) }, 'reload failed: keeping the running config');
      return false;
    }
    if (o.levelFromConfig) logger.level = next.log.level;
    logger.info({ file }, 'reloaded');
    return true;
  };
  setHangupHandler(() => {
    if (configFile === undefined) {
      logger.warn('SIGHUP ignored: the demo has no config file to reload');
      return;
    }
    // One process has no workers to replace: a --restart-workers request is a plain reload here.
    if (o.pidFile !== undefined) rmSync(restartWorkersRequestFile(o.pidFile), { force: true });
    void reload(configFile).then((ok) => {
      report({ twinport: 'reloaded', ok });
      if (o.pidFile !== undefined) writeReloadResult(o.pidFile, { ok, detail: ok ? 'reloaded in place' : 'the running config is kept: see the log' });
      void notifier.send({ READY: 1, STATUS: statusText(runtime, ok ? 'reloaded' : 'reload failed, running config kept') });
    });
  });
  const upgrade = async (): Promise<void> => {
    if (o.upgradeArgs === undefined) {
      logger.warn('SIGUSR2 ignored: the demo cannot be upgraded (its backends live in this process)');
      return;
    }
    if (stopping || upgrading) {
      logger.warn({ stopping, upgrading }, 'SIGUSR2 ignored: already stopping or upgrading');
      return;
    }
    const sockets = runtime.listeningSockets();
    if (sockets === undefined) {
      logger.error('upgrade failed: the listening descriptors are not available in this process');
      return;
    }
    upgrading = true;
    logger.info({ connections: runtime.activeConnections }, 'upgrade: starting the installed twinport');
    let stateFile: string | undefined;
    try {
      stateFile = writeStateFile(runtime.exportState());
    } catch (e) {
      logger.warn({ err: (e as Error).message }, 'upgrade: state not handed over (health and affinity start over in the new process)');
    }
    await releaseAdmin(o.adminForUpgrade, logger);
    const outcome = await spawnUpgrade({
      logger,
      sockets,
      args: o.upgradeArgs,
      ...(stateFile !== undefined && { env: { [STATE_FILE_ENV]: stateFile } }),
    });
    if (!outcome.ok) {
      if (stateFile !== undefined) removeStateFile(stateFile);
      await reclaimAdmin(o.adminForUpgrade, logger);
      upgrading = false;
      logger.error({ newPid: outcome.pid, reason: outcome.reason, ms: Math.round(outcome.ms) }, 'upgrade failed: this process keeps serving');
      if (o.pidFile !== undefined) writeUpgradeResult(o.pidFile, { ok: false, oldPid: process.pid, reason: outcome.reason });
      return;
    }
    logger.info({ newPid: outcome.pid, readyMs: outcome.ms, connections: runtime.activeConnections }, 'upgrade: new process ready, this one stops accepting and drains');
    if (o.pidFile !== undefined) writeUpgradeResult(o.pidFile, { ok: true, oldPid: process.pid, newPid: outcome.pid, readyMs: outcome.ms });
    stop('SIGUSR2', true);
  };
  setSignalHandler('SIGTERM', () => stop('SIGTERM'));
  setSignalHandler('SIGINT', () => stop('SIGINT'));
  // The primary retires a worker whose place another takes (rolling restart, binary upgrade): a drain
  // that serves what it accepted, like an upgraded process's (no connection closed for the stop).
  if (cluster.isWorker) {
    process.on('message', (m: unknown) => {
      if (typeof m === 'object' && m !== null && (m as { twinport?: unknown }).twinport === 'retire') stop('retire', true);
    });
  }
  // A worker ignores SIGUSR2 (`systemctl kill` signals every process of the unit): the primary upgrades.
  setSignalHandler('SIGUSR2', cluster.isWorker ? () => {} : () => void upgrade());

  if (o.pidFile !== undefined) writePidFile(o.pidFile);
  report({ twinport: 'ready' });
  void notifier.send({ READY: 1, STATUS: statusText(runtime, 'serving') });
  if (notifier.active || cluster.isWorker) {
    const timer = setInterval(() => {
      if (stopping) return;
      report({ twinport: 'connections', active: runtime.activeConnections });
      void notifier.send({ STATUS: statusText(runtime, 'serving') });
    }, STATUS_INTERVAL_MS);
    timer.unref();
  }
}

export async function releaseAdmin(admin: AdminHandover | undefined, logger: Logger): Promise<void> {
  if (admin === undefined) return;
  try {
    await admin.release();
  } catch (e) {
    logger.warn({ err: describeError(e) }, 'upgrade: the admin listener did not close');
  }
}

export async function reclaimAdmin(admin: AdminHandover | undefined, logger: Logger): Promise<void> {
  if (admin === undefined) return;
  try {
    await admin.reclaim();
  } catch (e) {
    logger.error({ err: describeError(e) }, 'the admin listener could not be opened again after the failed upgrade');
  }
}
