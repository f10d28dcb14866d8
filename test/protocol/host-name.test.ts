// Which server names twinport routes on (protocol/host-name.ts): LDH host names only; anything else is
// routed as a hello without SNI and logged escaped.
import test from 'ava';
import fc from 'fast-check';
import { escapeName, isHostName } from '../../src/protocol/host-name.js';

test('host names: LDH labels of 1–63, at most 253 characters, an optional trailing dot', (t) => {
  for (const ok of ['a', 'a.example.com', 'A-1.Example.COM.', 'xn--bcher-kva.example', '10.0.0.1', `${'a'.repeat(63)}.b`, `${'a.'.repeat(126)}a`]) {
    t.true(isHostName(ok), ok);
  }
  for (const bad of [
    '',
    '.',
    'bad name!.example.com',
    'b\u00fccher.example',
    'a..b',
    '.a',
    '-a.example',
    'a-.example',
    'under_score.example',
    `${'a'.repeat(64)}.b`,
    `${'a.'.repeat(127)}a`,
    'a.example.com..',
    'tab\t.example',
  ]) {
    t.false(isHostName(bad), JSON.stringify(bad));
  }
});

const label = fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?$/);

test('property: generated LDH names are host names; one byte outside LDH and dots makes any of them not one', (t) => {
  fc.assert(
    fc.property(fc.array(label, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 0x10ffff }), (labels, dot, at, cp) => {
      const name = labels.join('.') + (dot ? '.' : '');
      if (!isHostName(name)) return false;
      const c = String.fromCodePoint(cp);
      if (/[A-Za-z0-9.-]/.test(c)) return true;
      const i = at % (name.length + 1);
      return !isHostName(name.slice(0, i) + c + name.slice(i));
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('escapeName: printable ASCII as is, everything else (and the backslash) as \\xHH of its UTF-8 bytes', (t) => {
  t.is(escapeName('a.example.com'), 'a.example.com');
  t.is(escapeName('bad name!.example.com'), 'bad\\x20name!.example.com');
  t.is(escapeName('b\u00fccher.example'), 'b\\xc3\\xbccher.example');
  t.is(escapeName('a\\b\u0001'), 'a\\x5cb\\x01');
});
