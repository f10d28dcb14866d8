// Whatever the file holds, the loader answers with a config or a ConfigError whose issues all have a place:
// a TypeError from compile.ts on a value of an unexpected type would be a bug.
import test from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { fixture } from './fixture-paths.js';

function outcome(text: string): 'ok' | 'config-error' {
  try {
    parseConfigText(text, 'fuzz.yaml');
    return 'ok';
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const i of e.issues) {
      if (i.file !== 'fuzz.yaml' || !(i.line >= 1) || !(i.col >= 1) || i.message === '') throw new Error(`bad issue ${JSON.stringify(i)}`);
    }
    if (e.issues.length === 0) throw new Error('a ConfigError without issues');
    return 'config-error';
  }
}

test('arbitrary text gives a config or a ConfigError with placed issues', (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => outcome(s) !== undefined));
  t.pass();
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Replaces the value at one path of `doc` (chosen by `pick`) with `replacement`. */
function mutate(doc: Json, pick: number, replacement: Json): Json {
  const slots: { parent: Json[] | Record<string, Json>; key: string | number }[] = [];
  const walk = (node: Json) => {
    if (Array.isArray(node)) node.forEach((v, i) => (slots.push({ parent: node, key: i }), walk(v)));
    else if (node !== null && typeof node === 'object') for (const [k, v] of Object.entries(node)) slots.push({ parent: node, key: k }), walk(v);
  };
  walk(doc);
  const slot = slots[pick % slots.length]!;
  (slot.parent as Record<string | number, Json>)[slot.key] = replacement;
  return doc;
}

test('a valid config with any one value replaced by anything never crashes the loader', (t) => {
  const base = parse(readFileSync(fixture('good/full.yaml'), 'utf8')) as Json;
  t.is(outcome(stringify(base)), 'ok');
  fc.assert(
    fc.property(fc.nat(), fc.jsonValue() as fc.Arbitrary<Json>, (pick, value) => {
      const doc = mutate(structuredClone(base), pick, value);
      return outcome(stringify(doc)) !== undefined;
    }),
    { numRuns: 500 },
  );
});
