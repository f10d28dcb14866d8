// P1 (issue 5, benchmark part): what pool policies cost and what TLS affinity buys.
//
//  1. Cost per new TLS connection: three twinport processes, one `https` pool of three servers that do
//     not share ticket keys, differing only in the policy (`round-robin`, `hash` on the source address,
//     `hash` + `affinity: tls`), measured one after another under S4's load (a new TLS handshake per
//     request) with autocannon and wrk, in rounds with the order rotated. Proxy CPU µs per request is
//     the figure to compare; the target is "indistinguishable within noise".
//  2. Hit rate: bench/resume-client.ts (most connections resume a saved session, some from another
//     address) through a fresh twinport per policy, TLS 1.3 and TLS 1.2; twinport's affinity counters
//     come from its `stopped` log line on SIGTERM.
//  3. Maglev: bench/pools-maglev.ts in its own process on the proxy's CPU.
//
// Pinning as in bench/run.ts: twinport alone on the last CPU, load generators and backends on the
// others. Bounded in time everywhere; loopback only.
//
//   node dist/bench/pools.js [--quick] [--json] [--duration N] [--rounds N] [--no-wrk] [--node-backends]
//                            [--proxy-cpus LIST --load-cpus LIST] [--dir DIR]
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { AffinityStats } from '../src/affinity/affinity-pool.js';
import { startTicketBackends, type TicketBackends } from './backends.js';
import { HAVE_TASKSET, hasCommand, runToEnd, spawnChild, stopAll, waitForPort, freePort, type Child } from './children.js';
import { runAutocannon } from './run-autocannon.js';
import type { LoadResult, LoadSpec } from './load-autocannon.js';
import type { MaglevBenchReport } from './pools-maglev.js';
import { poolsMarkdown, type CostCell, type CostSample, type PoolBenchReport, type PoolPolicy, type ResumeCell } from './pools-report.js';
import { hardNofile, treeUsage } from './proc-stats.js';
import type { ResumeResult, ResumeSpec } from './resume-client.js';
import { BENCH_SNI } from './route-check.js';
import { runWrk } from './wrk.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const benchDir = fileURLToPath(new URL('./', import.meta.url));
const twinportMain = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

export const POOL_SERVERS = 3;
/** S4's load: a new connection and TLS handshake per request. */
const COST_CONNECTIONS = 20;

const RR: PoolPolicy = { id: 'round-robin', balance: 'round-robin', affinity: false };
const RR_AFFINITY: PoolPolicy = { id: 'round-robin + affinity', balance: 'round-robin', affinity: true };
const HASH: PoolPolicy = { id: 'hash', balance: 'hash', hashKey: 'source-ip', affinity: false };
const HASH_AFFINITY: PoolPolicy = { id: 'hash + affinity', balance: 'hash', hashKey: 'source-ip', affinity: true };

/** Part 1 compares against the first. */
export const COST_POLICIES: readonly PoolPolicy[] = [RR, HASH, HASH_AFFINITY];
export const RESUME_POLICIES: readonly PoolPolicy[] = [RR, RR_AFFINITY, HASH, HASH_AFFINITY];

