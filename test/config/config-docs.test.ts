// The schema is the one definition: the published JSON Schema is generated from it, docs/config.md
// documents every key it allows, and the published file works with a stock JSON Schema validator.
import test from 'ava';
import { Ajv } from 'ajv';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { renderSchemaJson, schemaKeyPaths } from '../../src/config/schema.js';
import { fixture, repoRoot } from './fixture-paths.js';

test('docs/twinport.schema.json is the generated schema (node scripts/write-schema.mjs)', (t) => {
  const committed = readFileSync(`${repoRoot}docs/twinport.schema.json`, 'utf8');
  t.is(committed, renderSchemaJson());
});

test('docs/config.md documents every key path of the schema', (t) => {
  const doc = readFileSync(`${repoRoot}docs/config.md`, 'utf8');
  const paths = schemaKeyPaths();
  t.true(paths.includes('pools.<name>.servers[].send_proxy'), 'the walker reaches keys inside unions');
  const missing = paths.filter((p) => !doc.includes(`\`${p}\``));
  t.deepEqual(missing, []);
});

test('the published schema accepts the valid fixtures and rejects an unknown key', (t) => {
  const schema = JSON.parse(readFileSync(`${repoRoot}docs/twinport.schema.json`, 'utf8')) as object;
  const validate = new Ajv({ strict: false }).compile(schema);
  for (const name of ['good/design-example.yaml', 'good/full.yaml', 'good/minimal.yaml']) {
    t.true(validate(parse(readFileSync(fixture(name), 'utf8'))), `${name}: ${JSON.stringify(validate.errors)}`);
  }
  t.false(validate(parse(readFileSync(fixture('bad/unknown-key-server.yaml'), 'utf8'))));
});
