// Binary upgrade (SIGUSR2, `twinport upgrade`), nginx's model: the running process spawns the installed
// twinport with its listening sockets inherited as descriptors 3… (the sd_listen_fds convention, so the
// new process takes them exactly as it would take systemd's: listen-fds.ts), waits for it to say READY=1
// on a descriptor of its own (notify.ts), and only then stops accepting and drains. The listening
// sockets are never closed in between: connections queue in the kernel's backlog and whichever process
// accepts next serves them. If the new process fails (bad config, broken binary, no READY in time), the
// running one keeps serving and logs why.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { UPGRADE_FD_ENV } from './notify.js';

/** How long the new process may take to be ready before the upgrade is abandoned. */
export const UPGRADE_READY_TIMEOUT_MS = 60_000;

/** The launcher as it was invoked (bin/twinport exports it), so a symlink to a new version is followed. */
export function installedCommand(env: NodeJS.ProcessEnv = process.env): string {
  return env['TWINPORT_BIN'] || fileURLToPath(new URL('../../../bin/twinport', import.meta.url));
}

export interface HandedSocket {
  readonly fd: number;
  readonly name: string;
}

export interface UpgradeRequest {
  readonly logger: Logger;
  readonly sockets: readonly HandedSocket[];
  /** The arguments the new process runs with: ours. */
  readonly args: readonly string[];
  /** Extra environment for the new process (the state hand-off file). */
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

export type UpgradeOutcome =
  | { readonly ok: true; readonly pid: number; readonly ms: number }
  | { readonly ok: false; readonly pid: number | undefined; readonly reason: string; readonly ms: number };

/**
 * Spawns the new process and resolves once it is ready or has failed; never rejects. The new process is
 * detached (its own session): it outlives us and a terminal's ^C for our group is not its business.
 */
export function spawnUpgrade(req: UpgradeRequest): Promise<UpgradeOutcome> {
  const started = performance.now();
  const command = installedCommand();
  const n = req.sockets.length;
  const readyFd = 3 + n;
  // LISTEN_PID must be the new process's own pid, known only once it runs: sh sets it and execs the
  // launcher, which execs node, all in the same pid.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...req.env,
    LISTEN_FDS: String(n),
    LISTEN_FDNAMES: req.sockets.map((s) => s.name).join(':'),
    [UPGRADE_FD_ENV]: String(readyFd),
  };
  delete env['LISTEN_PID'];
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh', command, ...req.args], {
      env,
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', ...req.sockets.map((s) => s.fd), 'pipe'],
    });
  } catch (e) {
    return Promise.resolve({ ok: false, pid: undefined, reason: `could not spawn ${command}: ${(e as Error).message}`, ms: performance.now() - started });
  }
  const ms = (): number => Math.round(performance.now() - started);
  req.logger.info({ command, args: req.args, pid: child.pid, sockets: req.sockets }, 'upgrade: new process spawned');
  return new Promise((resolve) => {
    let settled = false;
    const settle = (o: UpgradeOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      const pipe = child.stdio[readyFd];
      pipe?.removeAllListeners();
      pipe?.on('error', () => {});
      pipe?.destroy();
      child.unref();
      resolve(o);
    };
    let errorText = '';
    let pipeClosed = false;
    let exited: string | undefined;
    // The exit may be seen before the last line of the pipe has been read: the failure waits for both.
    const failIfDone = (): void => {
      if (exited === undefined || !pipeClosed) return;
      settle({ ok: false, pid: child.pid, reason: `the new process exited (${exited}) before it was ready${errorText ? `: ${errorText}` : ''}`, ms: ms() });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      exited = signal ?? `code ${code}`;
      failIfDone();
    };
    child.on('exit', onExit);
    child.on('error', (e) => settle({ ok: false, pid: child.pid, reason: `could not run ${command}: ${e.message}`, ms: ms() }));
    const timeoutMs = req.timeoutMs ?? UPGRADE_READY_TIMEOUT_MS;
    const timer = setTimeout(() => {
      // It may already serve some sockets: SIGTERM lets it drain what it accepted.
      child.kill('SIGTERM');
      settle({ ok: false, pid: child.pid, reason: `the new process was not ready within ${timeoutMs} ms (sent SIGTERM)`, ms: ms() });
    }, timeoutMs);
    const pipe = child.stdio[readyFd] as Readable | null | undefined;
    if (pipe === null || pipe === undefined) {
      settle({ ok: false, pid: child.pid, reason: 'no readiness channel to the new process', ms: ms() });
      return;
    }
    pipe.on('error', () => {});
    pipe.on('close', () => {
      pipeClosed = true;
      failIfDone();
    });
    // The pid that serves: bin/twinport stays as node's parent while it runs, so not the spawned pid.
    let mainPid = child.pid!;
    createInterface({ input: pipe }).on('line', (line) => {
      if (line.startsWith('MAINPID=')) mainPid = Number(line.slice('MAINPID='.length)) || mainPid;
      else if (line === 'READY=1') settle({ ok: true, pid: mainPid, ms: ms() });
      else if (line.startsWith('ERROR=')) errorText = line.slice('ERROR='.length);
    });
  });
}
