// What a burst of garbage connections leaves in twinport's memory once it is idle again (issue 12, item 10),
// and which allocator holds it. For each io engine and each setting (malloc tuning, V8's young generation): twinport started by its
// launcher (bin/twinport) with that environment, idle RSS measured, a burst of garbage connections
// (random bytes no probe claims, so they take the `other` route to a sink that discards them; each
// client writes, half-closes and waits for twinport to close), then RSS right after and while it idles.
//
//   npm run build && node dist/bench/memory-burst.js [--connections 20000] [--concurrency 100]
//       [--settle 30] [--engines libuv,streams] [--variants launcher,glibc-v8default,…] [--rounds 1]
//       [--json] [--diagnose-gc] [--launcher PATH]
//       [--variant 'name=MALLOC_TRIM_THRESHOLD_=4194304,MALLOC_TOP_PAD_=0']   (repeatable: extra settings)
//
// Bounded: the connection count is fixed, at most --concurrency are open at once, everything on
// loopback, and each connection is given 10 s before the client gives up on it.
//
// Where the memory is: RSS (VmRSS) and the Rss of the `[heap]` mapping from /proc/PID/smaps (glibc's main
// arena, which is where the main thread's malloc lives and the only place MALLOC_TRIM_THRESHOLD_ /
// MALLOC_TOP_PAD_ act on at the top), and V8's own view (process.memoryUsage(): heapTotal, heapUsed,
// external, arrayBuffers) from bench/memory-probe.ts loaded into twinport with NODE_OPTIONS=--import.
// Nothing calls global.gc: twinport runs without --expose-gc in production, so neither does this.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../test/helpers/prng.js';
import { freePort, spawnChild, waitForPort, type Child } from './children.js';
import { CLK_TCK, treeUsage } from './proc-stats.js';

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** --launcher PATH: another launcher (e.g. a copy with other node flags on its exec line) for every row. */
const LAUNCHER = process.argv.includes('--launcher') ? resolve(process.argv[process.argv.indexOf('--launcher') + 1]!) : join(repoRoot, 'bin', 'twinport');
const PROBE = fileURLToPath(new URL('./memory-probe.js', import.meta.url));

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
function args(name: string): string[] {
  const out: string[] = [];
  process.argv.forEach((a, i) => {
    if (a === `--${name}` && process.argv[i + 1] !== undefined) out.push(process.argv[i + 1]!);
  });
  return out;
}

const CONNECTIONS = Number(arg('connections') ?? 20000);
const CONCURRENCY = Math.min(Number(arg('concurrency') ?? 100), 500);
const SETTLE_S = Number(arg('settle') ?? 30);
const ROUNDS = Number(arg('rounds') ?? 1);
const ENGINES = (arg('engines') ?? 'libuv,streams').split(',');
const JSON_OUT = process.argv.includes('--json');
/**
 * Diagnosis only: run twinport with --expose-gc and, after the idle period, ask the probe for one full
 * collection. What it frees was garbage no collection had reached; what stays is held by something.
 */
const DIAGNOSE_GC = process.argv.includes('--diagnose-gc');
/** Idle time after start before the baseline is read: start-up's own allocations settle. */
const IDLE_BEFORE_S = 5;

const MiB = 1024 * 1024;

/**
 * The settings compared. The launcher puts its V8 flag first in NODE_OPTIONS and a later one wins, so a
 * variant's own NODE_OPTIONS overrides it; `--max-semi-space-size=16` is V8's own cap on 64-bit Node 20
 * (the new space grows to 2 × 16 MiB), i.e. the launcher without its V8 flag.
 */
