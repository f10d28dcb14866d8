// P1, part 3: what `balance: hash` costs outside the connection — building the Maglev table
// (src/routing/maglev.ts, done when a pool is made and after every health or weight change) for 10, 100
// and 1 000 servers at the default M = 65537 — and inside it: one key's lookup (FNV-1a 64 of a 4-byte
// address + one table read), and a whole `PoolState.pick` of a hash pool (what a connection pays:
// address parsing, eligibility, the balancer), next to a round-robin pick.
//
// Builds are timed one by one (milliseconds); lookups and picks in batches of many keys, since one takes
// less than the timer's resolution, and reported per key. Medians of several samples after a warm-up.
// Runs in its own process, pinned by the caller to the CPU the proxy gets in the load cells.
//
//   node dist/bench/pools-maglev.js [--quick] [--json]
import { fileURLToPath } from 'node:url';
import type { BalanceKind, PoolConfig } from '../src/config/types.js';
import { buildMaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, fnv1a64, maglevLookup, type MaglevBackend } from '../src/routing/maglev.js';
import { PoolState } from '../src/routing/pool-state.js';
import { fmt, summarise, type Summary } from './stats.js';

export const MAGLEV_SERVER_COUNTS = [10, 100, 1000] as const;
export const PICK_SERVER_COUNTS = [3, 100, 1000] as const;

export interface MaglevBuildResult {
  readonly servers: number;
  readonly tableSize: number;
  /** Per build, ms. */
  readonly ms: Summary;
}

export interface PerKeyResult {
  readonly name: string;
  readonly servers: number;
  /** Per key, ns (each sample: one batch of `batch` keys, divided). */
  readonly ns: Summary;
  readonly batch: number;
}

export interface MaglevBenchReport {
  readonly builds: readonly MaglevBuildResult[];
  readonly perKey: readonly PerKeyResult[];
}

function serverAddress(i: number): string {
  return `10.0.${Math.floor(i / 250)}.${1 + (i % 250)}:443`;
}

function backends(n: number): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ name: serverAddress(i), weight: 1, id: i }));
}

function poolConfig(n: number, balance: BalanceKind): PoolConfig {
  return {
    name: 'bench',
    balance,
    ...(balance === 'hash' && { hashKey: 'source-ip' as const }),
    affinityTable: { size: 100000, ttl: 3600000, sidTtl: 300000 },
    retries: n - 1,
    servers: Array.from({ length: n }, (_, i) => {
      const text = serverAddress(i);
      return { address: { text, host: text.slice(0, text.lastIndexOf(':')), port: 443 }, weight: 1, backup: false };
    }),
  };
}

function timeBuilds(n: number, warmup: number, samples: number): MaglevBuildResult {
  const list = backends(n);
  let check = 0;
  for (let i = 0; i < warmup; i++) check += buildMaglevTable(list)[0]!;
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) {
    const a = process.hrtime.bigint();
    const table = buildMaglevTable(list);
    const b = process.hrtime.bigint();
    check += table[0]!;
    ms.push(Number(b - a) / 1e6);
  }
  if (check < 0) throw new Error('empty table');
  return { servers: n, tableSize: DEFAULT_MAGLEV_TABLE_SIZE, ms: summarise(ms) };
}

/** How many calls of `op` fill about `targetMs` (at least 100, at most `max`): slow picks get small batches. */
function batchFor(op: (i: number) => number, targetMs: number, max: number): number {
  let sink = 0;
  // Warm up first (≈ 10 ms), so the estimate is for optimised code rather than the interpreter.
  const warmUntil = process.hrtime.bigint() + 10_000_000n;
  for (let i = 0; process.hrtime.bigint() < warmUntil; i++) sink += op(i);
  const probe = 100;
  const a = process.hrtime.bigint();
  for (let i = 0; i < probe; i++) sink += op(i);
  const perOpNs = Number(process.hrtime.bigint() - a) / probe;
  if (!Number.isFinite(sink)) throw new Error('no answer');
  return Math.max(probe, Math.min(max, Math.round((targetMs * 1e6) / Math.max(1, perOpNs))));
}

