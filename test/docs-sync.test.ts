// The error registry and the close reasons are public interfaces: docs/errors.md and docs/reasons.md
// list exactly what the code declares.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors.js';
import { CLOSE_REASONS } from '../src/proxy/reasons.js';

const doc = (name: string): string => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');

function tableCodes(markdown: string, re: RegExp): string[] {
  return [...markdown.matchAll(re)].map((m) => m[1]!);
}

test('docs/errors.md lists every error code, and only those', (t) => {
  const documented = tableCodes(doc('errors.md'), /^\| `(TWP_ERR_[A-Z0-9_]+)` \|/gm);
  t.deepEqual([...documented].sort(), Object.keys(ERROR_CODES).sort());
});

test('docs/reasons.md lists every close reason, and only those', (t) => {
  // The reasons table is the page's first section; the close line's fields have a table of their own below.
  const documented = tableCodes(doc('reasons.md').split('\n## ')[0]!, /^\| `([a-z-]+)` \|/gm);
  t.deepEqual([...documented].sort(), [...CLOSE_REASONS].sort());
});

test('docs, README and src stand alone: none points readers at design.md, which is not in the repository', (t) => {
  const root = new URL('../../', import.meta.url);
  const files: string[] = ['README.md'];
  const walk = (dir: string): void => {
    for (const e of readdirSync(new URL(dir, root), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (/\.(md|ts)$/.test(e.name)) files.push(rel);
    }
  };
  walk('docs');
  walk('src');
  const citing = files.filter((f) => readFileSync(new URL(f, root), 'utf8').includes('design.md'));
  t.true(files.length > 20);
  t.deepEqual(citing, []);
});
