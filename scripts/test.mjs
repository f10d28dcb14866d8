#!/usr/bin/env node
// Type-checks and compiles, runs ava in TAP mode, passes its output through, and ends with the plain
// `N passed, N failed` line that CI reads. Extra args go to ava (e.g. a file glob).
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';

const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.log('typescript compilation failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const ava = spawn(process.execPath, ['node_modules/ava/entrypoints/cli.mjs', '--tap', ...process.argv.slice(2)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let passed = 0;
let failed = 0;
let skipped = 0;
let todo = 0;
const lines = createInterface({ input: ava.stdout });
lines.on('line', (line) => {
  process.stdout.write(line + '\n');
  if (/^not ok\b/.test(line)) {
    if (/#\s*TODO/i.test(line)) todo++;
    else failed++;
  } else if (/^ok\b/.test(line)) {
    if (/#\s*SKIP/i.test(line)) skipped++;
    else passed++;
  }
});
ava.on('close', (code) => {
  // ava reports uncaught exceptions and timeouts outside the per-test lines; they still fail the run.
  if (code !== 0 && failed === 0) failed = 1;
  if (skipped > 0 || todo > 0) console.log(`${skipped} skipped, ${todo} todo`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
