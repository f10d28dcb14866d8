// Readiness and status for the service manager (sd_notify(3)): READY=1 once every listener accepts,
// RELOADING=1 … READY=1 around a SIGHUP reload, STOPPING=1 when draining, STATUS= with the connection
// counts. The same KEY=VALUE lines also go to the twinport that spawned this one for a binary upgrade
// (upgrade.ts), on the descriptor it passed, so both learn of readiness the same way.
//
// NOTIFY_SOCKET is a unix datagram socket, which Node cannot send to (net is stream-only, dgram is
// UDP-only). Each message is handed to systemd's own `systemd-notify --pid=<ours>` instead of a resident
// helper: it ships with every systemd, costs ~8 ms and ~7 MB for the moment it runs, and (systemd ≥ 246)
// waits for the manager to have read the message before it exits, so the message is attributed to the
// service even though the sender is a short-lived child. docs/operations.md has the measurement against
// a resident python3 helper (0.1 ms per message, but 270 ms to start and 14 MB for the process's life).
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';

/** The descriptor on which an upgrading parent waits for READY=1 (or ERROR=…); see upgrade.ts. */
export const UPGRADE_FD_ENV = 'TWINPORT_UPGRADE_FD';

export type NotifyFields = Readonly<Record<string, string | number>>;

export class Notifier {
  private readonly socket: string | undefined;
  private upgradeFd: number | undefined;
  private queue: Promise<void> = Promise.resolve();
  private warned = false;

  /** Set once there is one: the notifier is made before the config (and so the log level) is read. */
  logger: Logger | undefined;

  constructor(logger: Logger | undefined, env: NodeJS.ProcessEnv = process.env) {
    this.logger = logger;
    this.socket = env['NOTIFY_SOCKET'] || undefined;
    const fd = Number(env[UPGRADE_FD_ENV]);
    // Read once: a worker or a later upgrade of ours must not write to our parent's descriptor.
    delete env[UPGRADE_FD_ENV];
    if (Number.isInteger(fd) && fd > 2) this.upgradeFd = fd;
  }

  /** True when someone listens: a service manager, or an upgrading parent. */
  get active(): boolean {
    return this.socket !== undefined || this.upgradeFd !== undefined;
  }

  /** Queued: messages reach the manager in the order they were sent. Never rejects. */
  send(fields: NotifyFields): Promise<void> {
    // READY=1 says which pid serves: after an upgrade, or behind the launcher, it is not the one spawned.
    const all = 'READY' in fields ? { MAINPID: process.pid, ...fields } : fields;
    const lines = Object.entries(all).map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`);
    this.toParent(lines);
    if (this.socket === undefined) return this.queue;
    this.queue = this.queue.then(() => this.toManager(lines));
    return this.queue;
  }

  /** After READY=1 or an error the parent has what it waited for: the descriptor is closed. */
  private toParent(lines: string[]): void {
    const fd = this.upgradeFd;
    if (fd === undefined) return;
    try {
      writeSync(fd, `${lines.join('\n')}\n`);
      if (lines.some((l) => l === 'READY=1' || l.startsWith('ERROR='))) {
        this.upgradeFd = undefined;
        closeSync(fd);
      }
    } catch {
      // The parent is gone: it can no longer be told anything.
      this.upgradeFd = undefined;
    }
  }

  private toManager(lines: string[]): Promise<void> {
    return new Promise((resolve) => {
      const child = spawn('systemd-notify', [`--pid=${process.pid}`, ...lines], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const done = (problem: string | undefined): void => {
        if (problem !== undefined && !this.warned) {
          this.warned = true;
          this.logger?.warn({ notifySocket: this.socket, error: problem }, 'systemd-notify failed: the service manager was not told (logged once)');
        }
        resolve();
      };
      child.on('error', (e) => done(e.message));
      child.on('exit', (code) => done(code === 0 ? undefined : err.trim() || `exit code ${code}`));
    });
  }
}

/** CLOCK_MONOTONIC in µs, which RELOADING=1 carries (MONOTONIC_USEC, systemd ≥ 253 Type=notify-reload). */
export function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}
