// P1's results (bench/pools.ts) and their Markdown: a section of the runner's report
// (bench/report.ts), and what `node dist/bench/pools.js` prints on its own.
import type { AffinityStats } from '../src/affinity/affinity-pool.js';
import { maglevMarkdown, type MaglevBenchReport } from './pools-maglev.js';
import type { ResumeResult, ResumeSpec } from './resume-client.js';
import { fmt } from './stats.js';

/** A pool policy under test: how twinport's `https` pool of three servers is configured. */
export interface PoolPolicy {
  readonly id: string;
  readonly balance: 'round-robin' | 'hash';
  readonly hashKey?: 'source-ip';
  readonly affinity: boolean;
}

/** One measured window of one policy under one load generator. */
export interface CostSample {
  readonly requests: number;
  readonly reqPerSec: number;
  readonly latencyP99Ms: number;
  readonly proxyCpuUsPerReq?: number;
  readonly errors: number;
}

export interface CostCell {
  readonly policy: string;
  readonly tool: 'autocannon' | 'wrk';
  /** One sample per round, in round order. */
  readonly samples: readonly CostSample[];
}

export interface ResumeCell {
  readonly policy: string;
  readonly maxVersion: ResumeSpec['maxVersion'];
  readonly result: ResumeResult;
  /** twinport's counters for the pool, from its `stopped` log line; undefined without affinity. */
  readonly affinity?: AffinityStats;
  /** Proxy CPU over the client's run / completed connections (twinport logging at info: close lines). */
  readonly proxyCpuUsPerConn?: number;
}

