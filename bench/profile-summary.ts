// Summarises a V8 `.cpuprofile` (from `node --cpu-prof`) as self time per function, so a benchmark run
// can say where the proxy's CPU goes without opening DevTools.
//
//   node dist/bench/profile-summary.js FILE.cpuprofile [--top 25]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface ProfileEntry {
  readonly fn: string;
  readonly where: string;
  readonly selfMs: number;
  readonly percent: number;
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
}

export function summariseProfile(file: string, top = 25): { totalMs: number; entries: ProfileEntry[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]!);
    // A sample's delta is the time since the previous sample: charge it to this sample's function.
    const dt = deltas[i] ?? 0;
    if (node === undefined) continue;
    const cf = node.callFrame;
    // Waiting in epoll is not work: percentages are of busy time.
    if (cf.functionName === '(idle)') continue;
    total += dt;
    const fn = cf.functionName === '' ? '(anonymous)' : cf.functionName;
    const where = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    const key = `${fn}@${where}`;
    const e = self.get(key) ?? { fn, where, us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const entries = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, percent: total === 0 ? 0 : (100 * e.us) / total }));
  return { totalMs: total / 1000, entries };
}

export function profileMarkdown(summary: { totalMs: number; entries: readonly ProfileEntry[] }): string {
  const lines = ['| self % | self ms | function | where |', '|---:|---:|---|---|'];
  for (const e of summary.entries) {
    lines.push(`| ${e.percent.toFixed(1)} | ${e.selfMs.toFixed(1)} | \`${e.fn}\` | ${e.where} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [--top N]\n');
    process.exitCode = 2;
  } else {
    const i = process.argv.indexOf('--top');
    const top = i === -1 ? 25 : Number(process.argv[i + 1]);
    const s = summariseProfile(file, top);
    process.stdout.write(`total sampled: ${s.totalMs.toFixed(0)} ms\n${profileMarkdown(s)}\n`);
  }
}
