#!/usr/bin/env node
// Type-checks and compiles, runs ava in TAP mode, passes its output through, and ends with the plain
// `N passed, N failed` line that CI reads. Extra args go to ava (e.g. a file glob).
//
// Without extra args the in-process proxy tests run again on the engines auto did not pick
// (TWINPORT_TEST_IO_ENGINE, test/helpers/proxy-harness.ts; docs/io-engine.md): `auto` runs `native` where
// the addon built, so the second pass is `libuv` and the third `streams`, the fallback for a Node without
// the libuv handles. Their test names carry a "[libuv]" / "[streams]" tag.
//
// Where the native engine runs, the proxy suites and the native tests run once more with
// TWINPORT_NATIVE_SPLICE=always (every byte through splice(2)), tagged "[splice-always]".
//
// TWINPORT_TEST_SANITIZE=1 (.ci/run) adds a pass on the native engine built with
// -fsanitize=address,undefined (a copy of src/native built in a temporary directory, loaded with the
// sanitizer runtimes preloaded): the proxy suites and the native engine's own tests, tagged "[native-asan]".
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
// TWINPORT_TEST_SANITIZE=1 with file arguments: those files again on the sanitizer build (development).
if (extra.length > 0 && process.env.TWINPORT_TEST_SANITIZE === '1') ok = (await sanitizerPass(extra.filter((a) => !a.startsWith('-')))) && ok;
if (extra.length === 0) {
  const dir = 'dist/test/integration';
  const proxyTests = readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => `${dir}/${f}`)
    .filter((f) => readFileSync(f, 'utf8').includes('startProxy('));
  const { NATIVE } = await import('../dist/src/io/native.js');
  if (NATIVE.engine !== undefined) ok = (await runAva(proxyTests, { TWINPORT_TEST_IO_ENGINE: 'libuv' }, 'libuv')) && ok;
  else console.log(`# auto runs libuv here (${NATIVE.why}): no separate libuv pass`);
  // The native engine's default (TWINPORT_NATIVE_SPLICE=auto) moves a direction to splice(2) only once it
  // carries bulk, so most suites never reach the pipes: they run again with every byte through a pipe.
  if (NATIVE.engine !== undefined) {
    const nativeTests = readdirSync('dist/test/native').filter((f) => f.endsWith('.test.js')).map((f) => `dist/test/native/${f}`);
    ok = (await runAva([...proxyTests, ...nativeTests], { TWINPORT_TEST_IO_ENGINE: 'native', TWINPORT_NATIVE_SPLICE: 'always' }, 'splice-always')) && ok;
  }
  ok = (await runAva(proxyTests, { TWINPORT_TEST_IO_ENGINE: 'streams' }, 'streams')) && ok;
  // Under CI always (the native code's quality bar), elsewhere on request: it rebuilds the addon and runs
  // the proxy suites several times slower.
  const sanitize = process.env.TWINPORT_TEST_SANITIZE === '1' || (process.env.CI === 'true' && process.env.TWINPORT_TEST_SANITIZE !== '0');
  if (sanitize) ok = (await sanitizerPass([...proxyTests, 'dist/test/native/splice-native.test.js', 'dist/test/native/accept-native.test.js', 'dist/test/native/fin-native.test.js', 'dist/test/native/splice-pipe.test.js'])) && ok;
}

/** The native engine built with ASan + UBSan, under every in-process proxy suite. */
async function sanitizerPass(files) {
  const build = mkdtempSync(join(tmpdir(), 'twinport-asan-'));
  try {
    cpSync('src/native', build, { recursive: true, filter: (src) => !src.includes('/build') });
    const made = spawnSync(process.execPath, ['scripts/build-native.mjs'], {
      env: { ...process.env, TWINPORT_NATIVE_DIR: build, TWINPORT_NATIVE_SANITIZE: '1' },
      stdio: 'inherit',
    });
    const addon = join(build, 'build', 'Release', 'twinport_native.node');
    const runtimes = ['libasan.so', 'libubsan.so'].map((lib) => spawnSync('gcc', ['-print-file-name=' + lib], { encoding: 'utf8' }).stdout.trim());
    if (made.status !== 0 || !existsSync(addon) || !runtimes.every((r) => r.startsWith('/') && existsSync(r))) {
      console.log('not ok - [native-asan] the sanitizer build of the native engine failed (apt-get install -y g++ make python3)');
      failed++;
      return false;
    }
    // ASan slows the proxy and its tests several-fold: a longer per-test timeout than package.json's.
    return await runAva(['--timeout=300s', ...files], {
      TWINPORT_TEST_IO_ENGINE: 'native',
      TWINPORT_NATIVE_ADDON: addon,
      LD_PRELOAD: runtimes.join(' '),
      // test/helpers/proxy-harness.ts drops the preload once the addon is loaded, for the programs tests start.
      TWINPORT_SANITIZER_PRELOAD: '1',
      // Node itself is not instrumented: its own allocations would be reported as leaks at exit.
      ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1',
      UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    }, 'native-asan');
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
}
if (skipped > 0 || todo > 0) console.log(`${skipped} skipped, ${todo} todo`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(ok && failed === 0 ? 0 : 1);
