// Installed before the rest of the program loads (main.ts imports this first, and the launcher execs
// node so nothing runs before it): a signal that arrives while twinport starts — a process manager's
// reload or upgrade right after start, a cluster primary forwarding one to a worker still booting, a
// `systemctl kill` that reaches every process of the unit — must not kill the process. Node's default for
// SIGHUP and SIGUSR2 is to die (exit by signal); SIGTERM/SIGINT would kill it without a drain.
//
// Until the program sets a handler, SIGHUP and SIGUSR2 are remembered and run once when it does;
// SIGTERM/SIGINT likewise, so an early stop is a graceful one. Commands that set no handler
// (check, inspect, upgrade) call exitOnStopSignals().
export type EarlySignal = 'SIGHUP' | 'SIGUSR2' | 'SIGTERM' | 'SIGINT';

const handlers = new Map<EarlySignal, () => void>();
const pending = new Set<EarlySignal>();

for (const signal of ['SIGHUP', 'SIGUSR2', 'SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    const h = handlers.get(signal);
    if (h === undefined) pending.add(signal);
    else h();
  });
}

// bin/twinport holds the signals sent to it while node starts, and forwards them once told that the
// handlers above are installed. Told once: workers and processes this one spawns have other parents.
const launcher = process.env['TWINPORT_LAUNCHER_PID'];
delete process.env['TWINPORT_LAUNCHER_PID'];
if (launcher !== undefined && launcher === String(process.ppid)) {
  try {
    process.kill(process.ppid, 'SIGUSR1');
  } catch {
    // The launcher is gone: nothing holds signals for us.
  }
  // A launcher killed outright (SIGKILL cannot be forwarded) would leave node running with nobody to
  // signal it by the pid that was started: node stops too, gracefully (SIGTERM to itself).
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, 'SIGTERM');
  }, 1000);
  watch.unref();
}

/**
 * Sets what `signal` does from now on; one received before runs it once, on the next turn of the event
 * loop (the caller finishes wiring first).
 */
export function setSignalHandler(signal: EarlySignal, h: () => void): void {
  handlers.set(signal, h);
  if (pending.delete(signal)) setImmediate(() => handlers.get(signal)?.());
}

/** Like setSignalHandler, but one received before is dropped (the cluster primary's forwarding). */
export function replaceSignalHandler(signal: EarlySignal, h: () => void): void {
  handlers.set(signal, h);
  pending.delete(signal);
}

export const setHangupHandler = (h: () => void): void => setSignalHandler('SIGHUP', h);
export const replaceHangupHandler = (h: () => void): void => replaceSignalHandler('SIGHUP', h);

/** For commands that do not serve: SIGTERM/SIGINT end them as Node's defaults would (128 + signal). */
export function exitOnStopSignals(): void {
  setSignalHandler('SIGTERM', () => process.exit(143));
  setSignalHandler('SIGINT', () => process.exit(130));
}
