#!/usr/bin/env node
// Builds the native splice addon (src/native/, docs/native.md) with node-gyp, at `npm install` / `npm ci`.
// It never fails the install: twinport runs on the `libuv` engine without the addon, and says so in its
// start line. (A binding.gyp at the package root would make npm run `node-gyp rebuild` itself, whose
// failure fails the install: hence the gyp file lives in src/native and this script runs it.)
//
//   TWINPORT_NATIVE_BUILD=skip      do not build
//   TWINPORT_NATIVE_DIR=<dir>       build the sources in <dir> instead of src/native (the tests' copies)
//   TWINPORT_NATIVE_SANITIZE=1      build with -fsanitize=address,undefined (.ci/run's sanitizer pass)
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = resolve(process.env.TWINPORT_NATIVE_DIR || join(root, 'src', 'native'));
const say = (msg) => console.log(`twinport native engine: ${msg}`);

function nodeGyp() {
  // npm hands its bundled node-gyp to install scripts; outside npm, look next to this node.
  const candidates = [process.env.npm_config_node_gyp, join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')];
  return candidates.find((c) => c !== undefined && c !== '' && existsSync(c));
}

function main() {
  if (process.env.TWINPORT_NATIVE_BUILD === 'skip') return say('build skipped (TWINPORT_NATIVE_BUILD=skip); the libuv engine will run');
  if (process.platform !== 'linux') return say(`not built: ${process.platform} is not supported (Linux only); the libuv engine will run`);
  if (!existsSync(join(dir, 'binding.gyp'))) return say(`not built: no ${join(dir, 'binding.gyp')}; the libuv engine will run`);
  const gyp = nodeGyp();
  if (gyp === undefined) return say('not built: node-gyp not found; the libuv engine will run');
  const args = [gyp, 'rebuild'];
  // Node's own headers when this Node ships them (no download: the registry may be the only network).
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  if (process.env.TWINPORT_NATIVE_SANITIZE === '1') args.push('--sanitize=1');
  const r = spawnSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 300_000 });
  if (r.status === 0) return say(`built ${join(dir, 'build', 'Release', 'twinport_native.node')}`);
  // A half-built tree must not leave an old addon behind that no longer matches the sources.
  rmSync(join(dir, 'build'), { recursive: true, force: true });
  const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
  say(`build failed (${r.error?.message ?? `exit ${r.status}`}); the libuv engine will run. node-gyp said:\n${tail}`);
}

try {
  main();
} catch (e) {
  say(`build failed: ${e instanceof Error ? e.message : String(e)}; the libuv engine will run`);
}
process.exitCode = 0;
