// Results of a run: the JSON-lines records (.bench-out/results.jsonl) and the Markdown made from them,
// which is also what docs/benchmarks.md gets below its generated-section marker.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Machine } from './machine.js';
import { parserMarkdown, type ParserBenchReport } from './parsers.js';
import { poolsMarkdown, type PoolBenchReport } from './pools-report.js';
import { profileMarkdown, type ProfileEntry } from './profile-summary.js';
import { LOAD_SCENARIOS, type LoadScenario } from './scenarios.js';
import { fmt } from './stats.js';
import type { TargetName } from './targets.js';

export interface LoadRecord {
  readonly kind: 'load';
  readonly target: TargetName;
  readonly scenario: LoadScenario['id'];
  readonly tool: 'autocannon' | 'wrk';
  readonly connections: number;
  readonly requests: number;
  readonly durationSec: number;
  readonly reqPerSec: number;
  readonly mbPerSec: number;
  /** req/s (MB/s for bulk) over direct's with the same tool; undefined for direct or when it is missing. */
  ratioToDirect?: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  /** utime+stime of the proxy's process tree over the run / wall time of the run. */
  readonly proxyCpuPercent?: number;
  /** The same CPU time divided by completed requests. */
  readonly proxyCpuUsPerReq?: number;
  /** Its user-space and kernel parts (utime, stime), µs per request: what the proxy's own code costs vs its syscalls. */
  readonly proxyUserUsPerReq?: number;
  readonly proxySysUsPerReq?: number;
  /** Minor page faults of the proxy per request (allocator churn shows here). */
  readonly proxyFaultsPerReq?: number;
  /** With `--rounds N`: how many rounds this cell is the median of, and their CPU µs/req range. */
  readonly rounds?: number;
  readonly proxyCpuUsPerReqRange?: readonly [number, number];
  readonly errors: number;
  readonly non2xx: number;
}

export interface IdleRecord {
  readonly kind: 'idle';
  readonly target: TargetName;
  readonly wanted: number;
  readonly ready: number;
  readonly failed: number;
  readonly setupMs: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly rssPerConnectionBytes: number;
}

export interface NoteRecord {
  readonly kind: 'note';
  readonly target?: TargetName;
  readonly text: string;
}

/** P1 (bench/pools.ts): the whole pool-policy and affinity report, as one record. */
export interface PoolsRecord {
  readonly kind: 'pools';
  readonly report: PoolBenchReport;
}

export type BenchRecord = LoadRecord | IdleRecord | NoteRecord | PoolsRecord;

export interface RunReport {
  readonly command: string;
  readonly startedAt: string;
  readonly minutes: number;
  readonly machine: Machine;
  readonly layout: string;
  readonly durationSec: number;
  readonly targets: readonly TargetName[];
  readonly records: readonly BenchRecord[];
  readonly parsers?: ParserBenchReport;
  readonly profile?: { readonly scenario: string; readonly totalMs: number; readonly entries: readonly ProfileEntry[] }[];
}

const MB = 1e6;

function cell(n: number | undefined, digits = 3): string {
  return n === undefined ? '–' : fmt(n, digits);
}

function ratio(n: number | undefined): string {
  return n === undefined ? '–' : `${n.toFixed(2)}×`;
}

