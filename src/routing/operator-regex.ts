// Every regex an operator writes in the config (`~regex` SNI and Host patterns; the same function is meant
// for any later pattern list, such as User-Agent exemptions) is compiled here, for RE2's linear-time
// engine (the re2js package), never for V8's backtracking RegExp. The text matched is client-controlled
// (SNI ≤ 255 bytes, Host up to ~64 KiB): under backtracking, `^(a+)+$` against 31 a's and a "!" took 84 s
// and `[a-z]+-[0-9]+\.example\.com` against a 60 000-byte Host 5 s, with the event loop blocked throughout
// (security review F3 and the ReDoS item). RE2 runs in time linear in the text whatever the pattern, and
// refuses at compile time what cannot be matched that way (backreferences, lookaround): `twinport check`
// reports those. Why re2js and not the native `re2` or V8's experimental engine: docs/routing.md.
import { RE2JS, RE2JSSyntaxException } from 're2js';
import type { OperatorRegex } from '../config/types.js';

/**
 * The only code points that RE2's Unicode case folding equates with ASCII letters: U+017F LATIN SMALL
 * LETTER LONG S (≡ s) and U+212A KELVIN SIGN (≡ k); checked over every code point (test/routing). Names
 * compare case-insensitively in ASCII only (RFC 4343 §3, canonicalName): a client's SNI
 * "\u212Aeystone.example.com" must not take the route `~^keystone\.` while the backend sees another name.
 * They are replaced by U+FFFD before matching, so they still count as some non-ASCII character (`.`,
 * `[^a-z]`, `\W`) but never as k or s. Host and other latin1 header text cannot contain them.
 */
const FOLDS_INTO_ASCII = /[\u017F\u212A]/g;

/**
 * Compiles `source` (RE2 syntax, without the `~`) into a case-insensitive, unanchored matcher — the
 * semantics the JavaScript regexes had: `^`/`$` anchor at the ends of the whole text, `(?-i)` turns case
 * sensitivity back on. Returns a message naming the construct when RE2 cannot compile it.
 */
export function compileOperatorRegex(source: string): OperatorRegex | string {
  if (source === '') return 'an empty regex';
  let re: RE2JS;
  try {
    re = RE2JS.compile(source, RE2JS.CASE_INSENSITIVE);
  } catch (e) {
    return `invalid regex: ${explain(e, source)}`;
  }
  // A closure, not the RE2JS object: the config is deep-frozen (compile.ts), and the engine keeps caches
  // on its objects that freezing would break; a function is a leaf to deepFreeze.
  const test = (text: string): boolean => re.test(text.replace(FOLDS_INTO_ASCII, '\uFFFD'));
  return Object.freeze({ source, test });
}

const NO_BACKTRACKING = 'is not supported: regexes run on RE2 (linear time), which has no backreferences, lookaround or possessive quantifiers';

/** The re2js parse error as a config message, naming the construct a JavaScript or PCRE author reached for. */
function explain(e: unknown, source: string): string {
  if (!(e instanceof RE2JSSyntaxException)) return e instanceof Error ? e.message : String(e);
  // RE2JS.compile wrote the case-insensitive flag as a "(?i)" prefix, which errors about the whole regex
  // (an unbalanced parenthesis) would quote back at an author who never wrote it.
  const at = e.input === `(?i)${source}` ? source : (e.input ?? '');
  if (/^\\[1-9]/.test(at)) return `backreference "${at.slice(0, 2)}" ${NO_BACKTRACKING}`;
  if (at.startsWith('\\k')) return `named backreference "\\k<…>" ${NO_BACKTRACKING}`;
  if (at.startsWith('(?=') || at.startsWith('(?!')) return `lookahead "${at.slice(0, 3)}" ${NO_BACKTRACKING}`;
  if (at.startsWith('(?<=') || at.startsWith('(?<!')) return `lookbehind "${at.slice(0, 4)}" ${NO_BACKTRACKING}`;
  if (at.startsWith('(?>')) return `atomic group "(?>" ${NO_BACKTRACKING}`;
  if (e.error === 'invalid nested repetition operator') return `possessive or doubled quantifier "${at}" ${NO_BACKTRACKING}`;
  if (at.startsWith('\\u')) return `"\\u" escapes are JavaScript syntax; RE2 writes a code point as \\x{00e9}`;
  return at === '' ? e.error : `${e.error}: \`${at}\``;
}
