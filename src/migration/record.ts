// The record of clients of issue 13 §2 (docs/migration.md): what each connection on a migration listener
// told us about who still speaks plaintext, aggregated in memory between two writes to the store. The hot
// path (note*) increments counters in maps keyed by short strings; `take()` hands the deltas to the writer
// once a flush interval and starts afresh, so memory is bounded by what one interval can bring (and by the
// caps below), never by how long the process runs.
import type { MigrationPhase } from '../config/types.js';
export type { MigrationPhase };

export type ClientOutcome = 'spliced' | 'redirected' | 'rejected' | 'exempt';
export type PlainProtocol = 'http' | 'h2c' | 'other';

/** Per (listener, name, minute): connection counts. `name` '' = no Host / no SNI. */
export interface MinuteDelta {
  readonly listener: string;
  readonly name: string;
  /** Unix minute (ms / 60000, floored). */
  readonly minute: number;
  tls: number;
  /** Every plaintext connection, exempt ones included. */
  plain: number;
  plainExempt: number;
  /** TLS connections of this minute in this batch that were fingerprinted (see noteTls). */
  tlsSampled: number;
}

/** Per (listener, name, client IP, User-Agent): a plaintext client. */
export interface ClientDelta {
  readonly listener: string;
  readonly name: string;
  readonly ip: string;
  /** '' when the request had none (or was not HTTP/1). */
  readonly userAgent: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
  /** Last connection that was not exempt (0: none in this delta): what the verdict looks at. */
  lastNonExempt: number;
  outcome: ClientOutcome;
  protocol: PlainProtocol;
  /** The last request's method and first path segment ("/v3"), when HTTP/1. */
  method: string;
  path: string;
}

/** Per (listener, name, JA4): a TLS client stack. */
export interface TlsStackDelta {
  readonly listener: string;
  readonly name: string;
  readonly ja4: string;
  /** Highest version offered, "1.3" / "1.2" / …. */
  version: string;
  /** ALPN names offered, comma-joined ('' none). */
  alpn: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
}

/** The phase that last applied to a name's plaintext (shown by the report when it has no config). */
export interface NameSeen {
  readonly listener: string;
  readonly name: string;
  phase: MigrationPhase | '';
  lastSeen: number;
}

export interface RecordBatch {
  readonly minutes: readonly MinuteDelta[];
  readonly clients: readonly ClientDelta[];
  readonly tlsStacks: readonly TlsStackDelta[];
  readonly names: readonly NameSeen[];
  /** Connections in this batch: its size in the writer's counters. */
  readonly connections: number;
}

export interface RecordLimits {
  /** Distinct names per listener this process records; beyond, connections count under OVERFLOW_NAME. */
  readonly maxNames: number;
  /** Distinct clients / TLS stacks per batch; beyond, the connection is still counted per minute. */
  readonly maxPendingClients: number;
  readonly maxPendingTlsStacks: number;
}

/** TLS hellos fingerprinted per (listener, name, minute) and batch: the rest are only counted. */
export const TLS_SAMPLES_PER_BATCH = 32;

/** The name a listener's connections are counted under once it has seen `maxNames` names. */
export const OVERFLOW_NAME = '*';

export interface RecordCounters {
  /** Connections noted since start. */
  connections: number;
  /** Connections whose name was folded into OVERFLOW_NAME. */
  namesOverflow: number;
  /** Plaintext clients / TLS stacks not kept because a batch was full (still counted per minute). */
  clientsDropped: number;
  tlsStacksDropped: number;
}

/** Per-outcome totals since start, for twinport_migration_connections_total (bounded by maxNames). */
export interface OutcomeCount {
  readonly listener: string;
  readonly name: string;
  readonly protocol: PlainProtocol | 'tls';
  readonly outcome: ClientOutcome;
  count: number;
}

