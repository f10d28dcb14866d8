// The embedded store of the record (docs/migration.md): one SQLite file through better-sqlite3. WAL with
// synchronous=NORMAL: a committed batch survives the process being killed (the WAL is in the page cache),
// so `kill -9` loses at most the batch not yet written. Several workers of one twinport (and `twinport
// report` reading meanwhile) share the file: WAL lets readers run beside the one writer, and a short busy
// timeout serialises the workers' writes.
import { mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { TwinportError } from '../errors.js';
import type { RecordBatch } from './record.js';
import type { ClientRow, MinuteRow, NameRow, RecordStore, RecordView, StoreLimits, TlsStackRow } from './record-store.js';

/**
 * The writes are synchronous on the event loop: a worker holding the write lock longer than this makes the
 * batch fail (logged, counted) rather than stall every connection of this process.
 */
const BUSY_TIMEOUT_MS = 200;
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minutes (
  listener TEXT NOT NULL, name TEXT NOT NULL, minute INTEGER NOT NULL,
  tls INTEGER NOT NULL, plain INTEGER NOT NULL, plain_exempt INTEGER NOT NULL,
  PRIMARY KEY (listener, name, minute)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minutes_by_minute ON minutes (minute);
CREATE TABLE IF NOT EXISTS clients (
  listener TEXT NOT NULL, name TEXT NOT NULL, ip TEXT NOT NULL, user_agent TEXT NOT NULL,
  count INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_non_exempt INTEGER NOT NULL,
  outcome TEXT NOT NULL, protocol TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
  UNIQUE (listener, name, ip, user_agent));
CREATE INDEX IF NOT EXISTS clients_by_last_seen ON clients (last_seen);
CREATE TABLE IF NOT EXISTS tls_stacks (
  listener TEXT NOT NULL, name TEXT NOT NULL, ja4 TEXT NOT NULL, version TEXT NOT NULL, alpn TEXT NOT NULL,
  count INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  UNIQUE (listener, name, ja4));
CREATE INDEX IF NOT EXISTS tls_stacks_by_last_seen ON tls_stacks (last_seen);
CREATE TABLE IF NOT EXISTS names (
  listener TEXT NOT NULL, name TEXT NOT NULL, phase TEXT NOT NULL, last_seen INTEGER NOT NULL,
  PRIMARY KEY (listener, name)) WITHOUT ROWID;
`;

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;

/** better-sqlite3 is an optional dependency (a native build): loaded only when a store is opened. */
function loadDriver(path: string): typeof BetterSqlite3 {
  try {
    return createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  } catch (e) {
    throw new TwinportError(
      'TWP_ERR_MIGRATION_STORE_OPEN',
      `${path}: the SQLite driver (npm package better-sqlite3) is not installed or did not build (${(e as Error).message.split('\n')[0]}); ` +
        'reinstall with build tools (python3, make, g++) or set migration_store to a redis:// URL',
      { cause: e },
    );
  }
}

export class SqliteRecordStore implements RecordStore {
  readonly describe: string;
  private readonly db: Database;
  private readonly stmts: {
    minute: Statement;
    client: Statement;
    tls: Statement;
    name: Statement;
    bump: Statement;
  };
  private readonly writeBatch: (batch: RecordBatch) => void;

  /**
   * Opens (creating the file and its folder) or throws TWP_ERR_MIGRATION_STORE_OPEN naming the path.
   * `mustExist`: for a reader (`twinport report`), a missing file is an error, not an empty record.
   */
  constructor(
    readonly path: string,
    opts: { readonly mustExist?: boolean } = {},
  ) {
    this.describe = `sqlite ${path}`;
    const fail = (why: string, cause?: unknown): never => {
      throw new TwinportError('TWP_ERR_MIGRATION_STORE_OPEN', `migration_store ${path}: ${why}`, { cause });
    };
    try {
      const st = statSync(path, { throwIfNoEntry: false });
      if (st?.isDirectory() === true) fail('is a directory, not a file');
      if (st === undefined && opts.mustExist === true) fail('no such file (has twinport run with a migration listener and this store?)');
      mkdirSync(dirname(path), { recursive: true });
    } catch (e) {
      if (e instanceof TwinportError) throw e;
      fail((e as Error).message, e);
    }
    const Driver = loadDriver(path);
    let db: Database | undefined;
    try {
      db = new Driver(path, { timeout: BUSY_TIMEOUT_MS });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);
      db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
      const schema = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: number } | undefined;
      if (schema === undefined || schema.value !== SCHEMA_VERSION) fail(`not a twinport migration record (schema ${schema?.value ?? 'missing'})`);
    } catch (e) {
      db?.close();
      if (e instanceof TwinportError) throw e;
      fail((e as Error).message, e);
    }
    this.db = db!;
    this.stmts = {
      minute: this.db.prepare(
        `INSERT INTO minutes (listener, name, minute, tls, plain, plain_exempt) VALUES (@listener, @name, @minute, @tls, @plain, @plainExempt)
         ON CONFLICT (listener, name, minute) DO UPDATE SET tls = tls + excluded.tls, plain = plain + excluded.plain,
           plain_exempt = plain_exempt + excluded.plain_exempt`,
      ),
      client: this.db.prepare(
        `INSERT INTO clients (listener, name, ip, user_agent, count, first_seen, last_seen, last_non_exempt, outcome, protocol, method, path)
         VALUES (@listener, @name, @ip, @userAgent, @count, @firstSeen, @lastSeen, @lastNonExempt, @outcome, @protocol, @method, @path)
         ON CONFLICT (listener, name, ip, user_agent) DO UPDATE SET count = count + excluded.count,
           first_seen = min(first_seen, excluded.first_seen),
           last_non_exempt = max(last_non_exempt, excluded.last_non_exempt),
           outcome = CASE WHEN excluded.last_seen >= last_seen THEN excluded.outcome ELSE outcome END,
           protocol = CASE WHEN excluded.last_seen >= last_seen THEN excluded.protocol ELSE protocol END,
           method = CASE WHEN excluded.last_seen >= last_seen THEN excluded.method ELSE method END,
           path = CASE WHEN excluded.last_seen >= last_seen THEN excluded.path ELSE path END,
           last_seen = max(last_seen, excluded.last_seen)`,
      ),
      tls: this.db.prepare(
        `INSERT INTO tls_stacks (listener, name, ja4, version, alpn, count, first_seen, last_seen)
         VALUES (@listener, @name, @ja4, @version, @alpn, @count, @firstSeen, @lastSeen)
         ON CONFLICT (listener, name, ja4) DO UPDATE SET count = count + excluded.count,
           first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen),
           version = excluded.version, alpn = excluded.alpn`,
      ),
      name: this.db.prepare(
        `INSERT INTO names (listener, name, phase, last_seen) VALUES (@listener, @name, @phase, @lastSeen)
         ON CONFLICT (listener, name) DO UPDATE SET
           phase = CASE WHEN excluded.last_seen >= last_seen AND excluded.phase <> '' THEN excluded.phase ELSE phase END,
           last_seen = max(last_seen, excluded.last_seen)`,
      ),
      bump: this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value'),
    };
    const s = this.stmts;
    // One transaction per batch: all of it is on disk, or none of it.
    this.writeBatch = this.db.transaction((batch: RecordBatch) => {
      for (const m of batch.minutes) s.minute.run(m);
      for (const c of batch.clients) s.client.run(c);
      for (const t of batch.tlsStacks) s.tls.run(t);
      for (const n of batch.names) s.name.run(n);
    });
  }

  write(batch: RecordBatch): Promise<void> {
    try {
      this.writeBatch(batch);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  prune(now: number, limits: StoreLimits): Promise<void> {
    try {
      this.pruneNow(now, limits);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  private pruneNow(now: number, limits: StoreLimits): void {
    const oldest = now - limits.retention;
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM minutes WHERE minute < ?').run(Math.floor(oldest / 60_000));
      this.db.prepare('DELETE FROM clients WHERE last_seen < ?').run(oldest);
      this.db.prepare('DELETE FROM tls_stacks WHERE last_seen < ?').run(oldest);
      this.db.prepare('DELETE FROM names WHERE last_seen < ?').run(oldest);
      for (const [table, cap, key] of [
        ['clients', limits.maxClients, 'evicted.clients'],
        ['tls_stacks', limits.maxTlsStacks, 'evicted.tls_stacks'],
      ] as const) {
        const { n } = this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number };
        if (n <= cap) continue;
        const excess = n - cap;
        this.db.prepare(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} ORDER BY last_seen LIMIT ?)`).run(excess);
        this.stmts.bump.run(key, excess);
      }
    })();
  }

  read(since: number): Promise<RecordView> {
    try {
      const minuteSince = Math.floor(since / 60_000);
      const minutes = this.db
        .prepare('SELECT listener, name, minute, tls, plain, plain_exempt AS plainExempt FROM minutes WHERE minute >= ?')
        .all(minuteSince) as MinuteRow[];
      const clients = this.db
        .prepare(
          `SELECT listener, name, ip, user_agent AS userAgent, count, first_seen AS firstSeen, last_seen AS lastSeen,
             last_non_exempt AS lastNonExempt, outcome, protocol, method, path FROM clients WHERE last_seen >= ?`,
        )
        .all(since) as ClientRow[];
      const tlsStacks = this.db
        .prepare('SELECT listener, name, ja4, version, alpn, count, first_seen AS firstSeen, last_seen AS lastSeen FROM tls_stacks WHERE last_seen >= ?')
        .all(since) as TlsStackRow[];
      const names = this.db.prepare('SELECT listener, name, phase, last_seen AS lastSeen FROM names').all() as NameRow[];
      const meta = new Map((this.db.prepare('SELECT key, value FROM meta').all() as { key: string; value: number }[]).map((r) => [r.key, r.value]));
      return Promise.resolve({
        minutes,
        clients,
        tlsStacks,
        names,
        evicted: { clients: meta.get('evicted.clients') ?? 0, tlsStacks: meta.get('evicted.tls_stacks') ?? 0 },
      });
    } catch (e) {
      return Promise.reject(new TwinportError('TWP_ERR_MIGRATION_STORE_READ', `${this.path}: ${(e as Error).message}`, { cause: e }));
    }
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
