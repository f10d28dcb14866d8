// The embedded store (better-sqlite3): batches merge across writes and writers, retention and caps hold
// with an eviction count, and a store that cannot be opened or written says why without throwing later.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigrationRecorder } from '../../src/migration/record.js';
import { SqliteRecordStore } from '../../src/migration/sqlite-store.js';

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const DAY = 86_400_000;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'twp-sqlite-'));
}

function recorder(clock: { t: number }) {
  return new MigrationRecorder({ maxNames: 1000, maxPendingClients: 10_000, maxPendingTlsStacks: 1000 }, () => clock.t);
}

test('batches from two writers (two workers on one file) merge: counts add, first/last seen widen', async (t) => {
  const dir = tmp();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sub', 'm.db');
  const a = new SqliteRecordStore(path);
  const b = new SqliteRecordStore(path);
  const clock = { t: T0 };
  const ra = recorder(clock);
  const rb = recorder(clock);
  ra.notePlaintext('ks', 'k.internal', 'http', '10.0.0.7', 'ua', 'GET', '/v3', 'spliced', 'observe');
  ra.noteTls('ks', 'k.internal', () => '1.3', ['h2'], () => 'fp');
  clock.t += 5000;
  rb.notePlaintext('ks', 'k.internal', 'http', '10.0.0.7', 'ua', 'POST', '/v2', 'exempt', 'reject');
  rb.notePlaintext('ks', 'k.internal', 'http', '10.0.0.7', 'ua', 'POST', '/v2', 'exempt', 'reject');
  rb.noteTls('ks', 'k.internal', () => '1.3', ['h2'], () => 'fp');
  await a.write(ra.take()!);
  await b.write(rb.take()!);
  const view = await a.read(T0 - 1000);
  t.deepEqual(
    view.minutes.map((m) => [m.name, m.plain, m.plainExempt, m.tls]),
    [['k.internal', 3, 2, 2]],
  );
  t.is(view.clients.length, 1);
  t.like(view.clients[0]!, { count: 3, firstSeen: T0, lastSeen: T0 + 5000, lastNonExempt: T0, outcome: 'exempt', method: 'POST', path: '/v2' });
  t.like(view.tlsStacks[0]!, { ja4: 'fp', count: 2, version: '1.3', alpn: 'h2' });
  t.deepEqual(view.names.map((n) => [n.name, n.phase]), [['k.internal', 'reject']]);
  await a.close();
  await b.close();
  // Reopened: everything written is there (the file is the record).
  const c = new SqliteRecordStore(path, { mustExist: true });
  t.is((await c.read(0)).clients[0]!.count, 3);
  await c.close();
});

test('retention drops old rows and max_clients evicts the least recently seen, counted', async (t) => {
  const dir = tmp();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = new SqliteRecordStore(join(dir, 'm.db'));
  const clock = { t: T0 - 40 * DAY };
  const r = recorder(clock);
  r.notePlaintext('ks', 'old.internal', 'http', '10.0.0.1', 'ua', 'GET', '/', 'spliced', 'observe');
  await s.write(r.take()!);
  for (let i = 0; i < 10; i++) {
    clock.t = T0 + i * 1000;
    r.notePlaintext('ks', 'k.internal', 'http', `10.0.1.${i}`, 'ua', 'GET', '/', 'spliced', 'observe');
  }
  await s.write(r.take()!);
  await s.prune(T0 + 20_000, { retention: 30 * DAY, maxClients: 4, maxTlsStacks: 10 });
  const v = await s.read(0);
  t.false(v.minutes.some((m) => m.name === 'old.internal'), 'older than the retention');
  t.deepEqual(
    v.clients.map((c) => c.ip).sort(),
    ['10.0.1.6', '10.0.1.7', '10.0.1.8', '10.0.1.9'],
    'the four most recently seen stay',
  );
  t.deepEqual(v.evicted, { clients: 6, tlsStacks: 0 });
  await s.close();
});

test('a store path that is a directory, or a file that is not a record, is an error naming the path', (t) => {
  const dir = tmp();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'adir'));
  const e1 = t.throws(() => new SqliteRecordStore(join(dir, 'adir')));
  t.is((e1 as { code?: string }).code, 'TWP_ERR_MIGRATION_STORE_OPEN');
  t.regex(e1!.message, /adir: is a directory/);
  writeFileSync(join(dir, 'junk.db'), 'this is not a database, just some text that is long enough to have a header');
  const e2 = t.throws(() => new SqliteRecordStore(join(dir, 'junk.db')));
  t.regex(e2!.message, /junk\.db/);
  const e3 = t.throws(() => new SqliteRecordStore(join(dir, 'missing.db'), { mustExist: true }));
  t.regex(e3!.message, /missing\.db: no such file/);
});

test('a full disk fails the write (the caller counts it) and the store works again once there is room', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('needs root to mount a small tmpfs');
    if (process.env['CI'] === 'true') t.fail('CI runs as root: mount a tmpfs');
    return;
  }
  const dir = tmp();
  const mnt = join(dir, 'small');
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt], { encoding: 'utf8' });
  if (m.status !== 0) {
    if (process.env['CI'] === 'true') t.fail(`mount tmpfs failed: ${m.stderr}`);
    else t.log(`mount tmpfs failed (${m.stderr.trim()}): skipped`);
    return;
  }
  t.teardown(() => {
    spawnSync('umount', [mnt]);
    rmSync(dir, { recursive: true, force: true });
  });
  const s = new SqliteRecordStore(join(mnt, 'm.db'));
  // Fill what the store left of the tmpfs with a file we can delete.
  const filler = join(mnt, 'filler');
  spawnSync('sh', ['-c', `dd if=/dev/zero of=${filler} bs=4k 2>/dev/null; true`]);
  const clock = { t: T0 };
  const r = recorder(clock);
  for (let i = 0; i < 3000; i++) r.notePlaintext('ks', 'k.internal', 'http', `10.${i >> 8}.0.${i & 255}`, `agent-${i}-${'x'.repeat(100)}`, 'GET', '/', 'spliced', 'observe');
  const e = await t.throwsAsync(s.write(r.take()!), { any: true });
  t.regex(String((e as { code?: string }).code), /SQLITE_FULL|SQLITE_IOERR/);
  rmSync(filler);
  r.notePlaintext('ks', 'k.internal', 'http', '10.9.9.9', 'after', 'GET', '/', 'spliced', 'observe');
  await s.write(r.take()!);
  const v = await s.read(0);
  t.deepEqual(
    v.clients.map((c) => c.userAgent),
    ['after'],
    'the failed batch left nothing half-written; the next one is stored',
  );
  await s.close();
});
