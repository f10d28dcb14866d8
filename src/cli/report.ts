// `twinport report` (docs/migration.md): reads the record from a config's store, a store URL or path, or a
// running instance's admin API, and prints the per-name verdict; the exit status is the answer an upgrade
// playbook loops on (0 safe or no traffic, 3 not safe).
import { loadConfigFile } from '../config/load.js';
import { parsePeriod } from '../config/units.js';
import type { TwinportConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { configPhaseOf } from '../migration/phase.js';
import { recordName } from '../migration/record.js';
import type { RecordStore } from '../migration/record-store.js';
import { RedisRecordStore } from '../migration/redis-store.js';
import { SqliteRecordStore } from '../migration/sqlite-store.js';
import { DEFAULT_MIGRATION_RECORD } from '../config/compile.js';
import { buildReport, formatPeriod, reportExitCode, reportReadSince, type MigrationReport } from '../migration/report.js';
import { resolve } from 'node:path';

export interface ReportCliOptions {
  readonly config?: string;
  readonly store?: string;
  readonly admin?: string;
  readonly tokenFile?: string;
  readonly since: string;
  readonly quietFor: string;
  readonly name?: readonly string[];
  readonly format: 'table' | 'json' | 'csv';
}

function period(flag: string, value: string): number {
  const p = parsePeriod(value);
  if (typeof p === 'string') throw new TwinportError('TWP_ERR_REPORT_ARGS', `${flag}: ${p}`);
  return p;
}

export async function runReport(o: ReportCliOptions, now = Date.now()): Promise<{ text: string; exitCode: 0 | 3 }> {
  const sources = [o.config, o.store, o.admin].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new TwinportError('TWP_ERR_REPORT_ARGS', 'give exactly one of --config FILE, --store PATH|URL, --admin URL');
  const since = period('--since', o.since);
  const quietFor = period('--quiet-for', o.quietFor);
  const names = o.name?.map((n) => recordName(n));
  let report: MigrationReport;
  if (o.admin !== undefined) report = await fromAdmin(o.admin, o.tokenFile, { since: o.since, quietFor: o.quietFor, names });
  else {
    let config: TwinportConfig | undefined;
    let store: RecordStore;
    if (o.config !== undefined) {
      config = loadConfigFile(o.config);
      const s = config.migrationStore;
      store =
        s.kind === 'sqlite'
          ? new SqliteRecordStore(s.path, { mustExist: true })
          : new RedisRecordStore(s.url, { prefix: config.migrationRecord.redisPrefix, retention: config.migrationRecord.retention });
    } else if (/^rediss?:/i.test(o.store!)) {
      store = new RedisRecordStore(o.store!, { prefix: DEFAULT_MIGRATION_RECORD.redisPrefix, retention: DEFAULT_MIGRATION_RECORD.retention });
    } else store = new SqliteRecordStore(resolve(o.store!), { mustExist: true });
    try {
      const view = await store.read(reportReadSince({ now, since, quietFor }));
      report = buildReport(view, {
        now,
        since,
        quietFor,
        ...(names !== undefined && { names }),
        ...(config !== undefined && { phaseOf: configPhaseOf(config) }),
      });
    } finally {
      await store.close();
    }
  }
  return { text: render(report, o.format), exitCode: reportExitCode(report) };
}

async function fromAdmin(
  base: string,
  tokenFile: string | undefined,
  q: { since: string; quietFor: string; names: readonly string[] | undefined },
): Promise<MigrationReport> {
  const url = new URL('/migration', base);
  url.searchParams.set('since', q.since);
  url.searchParams.set('quietFor', q.quietFor);
  for (const n of q.names ?? []) url.searchParams.append('name', n);
  const { readFileSync } = await import('node:fs');
  const token = tokenFile !== undefined ? readFileSync(tokenFile, 'utf8').trim() : process.env['TWINPORT_ADMIN_TOKEN'];
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new TwinportError('TWP_ERR_MIGRATION_STORE_READ', `${url.origin}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok) throw new TwinportError('TWP_ERR_MIGRATION_STORE_READ', `${url.href}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  return (await res.json()) as MigrationReport;
}

function render(r: MigrationReport, format: ReportCliOptions['format']): string {
  if (format === 'json') return JSON.stringify(r, null, 2);
  if (format === 'csv') return renderCsv(r);
  return renderTable(r);
}

const CSV_COLUMNS = ['listener', 'name', 'phase', 'verdict', 'plaintext', 'tls', 'share', 'client_ip', 'user_agent', 'count', 'first_seen', 'last_seen', 'outcome', 'bot'];

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  // A cell a spreadsheet would run as a formula is quoted with a leading apostrophe (OWASP CSV injection).
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function renderCsv(r: MigrationReport): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const n of r.names) {
    const head = [n.listener, n.name, n.phase, n.verdict, n.plaintext.connections, n.tls.connections, n.plaintext.share];
    if (n.clients.length === 0) rows.push([...head, '', '', '', '', '', '', ''].map(csvCell).join(','));
    for (const c of n.clients) rows.push([...head, c.ip, c.userAgent, c.count, c.firstSeen, c.lastSeen, c.outcome, c.bot].map(csvCell).join(','));
  }
  return rows.join('\n');
}

