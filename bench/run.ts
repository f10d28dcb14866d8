// The benchmark runner (issue 6): `npm run bench [-- options]`.
//
//   --quick               1 s per cell, M1 with 1 000 connections, quick parser bench: a smoke run
//   --only a,b            targets: direct, twinport, haproxy, nginx-stream, sslh, naive (bench/targets.ts)
//   --scenarios S1,S3     scenarios: S1 S2 S3 S4 S5 M1 P1 (S5 = bulk over HTTP and over TLS; P1 = twinport's
//                         pool policies and TLS affinity, bench/pools.ts)
//   --duration N          seconds per measured cell (default 5; quick 1)
//   --no-wrk              autocannon only
//   --profile             afterwards, profile twinport (`node --cpu-prof`) under each selected load scenario
//   --parsers             only the parser micro-benchmark (bench/parsers.ts)
//   --doc / --no-doc      write docs/benchmarks.md (default: only for a full, unfiltered, non-quick run)
//   --node-backends       Node backends even when nginx is installed
//   --rounds N            measure every load cell N times, targets interleaved; report the median round
//   --baseline DIR        also run twinport from DIR (a built checkout) as target `twinport-base`:
//                         before/after of a change in one run, e.g. `git worktree add /tmp/base HEAD~1`
//   --base-env 'K=V K=V'  environment for `twinport-base` only: with `--baseline .` the same build under
//                         other launcher settings (malloc, NODE_OPTIONS), side by side in one run
//
// Every child is pinned with taskset: the proxy under test alone on the last CPU, the load generator
// and the backends on the others. Every run is bounded in time; everything listens on 127.0.0.1.
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBackends, type Backends } from './backends.js';
import { HAVE_TASKSET, hasCommand, runToEnd, spawnChild, stopAll } from './children.js';
import { runAutocannon } from './run-autocannon.js';
import type { LoadResult, LoadSpec } from './load-autocannon.js';
import { describeMachine } from './machine.js';
import { parserMarkdown, type ParserBenchReport } from './parsers.js';
import { hardNofile, treeRssBytes, treeUsage, usageDelta } from './proc-stats.js';
import { runPoolsChild } from './pools.js';
import { summariseProfile } from './profile-summary.js';
import { renderReport, writeDoc, type BenchRecord, type IdleRecord, type LoadRecord, type RunReport } from './report.js';
import { BENCH_SNI, checkRouting } from './route-check.js';
import { idleConnectionsFor, LOAD_SCENARIOS, SCENARIO_GROUPS, type LoadScenario, type ScenarioGroup } from './scenarios.js';
import { cannotRun, notByDefault, startTarget, TARGET_NAMES, type RunningTarget, type TargetContext, type TargetName } from './targets.js';
import { runWrk } from './wrk.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const benchDir = fileURLToPath(new URL('./', import.meta.url));
const outDir = join(repoRoot, '.bench-out');

interface Options {
  readonly quick: boolean;
  readonly targets: readonly TargetName[];
  readonly groups: readonly ScenarioGroup[];
  readonly durationSec: number;
  readonly wrk: boolean;
  readonly profile: boolean;
  readonly parsersOnly: boolean;
  readonly doc: boolean;
  readonly nodeBackends: boolean;
  readonly filtered: boolean;
  readonly baselineDir: string | undefined;
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly rounds: number;
}

function list<T extends string>(text: string | undefined, allowed: readonly T[], what: string): T[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const i of items) {
    if (!(allowed as readonly string[]).includes(i)) throw new Error(`unknown ${what} "${i}" (known: ${allowed.join(', ')})`);
  }
  return items as T[];
}

