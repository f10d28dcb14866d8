// Operator regexes run on RE2 (src/routing/operator-regex.ts): patterns that backtrack exponentially or
// quadratically under V8 finish with the right verdict, the semantics of the JavaScript regexes they
// replace are kept where they can be (case-insensitive, unanchored), and what RE2 cannot run is refused
// with the construct named. Verdicts only: nothing here asserts a duration (2 shared cores).
import test from 'ava';
import fc from 'fast-check';
import { RE2JS } from 're2js';
import type { NamePattern, RouteConfig } from '../../src/config/types.js';
import { compileNamePattern } from '../../src/routing/name-pattern.js';
import { compileOperatorRegex } from '../../src/routing/operator-regex.js';
import { matchRoute } from '../../src/routing/route-match.js';

function pattern(text: string): NamePattern {
  const p = compileNamePattern(text);
  if (typeof p === 'string') throw new Error(p);
  return p;
}

/** `~regex` route first, catch-all second: the route matching function decides between them. */
function routesFor(key: 'sni' | 'host', text: string): RouteConfig[] {
  return [
    { index: 0, match: { [key]: [pattern(text)] }, to: 'regex' },
    { index: 1, match: {}, to: 'rest' },
  ];
}

const sniRoute = (text: string, sni: string): string | undefined =>
  matchRoute(routesFor('sni', text), { protocol: 'tls', sni, sourceIp: '192.0.2.1' })?.to;
const hostRoute = (text: string, host: string): string | undefined =>
  matchRoute(routesFor('host', text), { protocol: 'http', host, sourceIp: '192.0.2.1' })?.to;

test('nested quantifiers against an SNI that almost matches: the verdict comes back (V8 took 84 s)', (t) => {
  t.is(sniRoute('~^(a+)+$', `${'a'.repeat(31)}!`), 'rest');
  // The longest SNI a hello can carry (255 bytes): exponential for a backtracking engine.
  t.is(sniRoute('~^(a+)+$', `${'a'.repeat(254)}!`), 'rest');
  t.is(sniRoute('~^(a+)+$', 'a'.repeat(255)), 'regex');
  t.is(sniRoute('~^(a|aa)+$', `${'a'.repeat(254)}!`), 'rest');
  t.is(sniRoute('~^(.*a){20}$', 'a'.repeat(200)), 'regex');
});

test('quadratic patterns against a 60 000-byte Host (V8: 2.6–9.3 s each) and a 255-byte SNI', (t) => {
  const long = 'a'.repeat(60_000);
  t.is(hostRoute('~[a-z]+-[0-9]+\\.example\\.com', long), 'rest');
  t.is(hostRoute('~.*\\.internal\\.example\\.com$', long), 'rest');
  t.is(hostRoute('~[a-z]+-[0-9]+\\.example\\.com', `${long}-12.example.com`), 'regex');
  t.is(hostRoute('~.*\\.internal\\.example\\.com$', `${long}.internal.example.com`), 'regex');
  const sni = 'a'.repeat(255);
  t.is(sniRoute('~[a-z]+-[0-9]+\\.example\\.com', sni), 'rest');
  t.is(sniRoute('~.*\\.internal\\.example\\.com$', sni), 'rest');
});

test('case-insensitive, unanchored unless anchored; (?-i) makes it case-sensitive', (t) => {
  t.is(sniRoute('~^web-[0-9]+\\.Example\\.COM$', 'WEB-12.example.com'), 'regex');
  t.is(sniRoute('~internal', 'db.INTERNAL.example.com'), 'regex');
  t.is(sniRoute('~^internal', 'db.internal.example.com'), 'rest');
  t.is(sniRoute('~example\\.com$', 'example.com.evil'), 'rest');
  t.is(sniRoute('~(?-i)^web', 'WEB.example.com'), 'rest');
  // `$` is the end of the text, not before a final newline; `.` does not match a newline (as in JS).
  t.is(hostRoute('~^a$', 'a\n'), 'rest');
  t.is(hostRoute('~^a.b$', 'a\nb'), 'rest');
});

test('non-ASCII names: UTF-8 SNI and latin1 Host text match as code points', (t) => {
  t.is(sniRoute('~^bücher\\.example$', 'BÜCHER.example'), 'regex', 'non-ASCII letters fold among themselves');
  t.is(sniRoute('~^.\\.example$', '😀.example'), 'regex', '`.` is one code point, not one UTF-16 unit');
  t.is(hostRoute('~^caf\\x{e9}$', 'caf\u00e9'), 'regex', 'latin1 text, RE2 code point escape');
  t.is(hostRoute('~^[a-z]+$', 'caf\u00e9'), 'rest');
});

