// Signals from the first instant (bin/twinport + src/cli/early-signals.ts): SIGHUP, SIGUSR2 and SIGTERM
// sent 1, 10 or 50 ms after spawn never kill twinport. Node resets every signal to its default when it
// starts and runs twinport's first statement 40–250 ms later, so the launcher holds the signals meanwhile
// and forwards them once node's handlers are in place: the held SIGHUP becomes a reload, SIGUSR2 an
// upgrade attempt, SIGTERM a graceful stop (exit 0).
//
// The clock starts when the launcher's own first line has run (its traps are visible in
// /proc/PID/status), or when the process is node (a launcher that execs at once): before that, between exec and a shell's first instruction (~0.4 ms idle, a few ms on
// a loaded host), no program can catch a signal, and the default action applies to any process.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const LAUNCHER = fileURLToPath(new URL('../../../bin/twinport', import.meta.url));
/** Spawns per signal (the issue's 50), delays cycling 1/10/50 ms; TWINPORT_EARLY_SIGNAL_SPAWNS lowers it. */
const SPAWNS = Number(process.env['TWINPORT_EARLY_SIGNAL_SPAWNS'] ?? 50);
const DELAYS = [1, 10, 50];
// Two at a time: each start is a node boot, and the suite shares the CPU with the load tests.
const PARALLEL = 2;

const file = join(mkdtempSync(join(tmpdir(), 'twp-early-')), 'twinport.yaml');
writeFileSync(file, 'listeners:\n  - bind: "127.0.0.1:0"\n    routes: [{ match: { protocol: http }, to: b }]\npools:\n  b:\n    servers: ["127.0.0.1:9"]\n');

const SIGNAL_BITS: Record<string, bigint> = { SIGHUP: 1n << 0n, SIGUSR2: 1n << 11n, SIGTERM: 1n << 14n };

/**
 * The launcher's shell has run its first line (its traps are set), or the process is node already (a
 * launcher that execs node at once: then node's own start is the window under test).
 */
function clockStarts(pid: number): boolean {
  try {
    if (readlinkSync(`/proc/${pid}/exe`) === process.execPath) return true;
    const caught = BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]}`);
    return Object.values(SIGNAL_BITS).every((bit) => (caught & bit) !== 0n);
  } catch {
    return false;
  }
}

interface Outcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly sawEffect: boolean;
}

/** One spawn: the signal `delay` ms after the launcher can catch it; then proof it was handled; then SIGTERM. */
async function once(signal: 'SIGHUP' | 'SIGUSR2' | 'SIGTERM', delay: number): Promise<Outcome> {
  // SIGUSR2 starts an upgrade: a build that cannot start makes it fail at once, and the old one serves on.
  const env = { ...process.env, TWINPORT_BIN: '/bin/false' };
  const child = spawn(LAUNCHER, ['run', '-c', file], { stdio: ['ignore', 'pipe', 'ignore'], env });
  const exited = new Promise<Outcome>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig, sawEffect })));
  let sawEffect = false;
  const effect = { SIGHUP: 'reloaded', SIGUSR2: 'upgrade failed: this process keeps serving', SIGTERM: 'stopped' }[signal];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.includes(`"msg":"${effect}"`)) sawEffect = true;
    if (line.includes('"msg":"ready"')) ready();
  });
  const deadline = Date.now() + 5000;
  while (!clockStarts(child.pid!) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  const start = performance.now();
  while (performance.now() - start < delay) await new Promise((r) => setTimeout(r, Math.max(0, delay - (performance.now() - start))));
  child.kill(signal);
  if (signal !== 'SIGTERM') {
    const done = await Promise.race([isReady.then(() => 'ready'), exited.then(() => 'exited')]);
    if (done === 'ready') {
      // The held signal is handled right after 'ready': wait for its effect, bounded.
      const until = Date.now() + 10_000;
      while (!sawEffect && child.exitCode === null && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      child.kill('SIGTERM');
    }
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const outcome = await exited;
  clearTimeout(timer);
  return outcome;
}

for (const signal of ['SIGHUP', 'SIGUSR2', 'SIGTERM'] as const) {
  const spawns = signal === 'SIGTERM' ? Math.min(SPAWNS, 15) : SPAWNS;
  test(`${signal} 1/10/50 ms after spawn, ${spawns} spawns: no death, the signal is handled (launcher + early handlers)`, async (t) => {
    const outcomes: (Outcome & { delay: number })[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < spawns) {
          const delay = DELAYS[next++ % DELAYS.length]!;
          outcomes.push({ ...(await once(signal, delay)), delay });
        }
      }),
    );
    const deaths = outcomes.filter((o) => o.signal !== null || o.code !== 0);
    t.log(`${signal}: ${outcomes.length} spawns, ${deaths.length} deaths ${JSON.stringify(deaths.slice(0, 5))}`);
    t.is(outcomes.length, spawns);
    t.deepEqual(deaths, []);
    t.deepEqual(outcomes.filter((o) => !o.sawEffect).map((o) => o.delay), [], 'every held signal was handled, none lost');
  });
}

test('a launcher killed outright (SIGKILL, which it cannot forward) does not leave node running', async (t) => {
  const child = spawn(LAUNCHER, ['run', '-c', file], { stdio: ['ignore', 'pipe', 'ignore'] });
  const nodePid = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"msg":"ready"')) resolve((JSON.parse(line) as { pid: number }).pid);
    }),
  );
  t.not(nodePid, child.pid, 'node runs as the launcher\'s child');
  child.kill('SIGKILL');
  const deadline = Date.now() + 10_000;
  let gone = false;
  while (!gone && Date.now() < deadline) {
    try {
      process.kill(nodePid, 0);
      gone = /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${nodePid}/stat`, 'utf8'));
    } catch {
      gone = true;
    }
    if (!gone) await new Promise((r) => setTimeout(r, 50));
  }
  if (!gone) process.kill(nodePid, 'SIGKILL');
  t.true(gone, 'node stopped once its launcher was gone');
});