/** The record's name for a Host or SNI: lower case, no trailing dot, '' when absent. */
export function recordName(name: string | undefined): string {
  if (name === undefined || name === '') return '';
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** "/v3/auth/tokens?x" → "/v3"; "http://h/a/b" → "/a"; "*" and authority-form as sent (bounded). */
export function firstPathSegment(target: string): string {
  let start = 0;
  const scheme = target.indexOf('://');
  if (scheme > 0 && scheme < 16) {
    start = target.indexOf('/', scheme + 3);
    if (start < 0) return '/';
  }
  if (target.charCodeAt(start) !== 0x2f) return target.slice(0, 64);
  let end = start + 1;
  while (end < target.length && end - start < 64) {
    const c = target.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break;
    end++;
  }
  return target.slice(start, end);
}

/** The highest TLS version a hello offers, as "1.3": supported_versions (GREASE skipped), else legacy. */
export function offeredTlsVersion(legacy: number, supported: readonly number[] | undefined): string {
  let best = legacy;
  if (supported !== undefined) {
    best = 0;
    for (const v of supported) if ((v & 0x0f0f) !== 0x0a0a && v > best && v <= 0x0304) best = v;
    if (best === 0) best = legacy;
  }
  if (best === 0x0300) return 'ssl3';
  if (best === 0x0002) return 'ssl2';
  if (best >= 0x0301 && best <= 0x0304) return `1.${best - 0x0301}`;
  return `0x${best.toString(16).padStart(4, '0')}`;
}

/**
 * Everything about one (listener, name) the hot path touches, found with two Map lookups and no string
 * built: this batch's current minute, its clients, the name's phase and the outcome totals.
 */
interface NameSlot {
  readonly listener: string;
  readonly name: string;
  /** The batch `minute`, `seen` and `clients` belong to: older ones are stale and replaced on use. */
  batch: number;
  minute: MinuteDelta | undefined;
  seen: NameSeen | undefined;
  /** ip → User-Agent → client, this batch. */
  clients: Map<string, Map<string, ClientDelta>>;
  readonly outcomes: Map<string, OutcomeCount>;
}

export class MigrationRecorder {
  private batch = 0;
  private minutes: MinuteDelta[] = [];
  private clients: ClientDelta[] = [];
  private tlsStacks = new Map<string, TlsStackDelta>();
  private names: NameSeen[] = [];
  private pending = 0;
  /** listener → name → slot; at most maxNames names per listener (then OVERFLOW_NAME). */
  private readonly slots = new Map<string, Map<string, NameSlot>>();
  readonly counters: RecordCounters = { connections: 0, namesOverflow: 0, clientsDropped: 0, tlsStacksDropped: 0 };

  constructor(
    private readonly limits: RecordLimits,
    private readonly now: () => number = Date.now,
  ) {}

  notePlaintext(
    listener: string,
    host: string | undefined,
    protocol: PlainProtocol,
    ip: string,
    userAgent: string | undefined,
    method: string | undefined,
    target: string | undefined,
    outcome: ClientOutcome,
    phase: MigrationPhase | undefined,
  ): void {
    const t = this.now();
    const slot = this.slot(listener, recordName(host));
    const exempt = outcome === 'exempt';
    const m = this.minute(slot, t);
    m.plain++;
    if (exempt) m.plainExempt++;
    const seen = slot.seen;
    if (seen === undefined) {
      slot.seen = { listener, name: slot.name, phase: phase ?? '', lastSeen: t };
      this.names.push(slot.seen);
    } else {
      seen.phase = phase ?? '';
      seen.lastSeen = t;
    }
    countOutcome(slot, protocol, outcome);
    const ua = userAgent ?? '';
    let byUa = slot.clients.get(ip);
    const c = byUa?.get(ua);
    const path = target === undefined ? '' : firstPathSegment(target);
    if (c !== undefined) {
      c.count++;
      c.lastSeen = t;
      if (!exempt) c.lastNonExempt = t;
      c.outcome = outcome;
      c.protocol = protocol;
      c.method = method ?? '';
      c.path = path;
    } else if (this.clients.length < this.limits.maxPendingClients) {
      const fresh: ClientDelta = {
        listener,
        name: slot.name,
        ip,
        userAgent: ua,
        count: 1,
        firstSeen: t,
        lastSeen: t,
        lastNonExempt: exempt ? 0 : t,
        outcome,
        protocol,
        method: method ?? '',
        path,
      };
      if (byUa === undefined) slot.clients.set(ip, (byUa = new Map()));
      byUa.set(ua, fresh);
      this.clients.push(fresh);
    } else this.counters.clientsDropped++;
    this.pending++;
    this.counters.connections++;
  }

  /**
   * Every TLS connection is counted; at most TLS_SAMPLES_PER_BATCH per name and batch are fingerprinted
   * (`ja4` computes JA4 on first read, 4–6 µs: two SHA-256 and two sorts), so the TLS stacks are a sample
   * that finds every stack in use without paying JA4 on every handshake.
   */
  noteTls(listener: string, sni: string | undefined, version: () => string, alpn: readonly string[] | undefined, ja4: () => string): void {
    const t = this.now();
    const slot = this.slot(listener, recordName(sni));
    const m = this.minute(slot, t);
    m.tls++;
    countOutcome(slot, 'tls', 'spliced');
    this.pending++;
    this.counters.connections++;
    if (m.tlsSampled >= TLS_SAMPLES_PER_BATCH) return;
    m.tlsSampled++;
    const fp = ja4();
    const key = `${listener}\n${slot.name}\n${fp}`;
    const s = this.tlsStacks.get(key);
    if (s !== undefined) {
      s.count++;
      s.lastSeen = t;
    } else if (this.tlsStacks.size < this.limits.maxPendingTlsStacks) {
      this.tlsStacks.set(key, { listener, name: slot.name, ja4: fp, version: version(), alpn: alpn === undefined ? '' : alpn.join(','), count: 1, firstSeen: t, lastSeen: t });
    } else this.counters.tlsStacksDropped++;
  }

  /** The deltas since the last call (undefined when nothing happened), and a fresh start. */
  take(): RecordBatch | undefined {
    if (this.pending === 0) return undefined;
    const batch: RecordBatch = {
      minutes: this.minutes,
      clients: this.clients,
      tlsStacks: [...this.tlsStacks.values()],
      names: this.names,
      connections: this.pending,
    };
    // Slots notice the new batch number and start afresh when next used.
    this.batch++;
    this.minutes = [];
    this.clients = [];
    this.tlsStacks = new Map();
    this.names = [];
    this.pending = 0;
    return batch;
  }

  /** Totals by (listener, name, protocol, outcome) since start. */
  *outcomeCounts(): IterableIterator<OutcomeCount> {
    for (const names of this.slots.values()) for (const slot of names.values()) yield* slot.outcomes.values();
  }

  private slot(listener: string, name: string): NameSlot {
    let names = this.slots.get(listener);
    if (names === undefined) this.slots.set(listener, (names = new Map()));
    let slot = names.get(name);
    if (slot === undefined) {
      if (names.size >= this.limits.maxNames && name !== OVERFLOW_NAME) {
        this.counters.namesOverflow++;
        return this.slot(listener, OVERFLOW_NAME);
      }
      slot = { listener, name, batch: this.batch, minute: undefined, seen: undefined, clients: new Map(), outcomes: new Map() };
      names.set(name, slot);
    }
    if (slot.batch !== this.batch) {
      slot.batch = this.batch;
      slot.minute = undefined;
      slot.seen = undefined;
      slot.clients = new Map();
    }
    return slot;
  }

  private minute(slot: NameSlot, t: number): MinuteDelta {
    const minute = Math.floor(t / 60_000);
    let m = slot.minute;
    if (m === undefined || m.minute !== minute) {
      m = { listener: slot.listener, name: slot.name, minute, tls: 0, plain: 0, plainExempt: 0, tlsSampled: 0 };
      slot.minute = m;
      this.minutes.push(m);
    }
    return m;
  }
}

const OUTCOMES: readonly ClientOutcome[] = ['spliced', 'redirected', 'rejected', 'exempt'];
/** The outcome keys, built once: at most thirteen per slot, and no string built per connection. */
const OUTCOME_KEYS: Readonly<Record<PlainProtocol, Readonly<Record<ClientOutcome, string>>>> = Object.fromEntries(
  (['http', 'h2c', 'other'] as const).map((p) => [p, Object.fromEntries(OUTCOMES.map((o) => [o, `${p}/${o}`]))]),
) as never;

function countOutcome(slot: NameSlot, protocol: PlainProtocol | 'tls', outcome: ClientOutcome): void {
  const key = protocol === 'tls' ? 'tls' : OUTCOME_KEYS[protocol][outcome];
  const o = slot.outcomes.get(key);
  if (o !== undefined) o.count++;
  else slot.outcomes.set(key, { listener: slot.listener, name: slot.name, protocol, outcome, count: 1 });
}

/** The `maxNames` busiest names of each listener kept, the rest summed under OVERFLOW_NAME (a metric's label set stays small). */
export function boundedOutcomes(counts: readonly OutcomeCount[], maxNames: number): OutcomeCount[] {
  const totals = new Map<string, Map<string, number>>();
  for (const c of counts) {
    let names = totals.get(c.listener);
    if (names === undefined) totals.set(c.listener, (names = new Map()));
    names.set(c.name, (names.get(c.name) ?? 0) + c.count);
  }
  const kept = new Map<string, Set<string>>();
  for (const [listener, names] of totals) {
    kept.set(listener, new Set([...names].filter(([n]) => n !== OVERFLOW_NAME).sort((a, b) => b[1] - a[1]).slice(0, maxNames).map(([n]) => n)));
  }
  const out = new Map<string, OutcomeCount>();
  for (const c of counts) {
    const name = kept.get(c.listener)!.has(c.name) ? c.name : OVERFLOW_NAME;
    const key = `${c.listener}\n${name}\n${c.protocol}\n${c.outcome}`;
    const o = out.get(key);
    if (o !== undefined) o.count += c.count;
    else out.set(key, { listener: c.listener, name, protocol: c.protocol, outcome: c.outcome, count: c.count });
  }
  return [...out.values()];
}
