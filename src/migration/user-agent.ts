// User-Agent patterns (`listeners[].migration.exempt.user_agents`, docs/migration.md): the whole value
// exactly, or `~regex`. Not the name-pattern forms: a User-Agent is a list of product tokens (RFC 9110
// §10.1.5), not a DNS name, so `*.` has no meaning here, and any `*` is refused (with the regex it probably meant) rather than read as a glob. The
// value is client-controlled, so a regex goes through compileOperatorRegex (routing/operator-regex.ts: RE2, linear time) like every
// operator regex.
import { HTTP_MAX_USER_AGENT_BYTES } from '../protocol/http-head.js';
import { compileOperatorRegex } from '../routing/operator-regex.js';
import type { UserAgentPattern } from '../config/types.js';

export function compileUserAgentPattern(text: string): UserAgentPattern | string {
  if (text.startsWith('~')) {
    const source = text.slice(1);
    const regex = compileOperatorRegex(source);
    if (typeof regex === 'string') return regex;
    return Object.freeze({ kind: 'regex', source, regex });
  }
  if (text === '') return 'an empty User-Agent';
  if (text.includes('*')) {
    return `"${text}": User-Agent patterns are the whole value or "~regex" (RE2), not globs: write "~${globToRegex(text)}"`;
  }
  // The probe keeps the first HTTP_MAX_USER_AGENT_BYTES of the value: a longer exact value could never match.
  if (Buffer.byteLength(text, 'latin1') > HTTP_MAX_USER_AGENT_BYTES) {
    return `"${text.slice(0, 32)}…" is longer than the ${HTTP_MAX_USER_AGENT_BYTES} bytes of User-Agent twinport reads: use "~^" and a prefix`;
  }
  return Object.freeze({ kind: 'exact', value: text });
}

/** The regex a glob meant, for the error message: "legacy-agent/*" → "^legacy-agent/", "*curl*" → "curl". */
function globToRegex(glob: string): string {
  const parts = glob.split('*').map((p) => p.replace(/[.+?^$()[\]{}|\\]/g, '\\$&'));
  const body = parts.filter((p) => p !== '').join('.*');
  return `${glob.startsWith('*') ? '' : '^'}${body}${glob.endsWith('*') ? '' : '$'}`;
}

/** Exact compares the whole value case-sensitively (product tokens are sent as their authors spell them). */
export function matchUserAgent(pattern: UserAgentPattern, userAgent: string): boolean {
  return pattern.kind === 'exact' ? userAgent === pattern.value : pattern.regex.test(userAgent);
}
