// Operator regex micro-benchmark (security review F3 and the ReDoS item): the same patterns against the
// same names on V8's backtracking RegExp (what `~regex` routes used to run on) and on RE2 through
// compileOperatorRegex (what they run on now, re2js), side by side in one run.
//  - the hostile cases: `^(a+)+$` against 31 a's and a "!" (exponential for a backtracker), and two
//    ordinary-looking patterns against a 255-byte name (the longest SNI) and a 60 000-byte one (a Host
//    header can be that long), all made of "a"s so that nothing matches and a backtracker tries everything;
//  - the per-connection cost: a typical pattern against a typical SNI, matching and not.
// A case that takes ≥ 50 ms is timed once; a faster one is warmed up, then timed in 7 batches of enough
// matches to last ~20 ms, and the best batch's time per match is reported (neighbours on this VM only
// ever add time).
// V8 on the hostile cases blocks for minutes in total (≈ 84 s for the first alone); --no-v8-slow skips
// the V8 cases that take over a second.
//
//   node dist/bench/regex.js [--no-v8-slow] [--json]
import { fileURLToPath } from 'node:url';
import { compileOperatorRegex } from '../src/routing/operator-regex.js';
import { fmt } from './stats.js';

interface Case {
  readonly pattern: string;
  readonly input: string;
  readonly text: string;
  /** V8 takes seconds or more: skipped with --no-v8-slow. */
  readonly v8Slow?: boolean;
}

const a = (n: number): string => 'a'.repeat(n);

export const CASES: readonly Case[] = [
  { pattern: '^(a+)+$', input: 'a×31 + "!"', text: `${a(31)}!`, v8Slow: true },
  { pattern: '[a-z]+-[0-9]+\\.example\\.com', input: 'a×255', text: a(255) },
  { pattern: '[a-z]+-[0-9]+\\.example\\.com', input: 'a×60 000', text: a(60_000), v8Slow: true },
  { pattern: '.*\\.internal\\.example\\.com$', input: 'a×255', text: a(255) },
  { pattern: '.*\\.internal\\.example\\.com$', input: 'a×60 000', text: a(60_000), v8Slow: true },
  { pattern: '^web-[0-9]+\\.example\\.com$', input: 'web-12.example.com (match)', text: 'web-12.example.com' },
  { pattern: '^web-[0-9]+\\.example\\.com$', input: 'www.example.com (no match)', text: 'www.example.com' },
  { pattern: '\\.internal\\.example\\.com$', input: 'db-3.internal.example.com (match)', text: 'db-3.internal.example.com' },
];

type Engine = 'v8' | 're2js';

function matcher(engine: Engine, pattern: string): (text: string) => boolean {
  if (engine === 'v8') {
    const re = new RegExp(pattern, 'i');
    return (text) => re.test(text);
  }
  const re = compileOperatorRegex(pattern);
  if (typeof re === 'string') throw new Error(`${pattern}: ${re}`);
  return re.test;
}

const nowNs = (): bigint => process.hrtime.bigint();

/** Nanoseconds per match, and the verdict (both engines must agree). */
function time(test: (text: string) => boolean, text: string): { ns: number; verdict: boolean; samples: number } {
  let t0 = nowNs();
  const verdict = test(text);
  const once = Number(nowNs() - t0);
  if (once >= 50e6) return { ns: once, verdict, samples: 1 };
  // Warm-up until the code is optimised (≥ 20 000 matches or 200 ms), which also gives the batch size.
  let warm = 0;
  t0 = nowNs();
  while (warm < 20_000 && Number(nowNs() - t0) < 200e6) {
    test(text);
    warm++;
  }
  const per = Math.max(1, Math.ceil(20e6 / Math.max(Number(nowNs() - t0) / warm, 1)));
  let best = Number.POSITIVE_INFINITY;
  for (let batch = 0; batch < 7; batch++) {
    t0 = nowNs();
    for (let i = 0; i < per; i++) test(text);
    best = Math.min(best, Number(nowNs() - t0) / per);
  }
  return { ns: best, verdict, samples: 7 * per };
}

function show(ns: number | undefined): string {
  if (ns === undefined) return 'skipped';
  if (ns >= 1e9) return `${fmt(ns / 1e9)} s`;
  if (ns >= 1e6) return `${fmt(ns / 1e6)} ms`;
  return `${fmt(ns / 1e3)} µs`;
}

export interface RegexBenchRow {
  readonly pattern: string;
  readonly input: string;
  readonly v8Ns?: number;
  readonly re2jsNs: number;
  readonly matched: boolean;
}

export function runRegexBench(opts: { v8Slow: boolean }): RegexBenchRow[] {
  const rows: RegexBenchRow[] = [];
  for (const c of CASES) {
    const ours = time(matcher('re2js', c.pattern), c.text);
    let v8Ns: number | undefined;
    if (opts.v8Slow || c.v8Slow !== true) {
      const v8 = time(matcher('v8', c.pattern), c.text);
      if (v8.verdict !== ours.verdict) throw new Error(`${c.pattern} on ${c.input}: V8 says ${v8.verdict}, re2js ${ours.verdict}`);
      v8Ns = v8.ns;
    }
    rows.push({ pattern: c.pattern, input: c.input, ...(v8Ns === undefined ? {} : { v8Ns }), re2jsNs: ours.ns, matched: ours.verdict });
  }
  return rows;
}

export function regexMarkdown(rows: readonly RegexBenchRow[]): string {
  const lines = ['| pattern | name | V8 RegExp (before) | re2js (now) |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| \`~${r.pattern}\` | ${r.input} | ${show(r.v8Ns)} | ${show(r.re2jsNs)} |`);
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const rows = runRegexBench({ v8Slow: !args.includes('--no-v8-slow') });
  process.stdout.write(args.includes('--json') ? `${JSON.stringify(rows)}\n` : `${regexMarkdown(rows)}\n`);
}
