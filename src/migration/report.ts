// The "safe to flip" report of issue 13 §3 (docs/migration.md): from a record view and a clock, per
// (listener, name), the plaintext share, who still speaks plaintext, and a verdict. Pure: `twinport report`
// (reading a store) and the admin API (reading the running instance) both call buildReport.
import type { MigrationPhase } from '../config/types.js';
import { formatDuration } from '../config/units.js';
import { OVERFLOW_NAME } from './record.js';
import type { ClientOutcome, ClientRow, RecordView, TlsStackRow } from './record-store.js';

export type Verdict = 'safe' | 'not-safe' | 'no-traffic';

export interface ReportClient {
  readonly ip: string;
  readonly userAgent: string | null;
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly outcome: ClientOutcome;
  /** A crawler, monitor or health checker by its User-Agent: usually not a client to migrate. */
  readonly bot: boolean;
  readonly protocol: string;
  readonly method?: string;
  readonly path?: string;
}

export interface ReportName {
  readonly listener: string | null;
  /** Host (plaintext) or SNI (TLS), lower case; null = requests without one; "*" = names beyond the cap. */
  readonly name: string | null;
  readonly phase: MigrationPhase;
  readonly verdict: Verdict;
  /** Why not safe: non-exempt plaintext connections in the quiet period and the last client among them. */
  readonly notSafe?: { readonly connections: number; readonly lastClient?: { readonly ip: string; readonly userAgent: string | null; readonly lastSeen: string } };
  readonly plaintext: {
    readonly connections: number;
    readonly exempt: number;
    readonly clients: number;
    readonly lastSeen: string | null;
    /** plaintext / (plaintext + tls) over the window, 0..1. */
    readonly share: number;
  };
  readonly tls: { readonly connections: number; readonly stacks: readonly { ja4: string; version: string; alpn: string[]; count: number; lastSeen: string }[] };
  readonly clients: readonly ReportClient[];
}

export interface MigrationReport {
  readonly generatedAt: string;
  readonly since: string;
  readonly quietFor: string;
  readonly names: readonly ReportName[];
  /** Rows the store's caps evicted (docs/migration.md): a report over evicted clients may undercount them. */
  readonly evicted: { readonly clients: number; readonly tlsStacks: number };
}

export interface ReportOptions {
  readonly now: number;
  /** Window length (ms) for shares, counts and clients. */
  readonly since: number;
  /** Length (ms) of the quiet period the verdict needs. */
  readonly quietFor: number;
  /** Only these names (as recorded: lower case, no trailing dot); listed with no-traffic if never seen. */
  readonly names?: readonly string[];
  /** The phase a config gives a name now (absent: the last phase recorded for it, else observe). */
  readonly phaseOf?: (listener: string, name: string) => MigrationPhase | undefined;
}

/** How far back a report must read: the longer of its window and its quiet period. */
export function reportReadSince(opts: Pick<ReportOptions, 'now' | 'since' | 'quietFor'>): number {
  return opts.now - Math.max(opts.since, opts.quietFor);
}

const BOT_MARKERS = [
  'bot',
  'crawler',
  'spider',
  'slurp',
  'health',
  'check',
  'monitor',
  'probe',
  'pingdom',
  'uptime',
  'nagios',
  'zabbix',
  'prometheus',
  'consul',
  'elb-',
  'googlehc',
  'haproxy',
  'keepalived',
];

/** Substring tests on a bounded value: linear, no regex engine involved. */
export function isBotUserAgent(ua: string): boolean {
  const lower = ua.toLowerCase();
  return BOT_MARKERS.some((m) => lower.includes(m));
}

const iso = (ms: number): string => new Date(ms).toISOString();

interface Acc {
  listener: string;
  name: string;
  plain: number;
  exempt: number;
  tls: number;
  quietNonExempt: number;
  quietAny: number;
  lastPlainMinute: number;
  clients: ClientRow[];
  stacks: TlsStackRow[];
}

