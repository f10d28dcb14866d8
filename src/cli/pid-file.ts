// `--pid-file FILE`: the pid of the process serving now, written once it is ready (after a binary
// upgrade, by the new process). Beside it, FILE.upgrade holds the outcome of the last upgrade, which
// `twinport upgrade --pid-file FILE` waits for.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

export type UpgradeResult =
  | { readonly ok: true; readonly oldPid: number; readonly newPid: number; readonly readyMs: number }
  | { readonly ok: false; readonly oldPid: number; readonly reason: string };

/** Written whole or not at all (rename), so a reader never sees half a pid. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
}

export function writePidFile(file: string): void {
  writeAtomically(file, `${process.pid}\n`);
}

export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** At exit: only while it still names us (after an upgrade it names the new process). */
export function removePidFileIfOurs(file: string): void {
  if (readPidFile(file) === process.pid) rmSync(file, { force: true });
}

export const upgradeResultFile = (pidFile: string): string => `${pidFile}.upgrade`;

export function writeUpgradeResult(pidFile: string, result: UpgradeResult): void {
  writeAtomically(upgradeResultFile(pidFile), `${JSON.stringify(result)}\n`);
}

export function readUpgradeResult(pidFile: string): UpgradeResult | undefined {
  try {
    return JSON.parse(readFileSync(upgradeResultFile(pidFile), 'utf8')) as UpgradeResult;
  } catch {
    return undefined;
  }
}

/** `twinport reload --restart-workers` leaves this beside the pid file before its SIGHUP. */
export const restartWorkersRequestFile = (pidFile: string): string => `${pidFile}.restart-workers`;
export const reloadResultFile = (pidFile: string): string => `${pidFile}.reload`;

export interface ReloadResult {
  readonly ok: boolean;
  readonly detail: string;
}

export function writeReloadResult(pidFile: string, result: ReloadResult): void {
  writeAtomically(reloadResultFile(pidFile), `${JSON.stringify(result)}\n`);
}

export function readReloadResult(pidFile: string): ReloadResult | undefined {
  try {
    return JSON.parse(readFileSync(reloadResultFile(pidFile), 'utf8')) as ReloadResult;
  } catch {
    return undefined;
  }
}
