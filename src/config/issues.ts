// A config error is an issue at a place: file, line, column, key path (docs/config.md: "every error names
// file, line, column and key path"). One ConfigError carries all of them, so a user fixes a file in one pass.
import { TwinportError, type ErrorCode } from '../errors.js';

export interface ConfigIssue {
  readonly file: string;
  /** 1-based; 0 when the issue has no place in the text (the file could not be read). */
  readonly line: number;
  readonly col: number;
  /** `listeners[0].timeouts.peek`, `pools.https.servers[1].weight`; "" for the document itself. */
  readonly path: string;
  readonly message: string;
}

/** A key path as segments: strings are mapping keys, numbers are list indexes. */
export type KeyPath = readonly (string | number)[];

/** An issue before it has a place in the text: compile.ts and the schema check produce these. */
export interface PathIssue {
  readonly path: KeyPath;
  readonly message: string;
  /** Point at the key itself (unknown keys) rather than its value; the mapping for missing keys. */
  readonly at?: 'key' | 'value' | 'parent';
}

const PLAIN_KEY = /^[A-Za-z0-9_+-]+$/;

export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** `FILE:LINE:COL key.path: message`; `FILE:LINE:COL: message` without a path; `FILE: message` without a place. */
export function formatIssue(i: ConfigIssue): string {
  const place = i.line > 0 ? `${i.file}:${i.line}:${i.col}` : i.file;
  return i.path === '' ? `${place}: ${i.message}` : `${place} ${i.path}: ${i.message}`;
}

export type ConfigErrorCode = Extract<ErrorCode, 'TWP_ERR_CONFIG_INVALID' | 'TWP_ERR_CONFIG_YAML' | 'TWP_ERR_CONFIG_READ'>;

export class ConfigError extends TwinportError {
  readonly issues: readonly ConfigIssue[];

  constructor(code: ConfigErrorCode, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    const n = issues.length;
    super(code, `${n} ${n === 1 ? 'error' : 'errors'}\n${issues.map(formatIssue).join('\n')}`, options);
    this.name = 'ConfigError';
    this.issues = Object.freeze([...issues]);
  }
}
