// The fleet store of the record (docs/migration.md): several twinport instances write their deltas into one
// Redis, where they merge by construction — counts with HINCRBY, first/last seen with sorted sets updated
// only downwards (ZADD LT) or upwards (ZADD GT) — so the report reads one fleet-wide view and no instance
// needs to know the others. One pipeline per batch, off the connection path; nothing is queued while Redis
// is down (the batch fails, is counted, and the next one tries again).
//
// Keys (P = migration_record.redis_prefix), every one refreshed to expire after the retention:
//   P m:<day>:tls | :plain | :exempt   hash  [listener,name,minute] → connections     (per UTC day)
//   P c:count  hash  [listener,name,ip,ua] → connections    P c:info  hash  member → {outcome,protocol,method,path}
//   P c:first / c:last / c:lastne  zsets of the same members (first seen, last seen, last non-exempt)
//   P t:count, t:info, t:first, t:last   the same for TLS stacks [listener,name,ja4]
//   P n:phase  hash  [listener,name] → phase      P n:last  zset
//   P evicted  hash  clients | tls_stacks → rows evicted by the caps
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { TwinportError } from '../errors.js';
import type { ClientOutcome, PlainProtocol, RecordBatch } from './record.js';
import type { ClientRow, MinuteRow, NameRow, RecordStore, RecordView, StoreLimits, TlsStackRow } from './record-store.js';

const load = createRequire(import.meta.url);
const DAY_MS = 86_400_000;
/** Members removed per prune round: a cap far exceeded is brought down over a few rounds, not in one stall. */
const PRUNE_BATCH = 10_000;

function day(minute: number): number {
  return Math.floor((minute * 60_000) / DAY_MS);
}

export interface RedisStoreOptions {
  readonly prefix: string;
  readonly retention: number;
  /** Bound on one command; the writer logs and counts a batch that took longer. */
  readonly commandTimeout?: number;
}

export class RedisRecordStore implements RecordStore {
  readonly describe: string;
  private readonly client: Redis;
  private readonly p: string;
  private readonly ttlSeconds: number;

  constructor(
    readonly url: string,
    opts: RedisStoreOptions,
  ) {
    const u = new URL(url);
    this.describe = `redis ${u.protocol}//${u.host}${u.pathname}`;
    this.p = opts.prefix;
    this.ttlSeconds = Math.ceil(opts.retention / 1000) + 86_400;
    const RedisClass = (load('ioredis') as typeof import('ioredis')).Redis;
    this.client = new RedisClass(url, {
      enableOfflineQueue: false,
      connectTimeout: 1000,
      commandTimeout: opts.commandTimeout ?? 2000,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
      lazyConnect: true,
    });
    // Errors reach the writer through the failed commands; the connection's own are expected while down.
    this.client.on('error', () => {});
  }

  /** Tries once to connect (bounded); resolves either way: a Redis that is down does not stop the proxy. */
  async connect(): Promise<boolean> {
    try {
      await this.client.connect();
      return true;
    } catch {
      return false;
    }
  }

  get ready(): boolean {
    return this.client.status === 'ready';
  }