const V8_DEFAULT = '--max-semi-space-size=16';
const VARIANTS = new Map<string, Record<string, string>>([
  // bin/twinport as shipped: whatever it sets by itself.
  ['launcher', {}],
  // bin/twinport before issue 12: malloc tuning only.
  ['malloc64M-v8default', { MALLOC_TRIM_THRESHOLD_: String(64 * MiB), MALLOC_TOP_PAD_: String(16 * MiB), NODE_OPTIONS: V8_DEFAULT }],
  // no tuning at all: glibc's and V8's defaults.
  ['glibc-v8default', { TWINPORT_MALLOC_TUNING: '0', NODE_OPTIONS: V8_DEFAULT }],
  // a smaller trim threshold alone
  ['malloc4M-v8default', { MALLOC_TRIM_THRESHOLD_: String(4 * MiB), MALLOC_TOP_PAD_: String(1 * MiB), NODE_OPTIONS: V8_DEFAULT }],
  // the young generation capped lower or higher than the launcher's 2 MiB
  ['semi1', { NODE_OPTIONS: '--max-semi-space-size=1' }],
  ['semi4', { NODE_OPTIONS: '--max-semi-space-size=4' }],
]);
const DEFAULT_VARIANTS = ['launcher', 'malloc64M-v8default', 'glibc-v8default', 'malloc4M-v8default', 'semi4'];
for (const spec of args('variant')) {
  const eq = spec.indexOf('=');
  const env: Record<string, string> = {};
  for (const kv of spec.slice(eq + 1).split(',')) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  VARIANTS.set(spec.slice(0, eq), env);
}
const CHOSEN = (arg('variants') ?? DEFAULT_VARIANTS.join(',')).split(',');

interface Memory {
  /** VmRSS. */
  readonly rss: number;
  /** Rss of the `[heap]` mapping: glibc's main arena. */
  readonly arena: number;
  /** From the probe inside twinport (the last write, ≤ 250 ms old). */
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** v8.getHeapSpaceStatistics(): committed size and used bytes per space (new_space, old_space, …). */
  readonly spaces: Record<string, { size: number; used: number }>;
}

function readMemory(pid: number, probeFile: string): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  let arena = 0;
  let inHeap = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.endsWith('[heap]');
    else if (inHeap && line.startsWith('Rss:')) arena += Number(/(\d+) kB/.exec(line)?.[1] ?? 0) * 1024;
  }
  let v8: Omit<Memory, 'rss' | 'arena'> = { heapTotal: Number.NaN, heapUsed: Number.NaN, external: Number.NaN, arrayBuffers: Number.NaN, spaces: {} };
  try {
    v8 = JSON.parse(readFileSync(probeFile, 'utf8')) as typeof v8;
  } catch {
    // not written yet
  }
  return { rss, arena, heapTotal: v8.heapTotal, heapUsed: v8.heapUsed, external: v8.external, arrayBuffers: v8.arrayBuffers, spaces: v8.spaces };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A backend for the `other` pool: reads everything, closes when the client half-closes. */
async function startSink(): Promise<net.Server> {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.resume();
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return srv;
}

interface BurstResult {
  readonly closed: number;
  readonly errors: number;
  readonly timedOut: number;
  readonly seconds: number;
  readonly peakRss: number;
}

/** CONNECTIONS garbage connections, CONCURRENCY at a time. */
async function burst(port: number, pid: number, seed: number): Promise<BurstResult> {
  const rand = mulberry32(seed);
  let next = 0;
  let closed = 0;
  let errors = 0;
  let timedOut = 0;
  let peakRss = 0;
  const sampler = setInterval(() => {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      peakRss = Math.max(peakRss, Number(m?.[1] ?? 0) * 1024);
    } catch {
      // twinport gone: the run will fail on its own
    }
  }, 100);
  const one = (): Promise<void> =>
    new Promise((done) => {
      // 1..4096 random bytes: no probe claims them (random data matches a TLS record header or an HTTP
      // method only by a ~1e-5 chance, and then is rejected, which is just as garbage), so each takes
      // `other` at the client's FIN.
      const bytes = Buffer.alloc(1 + Math.floor(rand() * 4096));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const timer = setTimeout(() => {
        timedOut++;
        s.destroy();
      }, 10_000);
      s.on('connect', () => s.end(bytes));
      s.on('data', () => {});
      s.on('end', () => s.end());
      s.on('error', () => errors++);
      s.on('close', () => {
        clearTimeout(timer);
        closed++;
        done();
      });
    });
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CONNECTIONS) {
        next++;
        await one();
      }
    }),
  );
  clearInterval(sampler);
  return { closed, errors, timedOut, seconds: Number(process.hrtime.bigint() - started) / 1e9, peakRss };
}