export interface PoolBenchReport {
  readonly backends: 'nginx' | 'node';
  readonly servers: number;
  readonly durationSec: number;
  readonly rounds: number;
  readonly connections: number;
  readonly cost: readonly CostCell[];
  readonly resumeSpec: Omit<ResumeSpec, 'port' | 'maxVersion' | 'seed'>;
  readonly resume: readonly ResumeCell[];
  readonly maglev: MaglevBenchReport;
  readonly notes: readonly string[];
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function spread(values: readonly number[]): string {
  const m = median(values);
  if (values.length < 2) return fmt(m);
  return `${fmt(m)} (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`;
}

function pct(part: number, whole: number): string {
  return whole === 0 ? '–' : `${((100 * part) / whole).toFixed(1)} %`;
}

function costTable(r: PoolBenchReport, tool: CostCell['tool']): string | undefined {
  const cells = r.cost.filter((c) => c.tool === tool);
  const base = cells[0];
  if (base === undefined) return undefined;
  const cpuOf = (c: CostCell): number[] => c.samples.flatMap((s) => (s.proxyCpuUsPerReq === undefined ? [] : [s.proxyCpuUsPerReq]));
  const baseRate = median(base.samples.map((s) => s.reqPerSec));
  const baseCpu = median(cpuOf(base));
  const rows = [
    `| pool policy | req/s | × ${base.policy} | proxy CPU µs/req | × ${base.policy} | p99 ms | errors |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of cells) {
    const rate = median(c.samples.map((s) => s.reqPerSec));
    const cpu = median(cpuOf(c));
    rows.push(
      `| ${c.policy} | ${spread(c.samples.map((s) => s.reqPerSec))} | ${(rate / baseRate).toFixed(2)}× | ` +
        `${spread(cpuOf(c))} | ${(cpu / baseCpu).toFixed(2)}× | ${fmt(median(c.samples.map((s) => s.latencyP99Ms)))} | ` +
        `${c.samples.reduce((n, s) => n + s.errors, 0)} |`,
    );
  }
  return rows.join('\n');
}

function resumeTable(r: PoolBenchReport): string {
  const rows = [
    '| TLS | pool policy | connections | offered a session | resumed (server) | resumed (client) | roamed offers resumed | learned | hit | miss | stale | unlearned | proxy CPU µs/conn | backends |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const c of r.resume) {
    const x = c.result;
    const a = c.affinity;
    const n = (v: number | undefined): string => (v === undefined ? '–' : String(v));
    const failed = x.failed + x.notStarted > 0 ? ` (+${x.failed} failed, ${x.notStarted} not started)` : '';
    const backends = Object.keys(x.backends).sort().map((b) => `${b.replace('https-', '#')}: ${x.backends[b]}`).join(', ');
    rows.push(
      `| ${c.maxVersion === 'TLSv1.3' ? '1.3' : '1.2'} | ${c.policy} | ${x.completed}${failed} | ${x.offered} | ` +
        `**${pct(x.resumedByServer, x.offered)}** | ${pct(x.resumedByClient, x.offered)} | ${pct(x.resumedRoamed, x.roamed)} of ${x.roamed} | ` +
        `${n(a?.learned)} | ${n(a?.hit)} | ${n(a?.miss)} | ${n(a?.stale)} | ${n(a?.unlearned)} | ` +
        `${c.proxyCpuUsPerConn === undefined ? '–' : fmt(c.proxyCpuUsPerConn)} | ${backends} |`,
    );
  }
  return rows.join('\n');
}

export function poolsMarkdown(r: PoolBenchReport): string {
  const out: string[] = [];
  out.push('### P1: pool policy cost per new TLS connection');
  out.push('');
  out.push(
    `One \`https\` pool of ${r.servers} servers (${r.backends}, each with its own session ticket key), three twinport ` +
      'processes that differ only in the pool\'s policy: `round-robin`; `hash` (`hash_key: source-ip`); `hash` + ' +
      '`affinity: tls`. All pinned to the proxy\'s CPU; idle while another is measured. S4\'s load: ' +
      `${r.connections} connections, a new TCP connection and TLS handshake per request, ${r.durationSec} s per window, ` +
      `${r.rounds} round${r.rounds === 1 ? '' : 's'} with the policies in a rotated order each round: median ` +
      '(min–max over rounds). Ratios are of medians.',
  );
  out.push('');
  const ac = costTable(r, 'autocannon');
  if (ac !== undefined) {
    out.push('autocannon (a full handshake every time: it never offers a session, so an affinity pool looks up the random ' +
      'legacy session ID of each hello, misses, and parses each ServerHello):');
    out.push('');
    out.push(ac);
    out.push('');
  }
  const wrk = costTable(r, 'wrk');
  if (wrk !== undefined) {
    out.push('wrk (offers its previous session on every reconnect. With `round-robin` the offer reaches another server ' +
      'about two times in three and a full handshake follows; with `hash` (one source address, so always the same ' +
      'server) it is resumed, and with affinity it is also a hit. The policies then differ in handshake kind and ' +
      'backend work, not only in the proxy\'s choice: read this table as the cost of the affinity hit path):');
    out.push('');
    out.push(wrk);
    out.push('');
  }
  const s = r.resumeSpec;
  out.push('### P1: affinity hit rate in a resumption-heavy run');
  out.push('');
  out.push(
    `\`bench/resume-client.ts\`: ${s.clients} clients, each on its own loopback source address, make ${s.connections} ` +
      `connections (each client once, then a random idle client each time; ${s.concurrency} at a time; one ` +
      `\`Connection: close\` request each). A client's first connection is ` +
      `a full handshake; each later one offers its last session with probability ${s.resumeShare} (TLS 1.3: a PSK ` +
      `ticket; TLS 1.2: a session ticket). ${Math.round(s.roamShare * 100)} % of connections come from another client's address ` +
      '(NAT, a network change): what a source-address hash cannot follow. A fresh twinport per row, so every table starts ' +
      'empty. "resumed (server)" is the backend\'s `$ssl_session_reused` (nginx) or `isSessionReused()` (Node), per ' +
      'offered session; counters are twinport\'s, from its `stopped` log line (SIGTERM). twinport logs at `info` here ' +
      '(close lines), so its CPU column is not comparable with the table above.',
  );
  out.push('');
  out.push(resumeTable(r));
  out.push('');
  out.push('### P1: Maglev table build and lookup');
  out.push('');
  out.push(
    'In-process (`bench/pools-maglev.ts`), pinned to the proxy\'s CPU. The table is built when a hash pool is made ' +
      'and again on the first pick after a health or weight change. Per-key rows time batches of keys (random IPv4 ' +
      'addresses) and divide.',
  );
  out.push('');
  out.push(maglevMarkdown(r.maglev));
  out.push('');
  if (r.notes.length > 0) {
    for (const n of r.notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n').trimEnd();
}