/** 'K=V K=V' → { K: V }; a value may hold '=' and ',' but not spaces (NODE_OPTIONS flags: join with ','). */
function parseEnv(text: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of (text ?? '').split(/\s+/).filter((s) => s !== '')) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`--base-env: "${kv}" is not KEY=VALUE`);
    const key = kv.slice(0, i);
    env[key] = key === 'NODE_OPTIONS' ? kv.slice(i + 1).split(',').join(' ') : kv.slice(i + 1);
  }
  return env;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      scenarios: { type: 'string' },
      duration: { type: 'string' },
      'no-wrk': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      parsers: { type: 'boolean', default: false },
      doc: { type: 'boolean' },
      'no-doc': { type: 'boolean', default: false },
      'node-backends': { type: 'boolean', default: false },
      baseline: { type: 'string' },
      'base-env': { type: 'string' },
      rounds: { type: 'string' },
    },
    strict: true,
  });
  const only = list(values.only, TARGET_NAMES, 'target');
  const groups = list(values.scenarios?.toUpperCase(), SCENARIO_GROUPS, 'scenario');
  const duration = values.duration === undefined ? (values.quick ? 1 : 5) : Number(values.duration);
  if (!Number.isInteger(duration) || duration < 1 || duration > 30) throw new Error('--duration: whole seconds, 1 to 30');
  const filtered = only !== undefined || groups !== undefined;
  const rounds = values.rounds === undefined ? 1 : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) throw new Error('--rounds: 1 to 9');
  return {
    quick: values.quick,
    targets: only ?? TARGET_NAMES.filter((t) => notByDefault(t, values.baseline) === undefined),
    groups: groups ?? SCENARIO_GROUPS,
    durationSec: duration,
    wrk: !values['no-wrk'],
    profile: values.profile,
    parsersOnly: values.parsers,
    doc: values['no-doc'] ? false : (values.doc ?? (!values.quick && !filtered && values.duration === undefined)),
    nodeBackends: values['node-backends'],
    filtered,
    baselineDir: values.baseline,
    baseEnv: parseEnv(values['base-env']),
    rounds,
  };
}

function commandLine(argv: readonly string[]): string {
  const args = argv.join(' ');
  if (process.env['npm_lifecycle_event'] === 'bench') return args === '' ? 'npm run bench' : `npm run bench -- ${args}`;
  return `node dist/bench/run.js${args === '' ? '' : ` ${args}`}`;
}

interface Layout {
  readonly proxy: string | undefined;
  readonly load: string | undefined;
  /** Multi-process targets (`--workers 2`) run on every CPU, sharing them with the load generator. */
  readonly all: string | undefined;
  readonly text: string;
}

function cpuLayout(): Layout {
  const n = os.availableParallelism();
  if (!HAVE_TASKSET || n < 2) {
    return { proxy: undefined, load: undefined, all: undefined, text: `not pinned (${HAVE_TASKSET ? 'one CPU' : 'no taskset'}): everything shares the CPUs.` };
  }
  const proxy = String(n - 1);
  const load = n === 2 ? '0' : `0-${n - 2}`;
  return {
    proxy,
    load,
    all: `0-${n - 1}`,
    text:
      `the proxy under test alone on CPU ${proxy}; the load generator (autocannon or wrk) and the backends on CPU ${load} ` +
      '(`taskset -c`). With few CPUs the load side saturates first, so req/s are similar across proxies: compare ' +
      'proxy CPU µs/request.',
  };
}

function log(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}


function loadSpec(t: RunningTarget, s: LoadScenario, durationSec: number): LoadSpec {
  const port = s.tls ? t.tlsPort : t.httpPort;
  return {
    url: `${s.tls ? 'https' : 'http'}://127.0.0.1:${port}${s.path}`,
    connections: s.connections,
    durationSec,
    reconnect: s.reconnect,
    ...(s.tls && { servername: BENCH_SNI }),
  };
}

async function measure(
  t: RunningTarget,
  s: LoadScenario,
  tool: 'autocannon' | 'wrk',
  opts: Options,
  layout: Layout,
): Promise<LoadRecord> {
  const spec = loadSpec(t, s, opts.durationSec);
  const pid = t.child?.pid;
  const usageBefore = pid === undefined ? undefined : treeUsage(pid);
  const r = tool === 'autocannon' ? await runAutocannon(spec, layout.load) : await runWrk(spec, layout.load);
  const usage = pid === undefined || usageBefore === undefined ? undefined : usageDelta(usageBefore, treeUsage(pid));
  const cpu = usage === undefined ? undefined : usage.userSec + usage.sysSec;
  return {
    kind: 'load',
    target: t.name,
    scenario: s.id,
    tool,
    connections: s.connections,
    requests: r.requests,
    durationSec: r.durationSec,
    reqPerSec: r.reqPerSec,
    mbPerSec: r.bytesPerSec / 1e6,
    latencyP50Ms: r.latencyP50Ms,
    latencyP99Ms: r.latencyP99Ms,
    ...(cpu !== undefined && {
      proxyCpuPercent: (100 * cpu) / r.durationSec,
      ...(r.requests > 0 && {
        proxyCpuUsPerReq: (cpu * 1e6) / r.requests,
        proxyUserUsPerReq: (usage!.userSec * 1e6) / r.requests,
        proxySysUsPerReq: (usage!.sysSec * 1e6) / r.requests,
        proxyFaultsPerReq: usage!.minorFaults / r.requests,
      }),
    }),
    errors: r.errors,
    non2xx: r.non2xx,
  };
}

