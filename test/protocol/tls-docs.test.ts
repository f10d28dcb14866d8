// docs/protocol/tls.md lists every reason code the TLS parsers can return, and nothing else.
import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('no package.json above the test');
    dir = up;
  }
  return dir;
}

test('every tls.* reason in src/protocol is in docs/protocol/tls.md and the reverse', (t) => {
  const root = repoRoot();
  const srcDir = join(root, 'src', 'protocol');
  const sources = readdirSync(srcDir)
    .filter((f) => /^(tls-.*|ja4)\.ts$/.test(f))
    .map((f) => readFileSync(join(srcDir, f), 'utf8'))
    .join('\n');
  const inCode = new Set([...sources.matchAll(/'(tls\.[a-z0-9-]+\.[a-z0-9-]+)'/g)].map((m) => m[1]!));
  const doc = readFileSync(join(root, 'docs', 'protocol', 'tls.md'), 'utf8');
  const table = doc.slice(doc.indexOf('## Reason codes'));
  const inDoc = new Set([...table.matchAll(/^\| `(tls\.[a-z0-9.-]+)` \|/gm)].map((m) => m[1]!));
  t.true(inCode.size > 40);
  t.deepEqual([...inCode].filter((c) => !inDoc.has(c)).sort(), [], 'codes missing from the doc');
  t.deepEqual([...inDoc].filter((c) => !inCode.has(c)).sort(), [], 'documented codes the code never returns');
});