/** Times `batch` calls of `op(i)` per sample; the sum of answers keeps the work from being optimised away. */
function timePerKey(op: (i: number) => number, maxBatch: number, samples: number): { ns: Summary; batch: number } {
  const batch = batchFor(op, 20, maxBatch);
  let sink = 0;
  for (let w = 0; w < 2; w++) for (let i = 0; i < batch; i++) sink += op(i);
  const ns: number[] = [];
  for (let s = 0; s < samples; s++) {
    const a = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) sink += op(i);
    const b = process.hrtime.bigint();
    ns.push(Number(b - a) / batch);
  }
  if (!Number.isFinite(sink)) throw new Error('no answer');
  return { ns: summarise(ns), batch };
}

const KEYS = 4096; // a power of two: `i & (KEYS - 1)` cycles through them

function randomAddresses(): { bytes: Uint8Array[]; text: string[] } {
  const bytes: Uint8Array[] = [];
  const text: string[] = [];
  let x = 0x2545f491;
  for (let i = 0; i < KEYS; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const b = new Uint8Array([10 + (x >>> 28), (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff]);
    bytes.push(b);
    text.push(b.join('.'));
  }
  return { bytes, text };
}

export function runMaglevBench(opts: { quick?: boolean } = {}): MaglevBenchReport {
  const quick = opts.quick === true;
  const builds = MAGLEV_SERVER_COUNTS.map((n) => timeBuilds(n, quick ? 1 : 3, quick ? 5 : 21));
  const keys = randomAddresses();
  const maxBatch = quick ? 20000 : 100000;
  const samples = quick ? 5 : 15;
  const perKey: PerKeyResult[] = [];
  for (const n of MAGLEV_SERVER_COUNTS) {
    const table = buildMaglevTable(backends(n));
    perKey.push({
      name: 'FNV-1a 64 of 4 address bytes + table lookup',
      servers: n,
      ...timePerKey((i) => maglevLookup(table, fnv1a64(keys.bytes[i & (KEYS - 1)]!)) ?? -1, maxBatch, samples),
    });
  }
  for (const n of PICK_SERVER_COUNTS) {
    const state = new PoolState(poolConfig(n, 'hash'));
    perKey.push({
      name: '`PoolState.pick`, `balance: hash`, `hash_key: source-ip`',
      servers: n,
      ...timePerKey((i) => state.pick({ sourceIp: keys.text[i & (KEYS - 1)]! }) ?? -1, maxBatch, samples),
    });
  }
  for (const n of PICK_SERVER_COUNTS) {
    const state = new PoolState(poolConfig(n, 'round-robin'));
    perKey.push({
      name: '`PoolState.pick`, `balance: round-robin`',
      servers: n,
      ...timePerKey((i) => state.pick({ sourceIp: keys.text[i & (KEYS - 1)]! }) ?? -1, maxBatch, samples),
    });
  }
  return { builds, perKey };
}

export function maglevMarkdown(r: MaglevBenchReport): string {
  const lines = [
    '| servers | table size M | build median | build max | samples |',
    '|---:|---:|---:|---:|---:|',
    ...r.builds.map((b) => `| ${fmt(b.servers)} | ${fmt(b.tableSize)} | ${fmt(b.ms.median)} ms | ${fmt(b.ms.max)} ms | ${b.ms.samples} |`),
    '',
    '| per key | servers | median | p99 of batches | batch × samples |',
    '|---|---:|---:|---:|---:|',
    ...r.perKey.map((k) => `| ${k.name} | ${fmt(k.servers)} | ${fmt(k.ns.median)} ns | ${fmt(k.ns.p99)} ns | ${fmt(k.batch)} × ${k.ns.samples} |`),
  ];
  return lines.join('\n');
}

function main(): void {
  const args = process.argv.slice(2);
  const report = runMaglevBench({ quick: args.includes('--quick') });
  process.stdout.write(args.includes('--json') ? `${JSON.stringify(report)}\n` : `${maglevMarkdown(report)}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
    process.exitCode = 1;
  }
}