/** The round with the median CPU per request (the lower middle one of an even count), with the range of all rounds. */
function medianRound(list: readonly LoadRecord[]): LoadRecord {
  const sorted = [...list].sort((a, b) => (a.proxyCpuUsPerReq ?? a.reqPerSec) - (b.proxyCpuUsPerReq ?? b.reqPerSec));
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  if (list.length === 1) return mid;
  const cpus = list.map((r) => r.proxyCpuUsPerReq).filter((x): x is number => x !== undefined);
  return {
    ...mid,
    rounds: list.length,
    ...(cpus.length > 0 && { proxyCpuUsPerReqRange: [Math.min(...cpus), Math.max(...cpus)] as const }),
  };
}

function addRatios(records: readonly BenchRecord[]): void {
  for (const r of records) {
    if (r.kind !== 'load' || r.target === 'direct') continue;
    const d = records.find(
      (x): x is LoadRecord => x.kind === 'load' && x.target === 'direct' && x.scenario === r.scenario && x.tool === r.tool,
    );
    if (d === undefined) continue;
    const bulk = LOAD_SCENARIOS.find((s) => s.id === r.scenario)?.bulk === true;
    const base = bulk ? d.mbPerSec : d.reqPerSec;
    if (base > 0) r.ratioToDirect = (bulk ? r.mbPerSec : r.reqPerSec) / base;
  }
}

async function measureIdle(t: RunningTarget, count: number, quick: boolean, layout: Layout): Promise<IdleRecord> {
  const pid = t.child!.pid;
  const before = treeRssBytes(pid);
  const deadlineMs = quick ? 15000 : 60000;
  const script = join(benchDir, 'idle-client.js');
  const spec = { port: t.httpPort, count, concurrency: 256, deadlineMs };
  const client = spawnChild('idle client', process.execPath, [script, JSON.stringify(spec)], {
    cpus: layout.load,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('idle client gave no report')), deadlineMs + 10000);
      client.proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        const nl = buf.indexOf('\n');
        if (nl !== -1) {
          clearTimeout(timer);
          resolve(buf.slice(0, nl));
        }
      });
      void client.exited.then(() => reject(new Error(`idle client exited: ${client.stderrTail().trim()}`)));
    });
    const r = JSON.parse(line) as { ready: number; failed: number; ms: number };
    const after = treeRssBytes(pid);
    return {
      kind: 'idle',
      target: t.name,
      wanted: count,
      ready: r.ready,
      failed: r.failed,
      setupMs: r.ms,
      rssBeforeBytes: before,
      rssAfterBytes: after,
      rssPerConnectionBytes: r.ready > 0 ? (after - before) / r.ready : Number.NaN,
    };
  } finally {
    await client.stop();
  }
}

