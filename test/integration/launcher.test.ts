// bin/twinport, the installed command: it sets glibc's malloc tuning (only the environment can) and V8's
// young-generation cap (NODE_OPTIONS, so the caller's own flag, later on that line, wins) and execs node,
// so the process that runs is node itself, with those variables, and a caller's own values win.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const LAUNCHER = fileURLToPath(new URL('../../../bin/twinport', import.meta.url));

interface Seen {
  readonly exe: string;
  readonly env: Map<string, string>;
  readonly stdout: string;
  readonly code: number | null;
  /** The largest semi-space node reaches under the NODE_OPTIONS the launched process got, in MiB. */
  readonly semiSpaceMiB: number;
}

// Churns through short-lived objects, with enough surviving each scavenge that V8 grows the new space to
// its cap, and prints the largest new space seen: two semi-spaces.
const GROW_NEW_SPACE = `
const v8 = require('node:v8'); let keep = []; let max = 0;
for (let i = 0; i < 3e6; i++) {
  keep.push({ i }); if (keep.length > 20000) keep = [];
  if (i % 10000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
}
console.log(max / 2 / 1048576);`;

function semiSpaceMiB(nodeOptions: string | undefined): number {
  const env = { ...process.env };
  delete env['NODE_OPTIONS'];
  if (nodeOptions !== undefined) env['NODE_OPTIONS'] = nodeOptions;
  return Number(spawnSync(process.execPath, ['-e', GROW_NEW_SPACE], { env, encoding: 'utf8' }).stdout.trim());
}

/** Runs `twinport inspect -`, which waits for stdin: while it waits, /proc shows what was exec'd. */
async function runInspect(env: NodeJS.ProcessEnv): Promise<Seen> {
  const child = spawn(LAUNCHER, ['inspect', '-'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // exec happens at once, but node must be the image before /proc is read: wait for its first stdin read.
  await new Promise((r) => setTimeout(r, 300));
  const pid = child.pid!;
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const envEntries = readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .filter((e) => e.includes('='))
    .map((e): [string, string] => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]);
  child.stdin.end('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n');
  const code = await exited;
  const seenEnv = new Map(envEntries);
  return { exe, env: seenEnv, stdout, code, semiSpaceMiB: semiSpaceMiB(seenEnv.get('NODE_OPTIONS')) };
}

function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['MALLOC_TRIM_THRESHOLD_'];
  delete env['MALLOC_TOP_PAD_'];
  delete env['TWINPORT_MALLOC_TUNING'];
  delete env['NODE_OPTIONS'];
  return env;
}

test('the launcher execs node (same pid) with the malloc tuning set', async (t) => {
  const seen = await runInspect(baseEnv());
  t.regex(seen.exe, /\/node[^/]*$/, 'the pid we spawned is node itself, not a shell waiting on it');
  t.is(seen.env.get('MALLOC_TRIM_THRESHOLD_'), '67108864');
  t.is(seen.env.get('MALLOC_TOP_PAD_'), '16777216');
  // docs/benchmarks.md "Memory after a burst": V8's new space stays at most 2 × 2 MiB.
  t.is(seen.env.get('NODE_OPTIONS'), '--max-semi-space-size=2');
  t.is(seen.semiSpaceMiB, 2, 'and node took it: the new space tops out at two 2 MiB semi-spaces');
  t.is(seen.code, 0);
  t.is((JSON.parse(seen.stdout) as { protocol: string }).protocol, 'http', 'and it is twinport that ran');
});

test("the caller's values win, and TWINPORT_MALLOC_TUNING=0 leaves glibc's defaults", async (t) => {
  const own = await runInspect({ ...baseEnv(), MALLOC_TRIM_THRESHOLD_: '1048576' });
  t.is(own.env.get('MALLOC_TRIM_THRESHOLD_'), '1048576');
  t.is(own.env.get('MALLOC_TOP_PAD_'), '16777216');
  const off = await runInspect({ ...baseEnv(), TWINPORT_MALLOC_TUNING: '0' });
  t.false(off.env.has('MALLOC_TRIM_THRESHOLD_'));
  t.false(off.env.has('MALLOC_TOP_PAD_'));
  t.is(off.code, 0);
  // A caller's NODE_OPTIONS is kept, after ours: for V8 flags the last one wins.
  const semi = await runInspect({ ...baseEnv(), NODE_OPTIONS: '--max-semi-space-size=1 --stack-trace-limit=20' });
  t.is(semi.env.get('NODE_OPTIONS'), '--max-semi-space-size=2 --max-semi-space-size=1 --stack-trace-limit=20');
  t.is(semi.semiSpaceMiB, 1, 'the later flag, the caller\'s, is the one node took');
  t.is(semi.code, 0);
});