export function buildReport(view: RecordView, opts: ReportOptions): MigrationReport {
  const windowStart = opts.now - opts.since;
  const quietStart = opts.now - opts.quietFor;
  const acc = new Map<string, Acc>();
  const get = (listener: string, name: string): Acc => {
    const key = `${listener}\n${name}`;
    let a = acc.get(key);
    if (a === undefined) {
      a = { listener, name, plain: 0, exempt: 0, tls: 0, quietNonExempt: 0, quietAny: 0, lastPlainMinute: -1, clients: [], stacks: [] };
      acc.set(key, a);
    }
    return a;
  };
  const wanted = opts.names === undefined ? undefined : new Set(opts.names);
  const inScope = (name: string): boolean => wanted === undefined || wanted.has(name);

  for (const m of view.minutes) {
    if (!inScope(m.name)) continue;
    const start = m.minute * 60_000;
    const end = start + 60_000;
    if (end <= windowStart && end <= quietStart) continue;
    const a = get(m.listener, m.name);
    // A bucket counts for a period it overlaps: a minute half inside the quiet period keeps the verdict
    // not-safe a little longer rather than calling it safe a little early.
    if (end > windowStart) {
      a.plain += m.plain;
      a.exempt += m.plainExempt;
      a.tls += m.tls;
      if (m.plain > 0) a.lastPlainMinute = Math.max(a.lastPlainMinute, m.minute);
    }
    if (end > quietStart) {
      a.quietNonExempt += m.plain - m.plainExempt;
      a.quietAny += m.plain + m.tls;
    }
  }
  // A name is in the report when it had connections in the period read; its clients and stacks attach to it.
  for (const c of view.clients) acc.get(`${c.listener}\n${c.name}`)?.clients.push(c);
  for (const t of view.tlsStacks) acc.get(`${t.listener}\n${t.name}`)?.stacks.push(t);
  const recordedPhase = new Map(view.names.map((n) => [`${n.listener}\n${n.name}`, n.phase]));

  const names: ReportName[] = [];
  for (const a of acc.values()) {
    const phase = opts.phaseOf?.(a.listener, a.name) ?? (recordedPhase.get(`${a.listener}\n${a.name}`) || undefined) ?? 'observe';
    const clients = a.clients.filter((c) => c.lastSeen >= windowStart).sort((x, y) => y.lastSeen - x.lastSeen);
    const lastClientSeen = clients.reduce((t, c) => Math.max(t, c.lastSeen), -1);
    const lastPlain = Math.max(lastClientSeen, a.lastPlainMinute < 0 ? -1 : a.lastPlainMinute * 60_000);
    let verdict: Verdict;
    if (a.plain + a.tls === 0 && a.quietAny === 0) verdict = 'no-traffic';
    else verdict = a.quietNonExempt > 0 ? 'not-safe' : 'safe';
    const offender = a.clients.filter((c) => c.lastNonExempt >= quietStart).sort((x, y) => y.lastNonExempt - x.lastNonExempt)[0];
    const total = a.plain + a.tls;
    names.push({
      listener: a.listener,
      name: a.name === '' ? null : a.name,
      phase,
      verdict,
      ...(verdict === 'not-safe' && {
        notSafe: {
          connections: a.quietNonExempt,
          ...(offender !== undefined && { lastClient: { ip: offender.ip, userAgent: offender.userAgent === '' ? null : offender.userAgent, lastSeen: iso(offender.lastNonExempt) } }),
        },
      }),
      plaintext: {
        connections: a.plain,
        exempt: a.exempt,
        clients: clients.length,
        lastSeen: lastPlain < 0 ? null : iso(lastPlain),
        share: total === 0 ? 0 : Math.round((a.plain / total) * 10_000) / 10_000,
      },
      tls: {
        connections: a.tls,
        stacks: a.stacks
          .filter((s) => s.lastSeen >= windowStart)
          .sort((x, y) => y.count - x.count)
          .slice(0, 20)
          .map((s) => ({ ja4: s.ja4, version: s.version, alpn: s.alpn === '' ? [] : s.alpn.split(','), count: s.count, lastSeen: iso(s.lastSeen) })),
      },
      clients: clients.map((c) => ({
        ip: c.ip,
        userAgent: c.userAgent === '' ? null : c.userAgent,
        count: c.count,
        firstSeen: iso(c.firstSeen),
        lastSeen: iso(c.lastSeen),
        outcome: c.outcome,
        bot: c.userAgent !== '' && isBotUserAgent(c.userAgent),
        protocol: c.protocol,
        ...(c.method !== '' && { method: c.method }),
        ...(c.path !== '' && { path: c.path }),
      })),
    });
  }
  if (wanted !== undefined) {
    for (const n of wanted) {
      if (names.some((r) => r.name === (n === '' ? null : n))) continue;
      names.push({
        listener: null,
        name: n === '' ? null : n,
        phase: 'observe',
        verdict: 'no-traffic',
        plaintext: { connections: 0, exempt: 0, clients: 0, lastSeen: null, share: 0 },
        tls: { connections: 0, stacks: [] },
        clients: [],
      });
    }
  }
  names.sort((x, y) => (x.listener ?? '\uffff').localeCompare(y.listener ?? '\uffff') || sortName(x.name).localeCompare(sortName(y.name)));
  return {
    generatedAt: iso(opts.now),
    since: iso(windowStart),
    quietFor: formatPeriod(opts.quietFor),
    names,
    evicted: view.evicted,
  };
}

/** null (no Host/SNI) and the overflow name sort last. */
function sortName(name: string | null): string {
  if (name === null) return '\uffff\uffff';
  if (name === OVERFLOW_NAME) return '\uffff';
  return name;
}

/** 86400000 → "24h", 2592000000 → "30d". */
export function formatPeriod(ms: number): string {
  if (ms >= 86_400_000 && ms % 86_400_000 === 0 && ms / 86_400_000 !== 1) return `${ms / 86_400_000}d`;
  return formatDuration(ms);
}

/** Exit status of `twinport report`: 3 when any name in scope is not safe, else 0. */
export function reportExitCode(r: MigrationReport): 0 | 3 {
  return r.names.some((n) => n.verdict === 'not-safe') ? 3 : 0;
}