test('KELVIN SIGN and LONG S never stand in for k and s: case folds in ASCII only, as for exact names', (t) => {
  t.is(sniRoute('~^keystone\\.', '\u212Aeystone.example.com'), 'rest');
  t.is(sniRoute('~^secret\\.', '\u017Fecret.example.com'), 'rest');
  t.is(sniRoute('~^[a-z]+\\.example$', '\u212A\u017F.example'), 'rest');
  t.is(sniRoute('~^\\w+\\.example$', '\u212A.example'), 'rest');
  // … but they are still characters: `.` and negated classes match them.
  t.is(sniRoute('~^.eystone\\.', '\u212Aeystone.example.com'), 'regex');
  t.is(sniRoute('~^[^a-z]eystone\\.', '\u212Aeystone.example.com'), 'regex');
  t.is(sniRoute('~^\\Weystone\\.', '\u212Aeystone.example.com'), 'regex');
});

test('re2js folds exactly two non-ASCII code points into ASCII letters (the ones operator-regex.ts replaces)', (t) => {
  // If an engine update adds one, the replacement in operator-regex.ts must learn it.
  const letter = RE2JS.compile('^[a-z]$', RE2JS.CASE_INSENSITIVE);
  const found: number[] = [];
  for (let c = 0x80; c <= 0x10ffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    if (letter.test(String.fromCodePoint(c))) found.push(c);
  }
  t.deepEqual(found, [0x017f, 0x212a]);
});

// Patterns built only from constructs both engines read the same way in ASCII: literals, `.`, ASCII
// classes, \d \w \b, greedy and lazy quantifiers, groups, alternation, anchors. `\s` is left out (JS
// counts \v as space, RE2 does not), and names are printable ASCII (JS `.` also refuses \r).
const atom = fc.oneof(
  fc.constantFrom('a', 'b', 'Z', '0', '7', '-', '_', '\\.', '.', '[a-c]', '[^a-c]', '[0-9]', '[A-Z0-9-]', '\\d', '\\w', '\\W', '\\D', 'x'),
);
const quant = fc.constantFrom('', '', '', '*', '+', '?', '{1,3}', '{2}', '*?', '+?');
const piece = fc.tuple(atom, quant).map(([a, q]) => a + q);
const seq = fc.array(piece, { minLength: 1, maxLength: 5 }).map((ps) => ps.join(''));
const regexSource = fc
  .tuple(
    fc.constantFrom('', '^', '\\b'),
    fc.oneof(seq, fc.tuple(seq, seq).map(([a, b]) => `(${a}|${b})`), fc.tuple(seq, quant).map(([s, q]) => `(?:${s})${q}`), seq),
    fc.constantFrom('', '$', '\\b'),
  )
  .map(([a, body, z]) => a + body + z);
const name = fc.string({ unit: fc.constantFrom(...'abcxyzABCXYZ0179-_.!* '.split('')), maxLength: 40 });

test('property: on printable ASCII names re2js and the JavaScript regex it replaces agree', (t) => {
  fc.assert(
    fc.property(regexSource, name, (source, text) => {
      const ours = compileOperatorRegex(source);
      if (typeof ours === 'string') throw new Error(`${source}: ${ours}`);
      return ours.test(text) === new RegExp(source, 'i').test(text);
    }),
    { numRuns: 5000 },
  );
  t.pass();
});

test('constructs RE2 cannot run in linear time are refused, naming the construct', (t) => {
  const refused: [string, RegExp][] = [
    ['(a)\\1', /^invalid regex: backreference "\\1" is not supported: regexes run on RE2 \(linear time\)/],
    ['(?<n>a)\\k<n>', /^invalid regex: named backreference "\\k<…>" is not supported/],
    ['^(?=admin)', /^invalid regex: lookahead "\(\?=" is not supported/],
    ['^(?!admin)', /^invalid regex: lookahead "\(\?!" is not supported/],
    ['(?<=x)admin', /^invalid regex: lookbehind "\(\?<=" is not supported/],
    ['(?<!x)admin', /^invalid regex: lookbehind "\(\?<!" is not supported/],
    ['(?>a+)b', /^invalid regex: atomic group "\(\?>" is not supported/],
    ['a++b', /^invalid regex: possessive or doubled quantifier "\+\+" is not supported/],
    ['\\u00e9', /^invalid regex: "\\u" escapes are JavaScript syntax; RE2 writes a code point as \\x\{00e9\}$/],
    ['(a', /^invalid regex: missing closing \): `\(a`$/],
    ['[a-', /^invalid regex: missing closing \]: `\[a-`$/],
    ['a{1001}', /^invalid regex: invalid repeat count: `\{1001\}`$/],
    ['', /^an empty regex$/],
  ];
  for (const [source, message] of refused) {
    const r = compileOperatorRegex(source);
    t.is(typeof r, 'string', source);
    t.regex(String(r), message, source);
  }
});

test('a compiled regex survives freezing: the engine sits behind a closure', (t) => {
  const r = compileOperatorRegex('^api[0-9]+\\.');
  if (typeof r === 'string') throw new Error(r);
  t.true(Object.isFrozen(r));
  t.is(typeof r.test, 'function');
  t.true(r.test('API7.example.com'));
  t.false(r.test('api.example.com'));
  t.true(r.test('api12.example.com'), 'a second match reuses the engine state');
});
