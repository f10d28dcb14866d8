// Config files: read, validate, summarise (README.md `twinport --config`, `twinport check`).
// The contract's config API is importable from here: the parser, the error type and the demo config.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, formatIssue } from './issues.js';
import type { TwinportConfig } from './types.js';
import { parseConfigText } from './validate.js';

export { ConfigError, formatIssue, type ConfigIssue } from './issues.js';
export { parseConfigText } from './validate.js';
export { buildDemoConfig } from './demo-config.js';

/** Reads and validates a config file. Synchronous: it runs once, before anything listens. */
export function loadConfigFile(path: string): TwinportConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new ConfigError('TWP_ERR_CONFIG_READ', [{ file: path, line: 0, col: 0, path: '', message: `cannot read the file: ${reason}` }], {
      cause: e,
    });
  }
  return parseConfigText(text, path, resolve(path));
}

function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `twinport check FILE`: one summary line, or every error as `FILE:LINE:COL key.path: message`. */
export function checkConfigFile(path: string): { ok: true; summary: string } | { ok: false; lines: string[] } {
  try {
    const c = loadConfigFile(path);
    const routes = c.listeners.reduce((n, l) => n + l.routes.length, 0);
    const summary = `${path}: ok — ${count(c.listeners.length, 'listener')}, ${count(Object.keys(c.pools).length, 'pool')}, ${count(routes, 'route')}`;
    return { ok: true, summary };
  } catch (e) {
    if (e instanceof ConfigError) return { ok: false, lines: e.issues.map(formatIssue) };
    throw e;
  }
}
