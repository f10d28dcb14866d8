// The state a binary upgrade hands over (health up/down per server, learned TLS affinity per pool) as a
// JSON file the old process writes before spawning the new one, which reads and removes it before it
// listens. A file rather than the readiness pipe: it is written once, read once, and can be big (a full
// affinity table). Pools that share affinity through Redis (`affinity_store`) would find their entries
// there anyway; the file also covers tables without a store.
import { mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { RuntimeState } from '../proxy/runtime.js';

export const STATE_FILE_ENV = 'TWINPORT_STATE_FILE';

/** Writes the state where only this user can read it; returns the path. */
export function writeStateFile(state: RuntimeState, env: NodeJS.ProcessEnv = process.env): string {
  // systemd's RuntimeDirectory= when the unit has one, else the temporary directory.
  const base = env['RUNTIME_DIRECTORY']?.split(':')[0] || tmpdir();
  const dir = mkdtempSync(join(base, 'twinport-upgrade-'));
  const file = join(dir, 'state.json');
  writeFileSync(file, JSON.stringify({ version: 1, ...state }), { mode: 0o600 });
  return file;
}

/** The file, and its directory when it is one writeStateFile made (never anything else). */
export function removeStateFile(file: string): void {
  rmSync(file, { force: true });
  const dir = dirname(file);
  if (basename(dir).startsWith('twinport-upgrade-')) {
    try {
      rmdirSync(dir);
    } catch {
      // Not empty or already gone: left as it is.
    }
  }
}

/**
 * The state passed in the environment, or undefined; the file is removed once read, and so is the
 * variable (no worker or later upgrade reads it again). A state that cannot be read is reported, not fatal:
 * health checks and affinity learning start over, as at any start.
 */
export function takeStateFile(env: NodeJS.ProcessEnv = process.env): { state?: RuntimeState; problem?: string } {
  const file = env[STATE_FILE_ENV];
  delete env[STATE_FILE_ENV];
  if (file === undefined || file === '') return {};
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown } & RuntimeState;
    if (parsed.version !== 1 || !Array.isArray(parsed.health) || typeof parsed.affinity !== 'object' || parsed.affinity === null) {
      return { problem: `${file}: not a twinport state file of version 1` };
    }
    return { state: { health: parsed.health, affinity: parsed.affinity } };
  } catch (e) {
    return { problem: `${file}: ${(e as Error).message}` };
  } finally {
    removeStateFile(file);
  }
}