interface Options {
  readonly quick: boolean;
  readonly json: boolean;
  readonly durationSec: number;
  readonly rounds: number;
  readonly wrk: boolean;
  readonly nodeBackends: boolean;
  readonly proxyCpus: string | undefined;
  readonly loadCpus: string | undefined;
  readonly dir: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      'no-wrk': { type: 'boolean', default: false },
      'node-backends': { type: 'boolean', default: false },
      'proxy-cpus': { type: 'string' },
      'load-cpus': { type: 'string' },
      dir: { type: 'string' },
    },
    strict: true,
  });
  const whole = (text: string | undefined, dflt: number, max: number, what: string): number => {
    const n = text === undefined ? dflt : Number(text);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${what}: a whole number from 1 to ${max}`);
    return n;
  };
  // The same layout as bench/run.ts: the proxy alone on the last CPU.
  const n = os.availableParallelism();
  const pinned = HAVE_TASKSET && n >= 2;
  return {
    quick: values.quick,
    json: values.json,
    durationSec: whole(values.duration, values.quick ? 1 : 5, 30, 'duration'),
    rounds: whole(values.rounds, values.quick ? 1 : 3, 10, 'rounds'),
    wrk: !values['no-wrk'] && hasCommand('wrk'),
    nodeBackends: values['node-backends'],
    proxyCpus: values['proxy-cpus'] ?? (pinned ? String(n - 1) : undefined),
    loadCpus: values['load-cpus'] ?? (pinned ? (n === 2 ? '0' : `0-${n - 2}`) : undefined),
    dir: values.dir ?? join(repoRoot, '.bench-out', 'work', 'pools'),
  };
}

/** utime + stime of the process tree, seconds. */
function cpuSeconds(pid: number): number {
  const u = treeUsage(pid);
  return u.userSec + u.sysSec;
}

function log(text: string): void {
  process.stderr.write(`[bench P1] ${text}\n`);
}

function twinportYaml(port: number, servers: readonly number[], p: PoolPolicy): string {
  return `# generated by bench/pools.ts (policy: ${p.id})
listeners:
  - name: p1
    bind: "127.0.0.1:${port}"
    routes:
      - match: { protocol: tls }
        to: https
shutdown_timeout: 2s
pools:
  https:
    balance: ${p.balance}
${p.hashKey === undefined ? '' : `    hash_key: ${p.hashKey}\n`}${p.affinity ? '    affinity: tls\n' : ''}    servers: [${servers.map((s) => `"127.0.0.1:${s}"`).join(', ')}]
`;
}

interface Twinport {
  readonly policy: PoolPolicy;
  readonly port: number;
  readonly child: Child;
  readonly logFile: string;
}

async function startTwinport(dir: string, name: string, b: TicketBackends, p: PoolPolicy, level: 'warn' | 'info', cpus: string | undefined): Promise<Twinport> {
  const port = await freePort();
  const file = join(dir, `twinport-${name}.yaml`);
  writeFileSync(file, twinportYaml(port, b.ports, p));
  const logFile = join(dir, `twinport-${name}.log`);
  const fd = openSync(logFile, 'w');
  try {
    const child = spawnChild(`twinport (${p.id})`, process.execPath, [twinportMain, '--config', file, '--log-level', level], {
      cpus,
      stdio: ['ignore', fd, 'pipe'],
    });
    await waitForPort(port, child);
    return { policy: p, port, child, logFile };
  } finally {
    closeSync(fd); // the child has its own copy
  }
}

/** One GET through the proxy: it must reach one of the pool's servers. */
function checkThrough(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, path: '/', agent: false, servername: BENCH_SNI, rejectUnauthorized: false, timeout: 10000 },
      (res) => {
        res.resume();
        res.on('end', () => {
          const backend = String(res.headers['x-backend'] ?? '');
          if (res.statusCode === 200 && backend.startsWith('https-')) resolve(backend);
          else reject(new Error(`GET / answered ${res.statusCode} from "${backend}"`));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}


function costSpec(port: number, durationSec: number): LoadSpec {
  return { url: `https://127.0.0.1:${port}/`, connections: COST_CONNECTIONS, durationSec, reconnect: true, servername: BENCH_SNI };
}

async function measureCost(t: Twinport, tool: CostCell['tool'], o: Options): Promise<CostSample> {
  const spec = costSpec(t.port, o.durationSec);
  const before = cpuSeconds(t.child.pid);
  const r = tool === 'autocannon' ? await runAutocannon(spec, o.loadCpus) : await runWrk(spec, o.loadCpus);
  const cpu = cpuSeconds(t.child.pid) - before;
  return {
    requests: r.requests,
    reqPerSec: r.reqPerSec,
    latencyP99Ms: r.latencyP99Ms,
    ...(r.requests > 0 && { proxyCpuUsPerReq: (cpu * 1e6) / r.requests }),
    errors: r.errors + r.non2xx,
  };
}