interface Row {
  readonly engine: string;
  readonly variant: string;
  readonly round: number;
  readonly env: Record<string, string>;
  readonly idle: Memory;
  readonly peakRss: number;
  readonly after: Memory;
  readonly settled: Memory;
  /** With --diagnose-gc: after one forced full collection. */
  readonly afterGc?: Memory;
  /** RSS every second while idling after the burst. */
  readonly curve: number[];
  readonly burst: BurstResult;
  readonly cpuMsPerConnection: number;
}

async function measure(engine: string, variant: string, round: number, sinkPort: number, dir: string): Promise<Row> {
  const env = VARIANTS.get(variant)!;
  const port = await freePort();
  const config = join(dir, `${engine}.yaml`);
  writeFileSync(
    config,
    `io_engine: ${engine}
listeners:
  - name: burst
    bind: "127.0.0.1:${port}"
    routes:
      - { match: { protocol: [tls, http, h2c, other] }, to: sink }
pools:
  sink:
    servers: ["127.0.0.1:${sinkPort}"]
`,
  );
  const probeFile = join(dir, `probe-${engine}-${variant}-${round}.json`);
  const nodeOptions = [`--import=${PROBE}`, ...(DIAGNOSE_GC ? ['--expose-gc'] : []), ...(env['NODE_OPTIONS'] === undefined ? [] : [env['NODE_OPTIONS']])];
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, NODE_OPTIONS: nodeOptions.join(' '), TWINPORT_BENCH_MEMORY_FILE: probeFile };
  // What the caller's shell set must not leak into a variant: each row is exactly its own environment.
  for (const k of ['MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_ARENA_MAX', 'TWINPORT_MALLOC_TUNING']) {
    if (!(k in env)) delete childEnv[k];
  }
  // info: a close line per connection, as a default install logs (to /dev/null here).
  const tw: Child = spawnChild(`twinport-${engine}-${variant}`, LAUNCHER, ['--config', config, '--log-level', 'info'], {
    env: childEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    await waitForPort(port, tw);
    await sleep(IDLE_BEFORE_S * 1000);
    const idle = readMemory(tw.pid, probeFile);
    const before = treeUsage(tw.pid);
    const b = await burst(port, tw.pid, 0x5eed + round);
    const cpu = treeUsage(tw.pid);
    await sleep(300); // the probe's next write
    const after = readMemory(tw.pid, probeFile);
    const curve: number[] = [];
    for (let s = 1; s <= SETTLE_S; s++) {
      await sleep(1000);
      curve.push(readMemory(tw.pid, probeFile).rss);
    }
    const settled = readMemory(tw.pid, probeFile);
    const cpuSec = cpu.userSec + cpu.sysSec - before.userSec - before.sysSec;
    const row: Row = { engine, variant, round, env, idle, peakRss: Math.max(b.peakRss, after.rss), after, settled, curve, burst: b, cpuMsPerConnection: (cpuSec * 1000) / b.closed };
    if (!DIAGNOSE_GC) return row;
    writeFileSync(`${probeFile}.gc`, '');
    await sleep(1000);
    return { ...row, afterGc: readMemory(tw.pid, probeFile) };
  } finally {
    await tw.stop();
  }
}