async function runParsersChild(quick: boolean, cpus: string | undefined): Promise<ParserBenchReport> {
  const args = [join(benchDir, 'parsers.js'), '--json', ...(quick ? ['--quick'] : [])];
  const r = await runToEnd('parsers', process.execPath, args, { cpus, timeoutMs: 180000 });
  if (r.code !== 0) throw new Error(`parser bench failed (exit ${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ParserBenchReport;
}

function newestProfile(dir: string): string | undefined {
  try {
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    files.sort((a, b) => statSync(join(dir, b)).mtimeMs - statSync(join(dir, a)).mtimeMs);
    return files[0] === undefined ? undefined : join(dir, files[0]);
  } catch {
    return undefined;
  }
}

async function profileTwinport(
  ctx: TargetContext,
  opts: Options,
  layout: Layout,
): Promise<{ scenario: string; totalMs: number; entries: ReturnType<typeof summariseProfile>['entries'] }[]> {
  const out: { scenario: string; totalMs: number; entries: ReturnType<typeof summariseProfile>['entries'] }[] = [];
  for (const s of LOAD_SCENARIOS.filter((x) => opts.groups.includes(x.group))) {
    const id = s.id;
    const dir = join(outDir, `profile-${id}`);
    rmSync(dir, { recursive: true, force: true });
    log(`profiling twinport under ${id}`);
    const t = await startTarget('twinport', { ...ctx, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
    try {
      await runAutocannon(loadSpec(t, s, opts.durationSec), layout.load);
    } finally {
      await t.stop(); // SIGTERM: twinport shuts down and exits, and node writes the profile
    }
    const file = newestProfile(dir);
    if (file === undefined) continue;
    out.push({ scenario: id, ...summariseProfile(file, 20) });
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const layout = cpuLayout();
  mkdirSync(outDir, { recursive: true });

  if (opts.parsersOnly) {
    const parsers = await runParsersChild(opts.quick, layout.proxy);
    const md = parserMarkdown(parsers);
    writeFileSync(join(outDir, 'parsers.md'), `${md}\n`);
    writeFileSync(join(outDir, 'parsers.json'), `${JSON.stringify(parsers)}\n`);
    process.stdout.write(`${md}\n`);
    return;
  }

  const started = Date.now();
  const machine = describeMachine();
  const records: BenchRecord[] = [];
  const note = (text: string, target?: TargetName): void => {
    log(`${target === undefined ? '' : `${target}: `}${text}`);
    records.push(target === undefined ? { kind: 'note', text } : { kind: 'note', target, text });
  };
  const busy = (when: string): void => {
    // Another workload on the machine moves every number; say so in the report rather than hide it.
    const [one] = os.loadavg();
    if (one !== undefined && one > 0.5) {
      note(`machine busy ${when}: 1-minute load average ${one.toFixed(2)} on ${os.availableParallelism()} CPUs; treat differences under ~30% as noise.`);
    }
  };
  busy('before the run');
  const wrk = opts.wrk && hasCommand('wrk');
  if (opts.wrk && !wrk) note('wrk not installed (Debian: `apt-get install wrk`): autocannon only.');
  const nofile = hardNofile();
  const idleCount = opts.quick ? Math.min(1000, idleConnectionsFor(nofile)) : idleConnectionsFor(nofile);
  if (opts.groups.includes('M1') && idleCount < 10000 && !opts.quick) {
    note(`M1 holds ${idleCount} connections, not 10 000: the hard RLIMIT_NOFILE here is ${nofile} and a spliced connection takes two descriptors in the proxy.`);
  }

  const workDir = join(outDir, 'work');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  let backends: Backends | undefined;
  const running: RunningTarget[] = [];
  const onSignal = (): void => {
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let parsers: ParserBenchReport | undefined;
  let profile: RunReport['profile'];
  try {
    backends = await startBackends(workDir, layout.load, nofile, opts.nodeBackends);
    log(`backends: ${backends.kind} on ${backends.httpPort} (HTTP) and ${backends.httpsPort} (HTTPS)`);
    if (backends.kind === 'node' && !opts.nodeBackends) note('nginx not installed: Node backends (they may be the bottleneck).');
    const ctx: TargetContext = {
      dir: workDir,
      backends,
      cpus: layout.proxy,
      maxConnections: idleCount,
      nofile,
      nodeFlags: [],
      allCpus: layout.all,
      baselineDir: opts.baselineDir,
      baseEnv: opts.baseEnv,
    };
    for (const name of opts.targets) {
      const why = cannotRun(name, opts.baselineDir);
      if (why !== undefined) {
        note(`skipped: ${why}.`, name);
        continue;
      }
      try {
        const t = await startTarget(name, ctx);
        let problems = await checkRouting(t);
        if (problems.length > 0 && problems.every((p) => /hang up|ECONNRESET|timed out/.test(p))) {
          // A connection dropped is not a misroute: once more, said in the notes (sslh-select has dropped
          // the first plaintext request here once in several starts).
          note(`routing check: ${problems.join('; ')}; checked again`, name);
          await new Promise((r) => setTimeout(r, 1000));
          problems = await checkRouting(t);
        }
        if (problems.length > 0) {
          note(`skipped, routing check failed: ${problems.join('; ')}.`, name);
          await t.stop();
          continue;
        }
        running.push(t);
        log(`${name}: routes plaintext → HTTP and TLS → HTTPS (checked)`);
      } catch (e) {
        note(`skipped, did not start: ${(e as Error).message}`, name);
      }
    }

    const warmupSec = opts.quick ? 0 : 1;
    const died = new Set<string>();
    for (const s of LOAD_SCENARIOS.filter((x) => opts.groups.includes(x.group))) {
      // Rounds interleave the targets (A B A B …) so that a change in the machine's load hits all of
      // them alike; each cell reports the round with the median CPU per request.
      const rounds = new Map<string, LoadRecord[]>();
      for (let round = 1; round <= opts.rounds; round++) {
        for (const t of running) {
          const proc = t.child?.proc;
          if (proc !== undefined && (proc.exitCode !== null || proc.signalCode !== null)) {
            // A target that died mid-run would otherwise only show as errors and empty cells.
            if (!died.has(t.name)) {
              died.add(t.name);
              const why = proc.signalCode ?? `exit code ${proc.exitCode}`;
              note(`exited during the run (${why}) before ${s.id}: ${t.child!.stderrTail().trim().split('\n').slice(-3).join(' / ')}`, t.name);
            }
            continue;
          }
          try {
            if (warmupSec > 0 && round === 1) await runAutocannon(loadSpec(t, s, warmupSec), layout.load);
            const tools = wrk ? (['autocannon', 'wrk'] as const) : (['autocannon'] as const);
            for (const tool of tools) {
              const r = await measure(t, s, tool, opts, layout);
              const key = `${t.name} ${tool}`;
              rounds.set(key, [...(rounds.get(key) ?? []), r]);
              const rate = s.bulk ? `${r.mbPerSec.toFixed(0)} MB/s` : `${r.reqPerSec.toFixed(0)} req/s`;
              const cpu = r.proxyCpuUsPerReq === undefined ? '' : `, proxy ${r.proxyCpuUsPerReq.toFixed(1)} µs/req`;
              const of = opts.rounds > 1 ? ` (round ${round}/${opts.rounds})` : '';
              log(`${s.id} ${t.name} ${tool}: ${rate}${cpu}, errors ${r.errors + r.non2xx}${of}`);
            }
          } catch (e) {
            note(`${s.id} failed: ${(e as Error).message}`, t.name);
          }
        }
      }
      for (const list of rounds.values()) records.push(medianRound(list));
    }
    addRatios(records);

    if (opts.groups.includes('M1')) {
      for (let i = 0; i < running.length; i++) {
        if (running[i]!.child === undefined) continue;
        try {
          // A fresh process: RSS before is the idle proxy's, not what the load runs left in its heap.
          await running[i]!.stop();
          const t = (running[i] = await startTarget(running[i]!.name, ctx));
          const r = await measureIdle(t, idleCount, opts.quick, layout);
          records.push(r);
          log(`M1 ${t.name}: ${r.ready}/${r.wanted} held, ${(r.rssPerConnectionBytes / 1024).toFixed(1)} KiB RSS per connection`);
        } catch (e) {
          note(`M1 failed: ${(e as Error).message}`, running[i]!.name);
        }
      }
    }

    // ── P1: pool policies and TLS affinity (bench/pools.ts, issue 5) ────────────────────────────────
    if (opts.groups.includes('P1')) {
      if (!opts.targets.includes('twinport')) {
        note('P1 skipped: it measures twinport only (include twinport in --only).');
      } else {
        try {
          const report = await runPoolsChild({
            quick: opts.quick,
            durationSec: opts.durationSec,
            wrk,
            nodeBackends: opts.nodeBackends,
            proxyCpus: layout.proxy,
            loadCpus: layout.load,
            dir: join(workDir, 'pools'),
          });
          records.push({ kind: 'pools', report });
        } catch (e) {
          note(`P1 failed: ${(e as Error).message}`);
        }
      }
    }
    // ── end P1 ──────────────────────────────────────────────────────────────────────────────────────

    if (!opts.filtered || opts.doc) parsers = await runParsersChild(opts.quick, layout.proxy);

    if (opts.profile && running.some((t) => t.name === 'twinport')) {
      const tw = running.find((t) => t.name === 'twinport')!;
      await tw.stop();
      running.splice(running.indexOf(tw), 1);
      profile = await profileTwinport(ctx, opts, layout);
    }
  } finally {
    for (const t of running) await t.stop();
    await backends?.child.stop();
    await stopAll();
  }

  const report: RunReport = {
    command: commandLine(argv),
    startedAt: new Date(started).toISOString(),
    minutes: (Date.now() - started) / 60000,
    machine,
    layout: layout.text,
    durationSec: opts.durationSec,
    targets: opts.targets,
    records,
    ...(parsers !== undefined && { parsers }),
    ...(profile !== undefined && { profile }),
  };
  writeFileSync(join(outDir, 'results.jsonl'), records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const md = renderReport(report);
  writeFileSync(join(outDir, 'report.md'), `${md}\n`);
  writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(report)}\n`);
  process.stdout.write(`${md}\n`);
  if (opts.doc) {
    writeDoc(join(repoRoot, 'docs', 'benchmarks.md'), md);
    log('wrote docs/benchmarks.md');
  }
  log(`raw results: ${join(outDir, 'results.jsonl')}`);
}

main().catch(async (e: unknown) => {
  process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
  await stopAll();
  process.exitCode = 1;
});
