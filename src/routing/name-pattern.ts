// SNI and Host patterns (docs/config.md): exact (case-insensitive, trailing dot ignored), `*.example.com`
// (exactly one label, as certificate wildcards, RFC 6125 §6.4.3), `~regex` (RE2 syntax, linear time,
// case-insensitive, unanchored unless the author anchors it: operator-regex.ts).
import { isIP } from '../protocol/ip-address.js';
import { compileOperatorRegex } from './operator-regex.js';
import type { NamePattern } from '../config/types.js';

/**
 * Lower-cases A-Z only and drops one trailing dot: how names compare for routing. DNS names compare
 * case-insensitively in ASCII only (RFC 4343 §3); full Unicode folding would let a client's SNI
 * "\u212Aeystone.example.com" (KELVIN SIGN) match the route for "keystone.example.com" while the backend
 * sees a different name.
 */
export function canonicalName(name: string): string {
  const lower = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export function compileNamePattern(text: string): NamePattern | string {
  if (text.startsWith('~')) {
    const source = text.slice(1);
    const regex = compileOperatorRegex(source);
    if (typeof regex === 'string') return regex;
    return Object.freeze({ kind: 'regex', source, regex });
  }
  if (text === '') return 'an empty name';
  if (text.startsWith('*.')) {
    const rest = canonicalName(text.slice(2));
    if (rest === '' || rest.includes('*')) return `"${text}": a wildcard is "*." followed by a name without "*"`;
    return Object.freeze({ kind: 'wildcard', suffix: `.${rest}` });
  }
  if (text.includes('*')) return `"${text}": "*" is only allowed as the whole first label ("*.example.com")`;
  return Object.freeze({ kind: 'exact', name: canonicalName(text) });
}

export function matchName(pattern: NamePattern, name: string): boolean {
  switch (pattern.kind) {
    case 'exact':
      return canonicalName(name) === pattern.name;
    case 'wildcard': {
      const n = canonicalName(name);
      // A wildcard stands for a DNS label; "*.0.0.1" must not catch the IP literal "10.0.0.1" (which
      // RFC 6066 §3 forbids in SNI anyway, so only a misbehaving client sends one).
      if (!n.endsWith(pattern.suffix) || isIP(n) !== 0) return false;
      const label = n.slice(0, n.length - pattern.suffix.length);
      return label.length > 0 && !label.includes('.');
    }
    case 'regex':
      return pattern.regex.test(name);
  }
}
