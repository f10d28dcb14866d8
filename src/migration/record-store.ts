// What the record's stores (SQLite embedded, Redis for a fleet) offer the writer and the report: write a
// batch of deltas, keep retention and caps, and read back what a report window needs.
import type { ClientOutcome, MigrationPhase, PlainProtocol, RecordBatch } from './record.js';

export interface MinuteRow {
  readonly listener: string;
  readonly name: string;
  readonly minute: number;
  readonly tls: number;
  readonly plain: number;
  readonly plainExempt: number;
}

export interface ClientRow {
  readonly listener: string;
  readonly name: string;
  readonly ip: string;
  readonly userAgent: string;
  readonly count: number;
  readonly firstSeen: number;
  readonly lastSeen: number;
  /** 0 when every connection of this client was exempt. */
  readonly lastNonExempt: number;
  readonly outcome: ClientOutcome;
  readonly protocol: PlainProtocol;
  readonly method: string;
  readonly path: string;
}

export interface TlsStackRow {
  readonly listener: string;
  readonly name: string;
  readonly ja4: string;
  readonly version: string;
  readonly alpn: string;
  readonly count: number;
  readonly firstSeen: number;
  readonly lastSeen: number;
}

export interface NameRow {
  readonly listener: string;
  readonly name: string;
  readonly phase: MigrationPhase | '';
  readonly lastSeen: number;
}

/** What a report over [since, now] reads. */
export interface RecordView {
  readonly minutes: readonly MinuteRow[];
  /** Clients last seen at or after `since`. */
  readonly clients: readonly ClientRow[];
  readonly tlsStacks: readonly TlsStackRow[];
  readonly names: readonly NameRow[];
  /** Rows the caps evicted, over the store's life. */
  readonly evicted: { readonly clients: number; readonly tlsStacks: number };
}

export interface StoreLimits {
  readonly retention: number;
  readonly maxClients: number;
  readonly maxTlsStacks: number;
}

export interface RecordStore {
  /** "sqlite /path" or "redis redis://…": how logs and errors name it. */
  readonly describe: string;
  write(batch: RecordBatch): Promise<void>;
  /** Drops what is older than the retention and what exceeds the caps (least recently seen first). */
  prune(now: number, limits: StoreLimits): Promise<void>;
  read(since: number): Promise<RecordView>;
  close(): Promise<void>;
}

export type { ClientOutcome, MigrationPhase, PlainProtocol };
