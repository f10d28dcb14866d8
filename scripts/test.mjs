#!/usr/bin/env node
// Type-checks and compiles, runs ava in TAP mode, passes its output through, and ends with the plain
// `N passed, N failed` line that CI reads. Extra args go to ava (e.g. a file glob).
//
// Without extra args there is a second pass: the in-process proxy tests again on the `streams` io
// engine (TWINPORT_TEST_IO_ENGINE, test/helpers/proxy-harness.ts), the fallback for a Node without the
// libuv handles the default engine drives (docs/io-engine.md). Its test names carry a "[streams]" tag.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.log('typescript compilation failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
let todo = 0;

function runAva(args, env, tag) {
  return new Promise((resolve) => {
    const ava = spawn(process.execPath, ['node_modules/ava/entrypoints/cli.mjs', '--tap', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    let failedHere = 0;
    const lines = createInterface({ input: ava.stdout });
    lines.on('line', (raw) => {
      const line = tag === undefined ? raw : raw.replace(/^((?:not )?ok \d+ - )/, `$1[${tag}] `);
      process.stdout.write(line + '\n');
      if (/^not ok\b/.test(line)) {
        if (/#\s*TODO/i.test(line)) todo++;
        else failedHere++;
      } else if (/^ok\b/.test(line)) {
        if (/#\s*SKIP/i.test(line)) skipped++;
        else passed++;
      }
    });
    ava.on('close', (code) => {
      // ava reports uncaught exceptions and timeouts outside the per-test lines; they still fail the run.
      if (code !== 0 && failedHere === 0) failedHere = 1;
      failed += failedHere;
      resolve(code === 0 && failedHere === 0);
    });
  });
}

const extra = process.argv.slice(2);
// The lifecycle load tests (thousands of connections across upgrades and rolling restarts, 115 process
// starts for the early-signal test) run in a pass of their own, one file at a time: run beside other
// files on a 2-core host they starved them (a cluster test's clients timed out behind its workers).
const SERIAL = ['upgrade', 'rolling-workers', 'early-signals'].map((n) => `dist/test/integration/${n}.test.js`);
const allTests = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? allTests(`${dir}/${e.name}`) : e.name.endsWith('.test.js') ? [`${dir}/${e.name}`] : [],
  );
let ok = await runAva(extra.length > 0 ? extra : allTests('dist/test').filter((f) => !SERIAL.includes(f)), {}, undefined);
if (extra.length === 0) ok = (await runAva(['--concurrency', '1', ...SERIAL], {}, undefined)) && ok;
if (extra.length === 0) {
  const dir = 'dist/test/integration';
  const proxyTests = readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => `${dir}/${f}`)
    .filter((f) => readFileSync(f, 'utf8').includes('startProxy('));
  ok = (await runAva(proxyTests, { TWINPORT_TEST_IO_ENGINE: 'streams' }, 'streams')) && ok;
}
if (skipped > 0 || todo > 0) console.log(`${skipped} skipped, ${todo} todo`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(ok && failed === 0 ? 0 : 1);