/** Control characters from a recorded User-Agent are shown escaped: a report must not drive the terminal. */
function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const CLIENTS_SHOWN = 20;

function renderTable(r: MigrationReport): string {
  const out: string[] = [`migration report ${r.generatedAt}: window since ${r.since}, quiet period ${r.quietFor}`, ''];
  if (r.names.length === 0) out.push('no names recorded in the window');
  const header = ['LISTENER', 'NAME', 'PHASE', 'VERDICT', 'PLAINTEXT', 'SHARE', 'CLIENTS', 'TLS', 'LAST PLAINTEXT'];
  const rows = r.names.map((n) => [
    n.listener ?? '-',
    n.name === null ? '(no name)' : printable(n.name),
    n.phase,
    n.verdict,
    String(n.plaintext.connections),
    `${(n.plaintext.share * 100).toFixed(1)}%`,
    String(n.plaintext.clients),
    String(n.tls.connections),
    n.plaintext.lastSeen ?? '-',
  ]);
  if (rows.length > 0) out.push(...columns([header, ...rows]));
  for (const n of r.names) {
    if (n.verdict === 'not-safe' && n.notSafe !== undefined) {
      const c = n.notSafe.lastClient;
      out.push(
        '',
        `${n.name ?? '(no name)'}: not safe: ${n.notSafe.connections} plaintext connection(s) in the last ${r.quietFor}` +
          (c === undefined ? '' : `, last from ${c.ip} (${printable(c.userAgent ?? 'no User-Agent')}) at ${c.lastSeen}`),
      );
    }
    if (n.clients.length === 0) continue;
    out.push('', `plaintext clients of ${n.name === null ? '(no name)' : printable(n.name)} on ${n.listener ?? '-'}, newest first:`);
    const cr = n.clients
      .slice(0, CLIENTS_SHOWN)
      .map((c) => ['  ' + c.ip, printable(c.userAgent ?? '-').slice(0, 60) + (c.bot ? ' [bot]' : ''), String(c.count), c.lastSeen, c.outcome]);
    out.push(...columns([['  IP', 'USER-AGENT', 'COUNT', 'LAST SEEN', 'OUTCOME'], ...cr]));
    if (n.clients.length > CLIENTS_SHOWN) out.push(`  … ${n.clients.length - CLIENTS_SHOWN} more (--format json lists all)`);
  }
  if (r.evicted.clients > 0) out.push('', `note: ${r.evicted.clients} client rows were evicted by migration_record.max_clients`);
  const bad = r.names.filter((n) => n.verdict === 'not-safe').length;
  out.push('', bad === 0 ? `verdict: safe to turn plaintext off (quiet for ${r.quietFor})` : `verdict: NOT safe: ${bad} name(s) still get plaintext`);
  return out.join('\n');
}

function columns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

export { formatPeriod };