  async write(batch: RecordBatch): Promise<void> {
    const p = this.p;
    const ttl = this.ttlSeconds;
    const pipe = this.client.pipeline();
    const dayKeys = new Set<string>();
    for (const m of batch.minutes) {
      const field = JSON.stringify([m.listener, m.name, m.minute]);
      const d = day(m.minute);
      if (m.tls > 0) pipe.hincrby(`${p}m:${d}:tls`, field, m.tls);
      if (m.plain > 0) pipe.hincrby(`${p}m:${d}:plain`, field, m.plain);
      if (m.plainExempt > 0) pipe.hincrby(`${p}m:${d}:exempt`, field, m.plainExempt);
      dayKeys.add(`${p}m:${d}:tls`).add(`${p}m:${d}:plain`).add(`${p}m:${d}:exempt`);
    }
    for (const k of dayKeys) pipe.expire(k, ttl);
    for (const c of batch.clients) {
      const member = JSON.stringify([c.listener, c.name, c.ip, c.userAgent]);
      pipe.hincrby(`${p}c:count`, member, c.count);
      pipe.zadd(`${p}c:first`, 'LT', c.firstSeen, member);
      pipe.zadd(`${p}c:last`, 'GT', c.lastSeen, member);
      if (c.lastNonExempt > 0) pipe.zadd(`${p}c:lastne`, 'GT', c.lastNonExempt, member);
      pipe.hset(`${p}c:info`, member, JSON.stringify({ outcome: c.outcome, protocol: c.protocol, method: c.method, path: c.path, at: c.lastSeen }));
    }
    for (const t of batch.tlsStacks) {
      const member = JSON.stringify([t.listener, t.name, t.ja4]);
      pipe.hincrby(`${p}t:count`, member, t.count);
      pipe.zadd(`${p}t:first`, 'LT', t.firstSeen, member);
      pipe.zadd(`${p}t:last`, 'GT', t.lastSeen, member);
      pipe.hset(`${p}t:info`, member, JSON.stringify({ version: t.version, alpn: t.alpn }));
    }
    for (const n of batch.names) {
      const member = JSON.stringify([n.listener, n.name]);
      if (n.phase !== '') pipe.hset(`${p}n:phase`, member, n.phase);
      pipe.zadd(`${p}n:last`, 'GT', n.lastSeen, member);
    }
    for (const k of ['c:count', 'c:first', 'c:last', 'c:lastne', 'c:info', 't:count', 't:first', 't:last', 't:info', 'n:phase', 'n:last', 'evicted']) {
      pipe.expire(`${p}${k}`, ttl);
    }
    const results = await pipe.exec();
    const failed = results?.find(([err]) => err !== null);
    if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('pipeline discarded');
  }

  async prune(now: number, limits: StoreLimits): Promise<void> {
    const oldest = now - limits.retention;
    await this.dropMembers(['c:count', 'c:info'], ['c:first', 'c:last', 'c:lastne'], 'c:last', oldest, limits.maxClients, 'clients');
    await this.dropMembers(['t:count', 't:info'], ['t:first', 't:last'], 't:last', oldest, limits.maxTlsStacks, 'tls_stacks');
    const p = this.p;
    const stale = await this.client.zrangebyscore(`${p}n:last`, '-inf', `(${oldest}`, 'LIMIT', 0, PRUNE_BATCH);
    if (stale.length > 0) await this.client.pipeline().zrem(`${p}n:last`, ...stale).hdel(`${p}n:phase`, ...stale).exec();
  }

  /** Removes members older than the retention, then the least recently seen beyond the cap. */
  private async dropMembers(hashes: string[], zsets: string[], byLast: string, oldest: number, cap: number, counter: string): Promise<void> {
    const p = this.p;
    const old = await this.client.zrangebyscore(`${p}${byLast}`, '-inf', `(${oldest}`, 'LIMIT', 0, PRUNE_BATCH);
    const size = await this.client.zcard(`${p}${byLast}`);
    const excess = Math.min(PRUNE_BATCH, Math.max(0, size - old.length - cap));
    const evicted = excess > 0 ? await this.client.zrange(`${p}${byLast}`, String(old.length), String(old.length + excess - 1)) : [];
    const gone = [...old, ...evicted];
    if (gone.length === 0) return;
    const pipe = this.client.pipeline();
    for (const h of hashes) pipe.hdel(`${p}${h}`, ...gone);
    for (const z of zsets) pipe.zrem(`${p}${z}`, ...gone);
    if (evicted.length > 0) pipe.hincrby(`${p}evicted`, counter, evicted.length);
    await pipe.exec();
  }