const mib = (n: number): string => (Number.isNaN(n) ? '–' : (n / MiB).toFixed(1));
const signed = (n: number): string => `${n >= 0 ? '+' : ''}${mib(n)}`;
function spacesKept(a: Memory, b: Memory): string {
  return Object.keys(b.spaces)
    .map((k) => ({ k, size: b.spaces[k]!.size - (a.spaces[k]?.size ?? 0), used: b.spaces[k]!.used - (a.spaces[k]?.used ?? 0) }))
    .filter((d) => Math.abs(d.size) >= MiB / 2 || Math.abs(d.used) >= MiB / 2)
    .map((d) => `${d.k} ${signed(d.size)} / ${signed(d.used)}`)
    .join(', ');
}
const envText = (env: Record<string, string>): string =>
  Object.keys(env).length === 0 ? '(bin/twinport as shipped)' : Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'twp-memburst-'));
  const sink = await startSink();
  const sinkPort = (sink.address() as net.AddressInfo).port;
  const rows: Row[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const engine of ENGINES) {
        for (const variant of CHOSEN) {
          if (!VARIANTS.has(variant)) throw new Error(`unknown variant ${variant}: ${[...VARIANTS.keys()].join(', ')}`);
          const row = await measure(engine, variant, round, sinkPort, dir);
          rows.push(row);
          process.stderr.write(
            `${engine} ${variant} r${round}: idle ${mib(row.idle.rss)} → peak ${mib(row.peakRss)} → after ${mib(row.after.rss)} → +${SETTLE_S}s ${mib(row.settled.rss)} MiB ` +
              `(arena ${mib(row.idle.arena)} → ${mib(row.settled.arena)}, V8 heapTotal ${mib(row.idle.heapTotal)} → ${mib(row.settled.heapTotal)}; ` +
              `${row.burst.closed} closed, ${row.burst.errors} errors, ${row.burst.timedOut} timed out, ${row.burst.seconds.toFixed(1)} s)\n` +
              `  kept per V8 space (committed / used): ${spacesKept(row.idle, row.settled)}\n` +
              (row.afterGc === undefined
                ? ''
                : `  after one forced full GC: RSS ${mib(row.afterGc.rss)} (kept ${signed(row.afterGc.rss - row.idle.rss)}), heapTotal kept ${signed(row.afterGc.heapTotal - row.idle.heapTotal)}, heapUsed kept ${signed(row.afterGc.heapUsed - row.idle.heapUsed)}; per space ${spacesKept(row.idle, row.afterGc)}\n`),
          );
        }
      }
    }
  } finally {
    sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
  if (JSON_OUT) {
    console.log(JSON.stringify({ connections: CONNECTIONS, concurrency: CONCURRENCY, settleSeconds: SETTLE_S, clkTck: CLK_TCK, rows }, null, 2));
    return;
  }
  console.log(`${CONNECTIONS} garbage connections, ${CONCURRENCY} at a time; RSS in MiB; "+${SETTLE_S} s" is after ${SETTLE_S} s idle.\n`);
  console.log(`| engine | setting | idle RSS | peak | right after | +${SETTLE_S} s | kept (+${SETTLE_S} s − idle) | of which main arena | V8 heapTotal kept | V8 heapUsed kept | external kept | proxy CPU ms/conn |`);
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.engine} | ${r.variant}${ROUNDS > 1 ? ` (round ${r.round})` : ''} | ${mib(r.idle.rss)} | ${mib(r.peakRss)} | ${mib(r.after.rss)} | ${mib(r.settled.rss)} | **${signed(r.settled.rss - r.idle.rss)}** | ${signed(r.settled.arena - r.idle.arena)} | ${signed(r.settled.heapTotal - r.idle.heapTotal)} | ${signed(r.settled.heapUsed - r.idle.heapUsed)} | ${signed(r.settled.external - r.idle.external)} | ${r.cpuMsPerConnection.toFixed(3)} |`,
    );
  }
  console.log('\nSettings:');
  for (const v of CHOSEN) console.log(`- ${v}: ${envText(VARIANTS.get(v)!)}`);
}

await main();