function loadTable(report: RunReport, s: LoadScenario): string {
  const unit = s.bulk ? 'MB/s' : 'req/s';
  const rows = [
    `| target | ${unit} | × direct | p50 ms | p99 ms | proxy CPU % | proxy CPU µs/req | errors | wrk ${unit} | wrk × direct | wrk p99 ms | wrk CPU µs/req |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const loads = report.records.filter((r): r is LoadRecord => r.kind === 'load' && r.scenario === s.id);
  for (const target of report.targets) {
    const ac = loads.find((r) => r.target === target && r.tool === 'autocannon');
    const wrk = loads.find((r) => r.target === target && r.tool === 'wrk');
    if (ac === undefined && wrk === undefined) continue;
    const rate = (r: LoadRecord | undefined): number | undefined => (r === undefined ? undefined : s.bulk ? r.mbPerSec : r.reqPerSec);
    const errs = ac === undefined ? '–' : String(ac.errors + ac.non2xx) + (wrk === undefined ? '' : ` / ${wrk.errors + wrk.non2xx}`);
    rows.push(
      `| ${target} | ${cell(rate(ac))} | ${ratio(ac?.ratioToDirect)} | ${cell(ac?.latencyP50Ms)} | ${cell(ac?.latencyP99Ms)} | ` +
        `${cell(ac?.proxyCpuPercent)} | ${cell(ac?.proxyCpuUsPerReq)} | ${errs} | ${cell(rate(wrk))} | ${ratio(wrk?.ratioToDirect)} | ` +
        `${cell(wrk?.latencyP99Ms)} | ${cell(wrk?.proxyCpuUsPerReq)} |`,
    );
  }
  return rows.join('\n');
}

/** CPU µs/req, with the range over rounds when there were several. */
function cpuCell(r: LoadRecord | undefined): string {
  if (r === undefined) return '–';
  const range = r.proxyCpuUsPerReqRange;
  return range === undefined ? cell(r.proxyCpuUsPerReq) : `${cell(r.proxyCpuUsPerReq)} (${cell(range[0])}–${cell(range[1])})`;
}

/**
 * Rows: proxied targets; columns: the load scenarios that ran; each cell from that target's autocannon
 * and wrk records of the scenario.
 */
function targetByScenario(report: RunReport, cellOf: (ac: LoadRecord | undefined, wrk: LoadRecord | undefined) => string): string {
  const loads = report.records.filter((r): r is LoadRecord => r.kind === 'load');
  const scenarios = LOAD_SCENARIOS.filter((s) => loads.some((r) => r.scenario === s.id));
  const rows = [
    `| target | ${scenarios.map((s) => s.id).join(' | ')} |`,
    `|---|${scenarios.map(() => '---:').join('|')}|`,
  ];
  for (const target of report.targets) {
    if (target === 'direct') continue;
    const cells = scenarios.map((s) => {
      const of = (tool: LoadRecord['tool']): LoadRecord | undefined =>
        loads.find((r) => r.target === target && r.scenario === s.id && r.tool === tool);
      return cellOf(of('autocannon'), of('wrk'));
    });
    rows.push(`| ${target} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

/** Proxy CPU µs per request, autocannon / wrk. */
function cpuSummary(report: RunReport): string {
  return targetByScenario(report, (ac, wrk) => (ac === undefined && wrk === undefined ? '–' : `${cpuCell(ac)} / ${cpuCell(wrk)}`));
}

/** User / kernel CPU µs per request and minor faults per request, autocannon runs. */
function cpuSplit(report: RunReport): string {
  return targetByScenario(report, (r) =>
    r?.proxyUserUsPerReq === undefined
      ? '–'
      : `${cell(r.proxyUserUsPerReq)} / ${cell(r.proxySysUsPerReq)} / ${cell(r.proxyFaultsPerReq)}`,
  );
}

function idleTable(report: RunReport): string {
  const idle = report.records.filter((r): r is IdleRecord => r.kind === 'idle');
  const rows = [
    '| target | connections held | failed | set-up s | proxy RSS before | proxy RSS after | RSS per connection |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of idle) {
    rows.push(
      `| ${r.target} | ${r.ready} of ${r.wanted} | ${r.failed} | ${fmt(r.setupMs / 1000)} | ${fmt(r.rssBeforeBytes / MB)} MB | ` +
        `${fmt(r.rssAfterBytes / MB)} MB | ${fmt(r.rssPerConnectionBytes / 1024)} KiB |`,
    );
  }
  return rows.join('\n');
}

export function renderReport(report: RunReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`Command: \`${report.command}\``);
  out.push('');
  out.push(`Run: ${report.startedAt}, ${report.minutes.toFixed(1)} min. ${report.durationSec} s per cell.`);
  out.push('');
  out.push(`Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}.`);
  out.push('');
  out.push(`Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join('; ')}.`);
  out.push('');
  out.push(`CPU layout: ${report.layout}`);
  out.push('');
  const notes = report.records.filter((r): r is NoteRecord => r.kind === 'note');
  if (notes.length > 0) {
    out.push('Notes from this run:');
    out.push('');
    for (const n of notes) out.push(`- ${n.target === undefined ? '' : `${n.target}: `}${n.text}`);
    out.push('');
  }
  const loads = report.records.filter((r) => r.kind === 'load');
  if (loads.length > 0) {
    out.push('### Proxy CPU µs per request (autocannon / wrk)');
    out.push('');
    out.push(
      'utime+stime of the proxy process tree (from `/proc/<pid>/stat`) over the measured window, divided by ' +
        'completed requests. Lower is better; unlike req/s it does not depend on which side saturates first. ' +
        'With `--rounds N` each cell is the median round (for an even N the lower of the two middle ones) and, ' +
        'in brackets, the range over all rounds.',
    );
    out.push('');
    out.push(cpuSummary(report));
    out.push('');
    out.push(
      'The same CPU split into user space / kernel µs per request, and minor page faults per request ' +
        '(autocannon runs). Kernel time is mostly the syscalls every proxy makes (accept, connect, read, write, ' +
        'close); user time is the proxy\'s own code.',
    );
    out.push('');
    out.push(cpuSplit(report));
    out.push('');
  }
  for (const s of LOAD_SCENARIOS) {
    if (!report.records.some((r) => r.kind === 'load' && r.scenario === s.id)) continue;
    out.push(`### ${s.id}: ${s.title} (${s.connections} connections)`);
    out.push('');
    out.push(loadTable(report, s));
    out.push('');
  }
  if (report.records.some((r) => r.kind === 'idle')) {
    out.push('### M1: idle spliced connections');
    out.push('');
    out.push(
      'Each connection sends one keep-alive request and reads the whole response (so it was routed and ' +
        'spliced), then stays idle. RSS is VmRSS of the proxy process tree, before opening and with all held.',
    );
    out.push('');
    out.push(idleTable(report));
    out.push('');
  }
  for (const p of report.records.filter((r): r is PoolsRecord => r.kind === 'pools')) {
    out.push(poolsMarkdown(p.report));
    out.push('');
  }
  if (report.parsers !== undefined) {
    out.push('### Parser micro-benchmark');
    out.push('');
    out.push(parserMarkdown(report.parsers));
    out.push('');
  }
  for (const p of report.profile ?? []) {
    out.push(`### twinport CPU profile under ${p.scenario} (\`node --cpu-prof\`, top self time)`);
    out.push('');
    out.push(
      `Busy time sampled: ${p.totalMs.toFixed(0)} ms (idle excluded; includes start-up). Native frames such as ` +
        '`writeBuffer` are the syscalls a write makes.',
    );
    out.push('');
    out.push(profileMarkdown(p));
    out.push('');
  }
  return out.join('\n');
}

export const GENERATED_MARKER = '<!-- Everything below is generated by `npm run bench` (bench/report.ts). Do not edit by hand. -->';

const DEFAULT_HEADER = `# Benchmarks

How twinport compares with HAProxy (\`mode tcp\`), nginx (\`stream\` + \`ssl_preread\`) and a naive Node
proxy, all routing the same two protocols on one port to the same backends. Regenerate with the command
quoted below; the section under the marker is rewritten by every full run.
`;

/** Replaces the generated part of the doc, keeping any hand-written header above the marker. */
export function writeDoc(file: string, body: string): void {
  let header = DEFAULT_HEADER;
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8');
    const at = text.indexOf(GENERATED_MARKER);
    // Without a marker the whole file is hand-written: keep it all above the generated part.
    header = (at === -1 ? text : text.slice(0, at)).trimEnd() + '\n';
  }
  writeFileSync(file, `${header}\n${GENERATED_MARKER}\n\n${body.trimEnd()}\n`);
}