  async read(since: number): Promise<RecordView> {
    try {
      if (this.client.status === 'wait') await this.client.connect();
      const p = this.p;
      const minuteSince = Math.floor(since / 60_000);
      const now = Date.now();
      const pipe = this.client.pipeline();
      const days: number[] = [];
      for (let d = day(minuteSince); d <= Math.floor(now / DAY_MS); d++) days.push(d);
      for (const d of days) pipe.hgetall(`${p}m:${d}:tls`).hgetall(`${p}m:${d}:plain`).hgetall(`${p}m:${d}:exempt`);
      pipe.zrangebyscore(`${p}c:last`, String(since), '+inf', 'WITHSCORES');
      pipe.hgetall(`${p}c:count`).hgetall(`${p}c:info`);
      pipe.zrange(`${p}c:first`, '0', '-1', 'WITHSCORES').zrange(`${p}c:lastne`, '0', '-1', 'WITHSCORES');
      pipe.zrangebyscore(`${p}t:last`, String(since), '+inf', 'WITHSCORES');
      pipe.hgetall(`${p}t:count`).hgetall(`${p}t:info`).zrange(`${p}t:first`, '0', '-1', 'WITHSCORES');
      pipe.hgetall(`${p}n:phase`).zrange(`${p}n:last`, '0', '-1', 'WITHSCORES');
      pipe.hgetall(`${p}evicted`);
      const results = await pipe.exec();
      if (results === null) throw new Error('pipeline discarded');
      const failed = results.find(([err]) => err !== null);
      if (failed !== undefined) throw failed[0];
      const out = results.map(([, v]) => v);
      let i = 0;
      const next = <T>(): T => out[i++] as T;

      const minutes = new Map<string, { listener: string; name: string; minute: number; tls: number; plain: number; plainExempt: number }>();
      for (let k = 0; k < days.length; k++) {
        for (const kind of ['tls', 'plain', 'plainExempt'] as const) {
          for (const [field, value] of Object.entries(next<Record<string, string>>())) {
            const [listener, name, minute] = JSON.parse(field) as [string, string, number];
            if (minute < minuteSince) continue;
            let m = minutes.get(field);
            if (m === undefined) minutes.set(field, (m = { listener, name, minute, tls: 0, plain: 0, plainExempt: 0 }));
            m[kind] += Number(value);
          }
        }
      }
      const cLast = pairs(next<string[]>());
      const cCount = next<Record<string, string>>();
      const cInfo = next<Record<string, string>>();
      const cFirst = new Map(pairs(next<string[]>()));
      const cLastNe = new Map(pairs(next<string[]>()));
      const clients: ClientRow[] = [];
      for (const [member, lastSeen] of cLast) {
        const [listener, name, ip, userAgent] = JSON.parse(member) as [string, string, string, string];
        const info = JSON.parse(cInfo[member] ?? '{}') as { outcome?: ClientOutcome; protocol?: PlainProtocol; method?: string; path?: string };
        clients.push({
          listener,
          name,
          ip,
          userAgent,
          count: Number(cCount[member] ?? 0),
          firstSeen: cFirst.get(member) ?? lastSeen,
          lastSeen,
          lastNonExempt: cLastNe.get(member) ?? 0,
          outcome: info.outcome ?? 'spliced',
          protocol: info.protocol ?? 'http',
          method: info.method ?? '',
          path: info.path ?? '',
        });
      }
      const tLast = pairs(next<string[]>());
      const tCount = next<Record<string, string>>();
      const tInfo = next<Record<string, string>>();
      const tFirst = new Map(pairs(next<string[]>()));
      const tlsStacks: TlsStackRow[] = tLast.map(([member, lastSeen]) => {
        const [listener, name, ja4] = JSON.parse(member) as [string, string, string];
        const info = JSON.parse(tInfo[member] ?? '{}') as { version?: string; alpn?: string };
        return { listener, name, ja4, version: info.version ?? '', alpn: info.alpn ?? '', count: Number(tCount[member] ?? 0), firstSeen: tFirst.get(member) ?? lastSeen, lastSeen };
      });
      const phases = next<Record<string, string>>();
      const names: NameRow[] = pairs(next<string[]>()).map(([member, lastSeen]) => {
        const [listener, name] = JSON.parse(member) as [string, string];
        return { listener, name, phase: (phases[member] ?? '') as NameRow['phase'], lastSeen };
      });
      const evicted = next<Record<string, string>>();
      return {
        minutes: [...minutes.values()] as MinuteRow[],
        clients,
        tlsStacks,
        names,
        evicted: { clients: Number(evicted['clients'] ?? 0), tlsStacks: Number(evicted['tls_stacks'] ?? 0) },
      };
    } catch (e) {
      if (e instanceof TwinportError) throw e;
      throw new TwinportError('TWP_ERR_MIGRATION_STORE_READ', `${this.describe}: ${(e as Error).message}`, { cause: e });
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** [member, score, member, score, …] → [[member, score], …]. */
function pairs(flat: string[]): [string, number][] {
  const out: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, Number(flat[i + 1])]);
  return out;
}