async function runCost(o: Options, b: TicketBackends, notes: string[]): Promise<CostCell[]> {
  const dir = join(o.dir, 'cost');
  mkdirSync(dir, { recursive: true });
  const procs: Twinport[] = [];
  try {
    for (const [i, p] of COST_POLICIES.entries()) procs.push(await startTwinport(dir, `cost-${i}`, b, p, 'warn', o.proxyCpus));
    for (const t of procs) log(`${t.policy.id}: routes TLS to ${await checkThrough(t.port)} (checked)`);
    const tools: CostCell['tool'][] = o.wrk ? ['autocannon', 'wrk'] : ['autocannon'];
    const samples = new Map<string, CostSample[]>();
    if (!o.quick) for (const t of procs) await runAutocannon(costSpec(t.port, 1), o.loadCpus); // warm-up
    for (let round = 0; round < o.rounds; round++) {
      // Rotate the order each round, so a drift in machine load does not always favour the same policy.
      const order = procs.map((_, i) => procs[(i + round) % procs.length]!);
      for (const tool of tools) {
        for (const t of order) {
          const s = await measureCost(t, tool, o);
          const key = `${t.policy.id}\0${tool}`;
          samples.set(key, [...(samples.get(key) ?? []), s]);
          const cpu = s.proxyCpuUsPerReq === undefined ? '' : `, proxy ${s.proxyCpuUsPerReq.toFixed(0)} µs/req`;
          log(`round ${round + 1} ${tool} ${t.policy.id}: ${s.reqPerSec.toFixed(0)} req/s${cpu}, errors ${s.errors}`);
        }
      }
    }
    const [one] = os.loadavg();
    if (one !== undefined && one > 0.5) notes.push(`load average ${one.toFixed(2)} after the cost cells: other work shares the machine.`);
    return tools.flatMap((tool) => COST_POLICIES.map((p) => ({ policy: p.id, tool, samples: samples.get(`${p.id}\0${tool}`) ?? [] })));
  } finally {
    for (const t of procs) await t.child.stop();
  }
}

/** The `affinity.https` counters of twinport's `stopped` line (pino JSON on stdout). */
function stoppedCounters(logFile: string): AffinityStats | undefined {
  for (const line of readFileSync(logFile, 'utf8').split('\n').reverse()) {
    if (!line.includes('"stopped"')) continue;
    try {
      const o = JSON.parse(line) as { msg?: string; affinity?: Record<string, AffinityStats> };
      if (o.msg === 'stopped') return o.affinity?.['https'];
    } catch {
      // a torn line: keep looking
    }
  }
  return undefined;
}

async function runResumeCell(
  o: Options,
  b: TicketBackends,
  p: PoolPolicy,
  spec: Omit<ResumeSpec, 'port'>,
  index: number,
  notes: string[],
): Promise<ResumeCell> {
  const dir = join(o.dir, 'resume');
  mkdirSync(dir, { recursive: true });
  const t = await startTwinport(dir, `resume-${index}`, b, p, 'info', o.proxyCpus);
  let result: ResumeResult;
  let cpu: number;
  try {
    const before = cpuSeconds(t.child.pid);
    const r = await runToEnd('resume client', process.execPath, [join(benchDir, 'resume-client.js'), JSON.stringify({ ...spec, port: t.port })], {
      cpus: o.loadCpus,
      timeoutMs: spec.deadlineMs + 30000,
    });
    cpu = cpuSeconds(t.child.pid) - before;
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.code !== 0 || line === '') throw new Error(`resume client failed (exit ${r.code}): ${r.stderr.trim()}`);
    result = JSON.parse(line) as ResumeResult;
  } finally {
    await t.child.stop(); // SIGTERM: twinport logs its counters in the `stopped` line
  }
  const affinity = p.affinity ? stoppedCounters(t.logFile) : undefined;
  if (p.affinity && affinity === undefined) notes.push(`${p.id}, ${spec.maxVersion}: no \`stopped\` line with affinity counters in ${t.logFile}.`);
  if (result.firstError !== undefined) notes.push(`${p.id}, ${spec.maxVersion}: ${result.failed} connections failed; first: ${result.firstError}`);
  return {
    policy: p.id,
    maxVersion: spec.maxVersion,
    result,
    ...(affinity !== undefined && { affinity }),
    ...(result.completed > 0 && { proxyCpuUsPerConn: (cpu * 1e6) / result.completed }),
  };
}

function resumeBase(quick: boolean): Omit<ResumeSpec, 'port' | 'maxVersion'> {
  return {
    servername: BENCH_SNI,
    connections: quick ? 300 : 2000,
    concurrency: 8,
    clients: quick ? 30 : 100,
    resumeShare: 0.9,
    roamShare: 0.25,
    deadlineMs: quick ? 20000 : 60000,
    seed: 5,
  };
}

