#!/usr/bin/env node
// Writes docs/twinport.schema.json from the one schema definition (src/config/schema.ts), compiled to dist/.
// Run after a build: `npx tsc -p tsconfig.json && node scripts/write-schema.mjs`.
// `--check` writes nothing and exits 1 when the committed file is stale (test/config/schema-file.test.ts
// makes the same comparison).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const target = `${root}docs/twinport.schema.json`;
const { renderSchemaJson } = await import(`${root}dist/src/config/schema.js`).catch((e) => {
  console.error(`cannot load dist/src/config/schema.js (build first: npx tsc -p tsconfig.json): ${e.message}`);
  process.exit(1);
});
const text = renderSchemaJson();

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {}
  if (current !== text) {
    console.error('docs/twinport.schema.json is stale: run node scripts/write-schema.mjs');
    process.exit(1);
  }
  console.log('docs/twinport.schema.json is up to date');
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
