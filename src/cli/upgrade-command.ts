// `twinport upgrade`: signals a running twinport to upgrade itself (SIGUSR2, upgrade.ts) and, given its
// --pid-file, waits for the outcome the running process records beside it.
import { rmSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { readPidFile, readReloadResult, readUpgradeResult, reloadResultFile, restartWorkersRequestFile, upgradeResultFile } from './pid-file.js';

const POLL_MS = 50;

export async function runUpgradeCommand(opts: { pidFile?: string; pid?: string; timeout: string }): Promise<{ code: number; message: string }> {
  const pid = opts.pid !== undefined ? Number(opts.pid) : opts.pidFile !== undefined ? readPidFile(opts.pidFile) : undefined;
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) {
    return { code: 1, message: opts.pidFile !== undefined ? `no pid in ${opts.pidFile}: is twinport running with --pid-file ${opts.pidFile}?` : 'give --pid-file FILE or --pid PID' };
  }
  if (opts.pidFile !== undefined) rmSync(upgradeResultFile(opts.pidFile), { force: true });
  try {
    process.kill(pid, 'SIGUSR2');
  } catch (e) {
    return { code: 1, message: `cannot signal pid ${pid}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
  if (opts.pidFile === undefined) return { code: 0, message: `sent SIGUSR2 to ${pid}; the outcome is in its log ("upgrade: new process ready" or "upgrade failed")` };
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  while (Date.now() < deadline) {
    const r = readUpgradeResult(opts.pidFile);
    if (r !== undefined) {
      return r.ok
        ? { code: 0, message: `upgraded: ${r.oldPid} → ${r.newPid} (new process ready after ${Math.round(r.readyMs)} ms; ${r.oldPid} drains and exits)` }
        : { code: 1, message: `upgrade failed, ${r.oldPid} keeps serving: ${r.reason}` };
    }
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
  return { code: 1, message: `no outcome within ${opts.timeout} s; see the log of ${pid}` };
}

/** `twinport reload`: SIGHUP, optionally asking a cluster to replace its workers, and wait for the outcome. */
export async function runReloadCommand(opts: { pidFile: string; restartWorkers?: boolean; timeout: string }): Promise<{ code: number; message: string }> {
  const pid = readPidFile(opts.pidFile);
  if (pid === undefined) return { code: 1, message: `no pid in ${opts.pidFile}: is twinport running with --pid-file ${opts.pidFile}?` };
  rmSync(reloadResultFile(opts.pidFile), { force: true });
  if (opts.restartWorkers === true) writeFileSync(restartWorkersRequestFile(opts.pidFile), `${Date.now()}\n`);
  try {
    process.kill(pid, 'SIGHUP');
  } catch (e) {
    rmSync(restartWorkersRequestFile(opts.pidFile), { force: true });
    return { code: 1, message: `cannot signal pid ${pid}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  while (Date.now() < deadline) {
    const r = readReloadResult(opts.pidFile);
    if (r !== undefined) return { code: r.ok ? 0 : 1, message: `${r.ok ? 'reloaded' : 'reload failed'}: ${r.detail}` };
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
  return { code: 1, message: `no outcome within ${opts.timeout} s; see the log of ${pid}` };
}