async function runMaglevChild(o: Options): Promise<MaglevBenchReport> {
  const args = [join(benchDir, 'pools-maglev.js'), '--json', ...(o.quick ? ['--quick'] : [])];
  const r = await runToEnd('maglev bench', process.execPath, args, { cpus: o.proxyCpus, timeoutMs: 300000 });
  if (r.code !== 0) throw new Error(`maglev bench failed (exit ${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as MaglevBenchReport;
}

export async function runPoolsBench(o: Options): Promise<PoolBenchReport> {
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true });
  const notes: string[] = [];
  const nofile = hardNofile();
  let backends = await startTicketBackends(join(o.dir, 'backends-cost'), o.loadCpus, nofile, POOL_SERVERS, o.nodeBackends);
  const kind = backends.kind;
  log(`backends: ${kind}, HTTPS on ${backends.ports.join(', ')}, one ticket key each`);
  let cost: CostCell[];
  const resume: ResumeCell[] = [];
  const base = resumeBase(o.quick);
  try {
    cost = await runCost(o, backends, notes);
    // Fresh backends for the resumption runs: no session state left from the cost cells.
    await backends.child.stop();
    backends = await startTicketBackends(join(o.dir, 'backends-resume'), o.loadCpus, nofile, POOL_SERVERS, o.nodeBackends);
    let i = 0;
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      for (const p of RESUME_POLICIES) {
        const cell = await runResumeCell(o, backends, p, { ...base, maxVersion }, i++, notes);
        resume.push(cell);
        const x = cell.result;
        const a = cell.affinity;
        log(
          `resume ${maxVersion} ${p.id}: ${x.resumedByServer}/${x.offered} offers resumed, ${x.completed} done in ${x.ms} ms` +
            (a === undefined ? '' : `; learned ${a.learned} hit ${a.hit} miss ${a.miss} stale ${a.stale} unlearned ${a.unlearned}`),
        );
      }
    }
  } finally {
    await backends.child.stop();
  }
  const maglev = await runMaglevChild(o);
  const { seed: _seed, ...resumeSpec } = base;
  return {
    backends: kind,
    servers: POOL_SERVERS,
    durationSec: o.durationSec,
    rounds: o.rounds,
    connections: COST_CONNECTIONS,
    cost,
    resumeSpec,
    resume,
    maglev,
    notes,
  };
}

/** What bench/run.ts passes down; the child's own defaults fill the rest. */
export interface PoolsChildOptions {
  readonly quick: boolean;
  readonly durationSec: number;
  readonly wrk: boolean;
  readonly nodeBackends: boolean;
  readonly proxyCpus: string | undefined;
  readonly loadCpus: string | undefined;
  readonly dir: string;
}

/**
 * Runs P1 as a child (`pools.js --json`), as bench/run.ts runs the parser bench: the child pins its own
 * children, so it is not pinned itself. Its progress lines go straight to our stderr.
 */
export async function runPoolsChild(o: PoolsChildOptions): Promise<PoolBenchReport> {
  const args = [
    fileURLToPath(import.meta.url),
    '--json',
    '--duration',
    String(o.durationSec),
    '--dir',
    o.dir,
    ...(o.quick ? ['--quick'] : []),
    ...(o.wrk ? [] : ['--no-wrk']),
    ...(o.nodeBackends ? ['--node-backends'] : []),
    ...(o.proxyCpus === undefined ? [] : ['--proxy-cpus', o.proxyCpus]),
    ...(o.loadCpus === undefined ? [] : ['--load-cpus', o.loadCpus]),
  ];
  const child = spawnChild('P1', process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.proc.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  // The child bounds itself (BUDGET_MS) and stops its own children; this is the backstop.
  const timer = setTimeout(() => void child.stop(), budgetMs(o.quick) + 60000);
  const code = await child.exited;
  clearTimeout(timer);
  const line = stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || line === '') throw new Error(`P1 child failed (exit ${code})`);
  return JSON.parse(line) as PoolBenchReport;
}

/** The whole of P1, at most: past it the child stops its children and exits. */
function budgetMs(quick: boolean): number {
  return (quick ? 5 : 20) * 60000;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  setTimeout(() => {
    process.stderr.write(`[bench P1] over its ${budgetMs(o.quick) / 60000} min budget: stopping\n`);
    void stopAll().then(() => process.exit(124));
  }, budgetMs(o.quick)).unref();
  const onSignal = (): void => {
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = await runPoolsBench(o);
    process.stdout.write(o.json ? `${JSON.stringify(report)}\n` : `${poolsMarkdown(report)}\n`);
  } finally {
    await stopAll();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch(async (e: unknown) => {
    process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
    await stopAll();
    process.exitCode = 1;
  });
}
