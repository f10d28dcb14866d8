// The record's in-memory aggregation and the report built from a record view (issue 13 §2–3): counts per
// minute and per client equal what was noted, the caps hold, and the verdict follows the quiet period.
import test from 'ava';
import { firstPathSegment, MigrationRecorder, offeredTlsVersion, OVERFLOW_NAME, recordName, TLS_SAMPLES_PER_BATCH, type RecordBatch } from '../../src/migration/record.js';
import type { RecordView } from '../../src/migration/record-store.js';
import { buildReport, formatPeriod, isBotUserAgent, reportExitCode, reportReadSince } from '../../src/migration/report.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

function recorder(limits: Partial<{ maxNames: number; maxPendingClients: number; maxPendingTlsStacks: number }> = {}, clock = { t: T0 }) {
  return {
    clock,
    r: new MigrationRecorder({ maxNames: 100, maxPendingClients: 100, maxPendingTlsStacks: 100, ...limits }, () => clock.t),
  };
}

/** A record view made of batches, as a store would return it (merged by key). */
function viewOf(...batches: RecordBatch[]): RecordView {
  const minutes = new Map<string, { listener: string; name: string; minute: number; tls: number; plain: number; plainExempt: number }>();
  const clients = new Map<string, RecordView['clients'][number] & Record<string, unknown>>();
  const stacks: RecordView['tlsStacks'][number][] = [];
  for (const b of batches) {
    for (const m of b.minutes) {
      const k = `${m.listener}|${m.name}|${m.minute}`;
      const e = minutes.get(k) ?? { ...m, tls: 0, plain: 0, plainExempt: 0 };
      e.tls += m.tls;
      e.plain += m.plain;
      e.plainExempt += m.plainExempt;
      minutes.set(k, e);
    }
    for (const c of b.clients) {
      const k = `${c.listener}|${c.name}|${c.ip}|${c.userAgent}`;
      const e = clients.get(k);
      clients.set(k, e === undefined ? { ...c } : { ...c, count: e.count + c.count, firstSeen: e.firstSeen, lastNonExempt: Math.max(e.lastNonExempt, c.lastNonExempt) });
    }
    stacks.push(...b.tlsStacks);
  }
  return { minutes: [...minutes.values()], clients: [...clients.values()], tlsStacks: stacks, names: [], evicted: { clients: 0, tlsStacks: 0 } };
}

test('names are recorded lower case without a trailing dot; absent is ""', (t) => {
  t.is(recordName('Keystone.Internal.'), 'keystone.internal');
  t.is(recordName(undefined), '');
  t.is(recordName(''), '');
});

test('the first path segment of origin and absolute targets, bounded', (t) => {
  t.is(firstPathSegment('/v3/auth/tokens?nocatalog'), '/v3');
  t.is(firstPathSegment('/?x'), '/');
  t.is(firstPathSegment('/v2.0'), '/v2.0');
  t.is(firstPathSegment('http://keystone:5000/v3/x'), '/v3');
  t.is(firstPathSegment('http://keystone:5000'), '/');
  t.is(firstPathSegment('*'), '*');
  t.is(firstPathSegment(`/${'a'.repeat(500)}`).length, 64);
});

test('the offered TLS version: the highest non-GREASE supported_versions entry, else the legacy version', (t) => {
  t.is(offeredTlsVersion(0x0303, [0x1a1a, 0x0304, 0x0303]), '1.3');
  t.is(offeredTlsVersion(0x0303, undefined), '1.2');
  t.is(offeredTlsVersion(0x0301, undefined), '1.0');
  t.is(offeredTlsVersion(0x0300, undefined), 'ssl3');
  t.is(offeredTlsVersion(0x0303, [0x2a2a]), '1.2');
});

test('plaintext and TLS connections are counted per listener, name and minute; clients per (name, IP, User-Agent)', (t) => {
  const { r, clock } = recorder();
  for (let i = 0; i < 3; i++) r.notePlaintext('ks', 'Keystone.internal', 'http', '10.0.0.7', 'python-requests/2.31', 'GET', '/v3/x', 'spliced', 'observe');
  r.notePlaintext('ks', 'keystone.internal', 'http', '10.0.0.8', 'curl/8', 'POST', '/v3', 'exempt', 'reject');
  let ja4Reads = 0;
  for (let i = 0; i < 5; i++) r.noteTls('ks', 'keystone.internal', () => '1.3', ['h2', 'http/1.1'], () => (ja4Reads++, 't13d_x'));
  clock.t += 61_000;
  r.notePlaintext('ks', undefined, 'other', '10.0.0.9', undefined, undefined, undefined, 'rejected', 'reject');
  const b = r.take()!;
  t.is(b.connections, 10);
  t.is(r.take(), undefined, 'a batch is handed out once');
  const m = b.minutes.find((x) => x.name === 'keystone.internal')!;
  t.like(m, { listener: 'ks', tls: 5, plain: 4, plainExempt: 1, minute: Math.floor(T0 / 60_000) });
  t.like(b.minutes.find((x) => x.name === '')!, { plain: 1, minute: Math.floor(T0 / 60_000) + 1 });
  const py = b.clients.find((c) => c.userAgent === 'python-requests/2.31')!;
  t.like(py, { count: 3, ip: '10.0.0.7', outcome: 'spliced', method: 'GET', path: '/v3', lastNonExempt: T0 });
  t.like(b.clients.find((c) => c.ip === '10.0.0.8')!, { outcome: 'exempt', lastNonExempt: 0 });
  t.deepEqual(b.tlsStacks.map((s) => [s.ja4, s.version, s.alpn, s.count]), [['t13d_x', '1.3', 'h2,http/1.1', 5]]);
  t.true(ja4Reads >= 1);
  const outcomes = [...r.outcomeCounts()].map((o) => `${o.name}/${o.protocol}/${o.outcome}=${o.count}`).sort();
  t.deepEqual(outcomes, ['/other/rejected=1', 'keystone.internal/http/exempt=1', 'keystone.internal/http/spliced=3', 'keystone.internal/tls/spliced=5']);
});

test('names beyond max_names are counted under "*": made-up Host headers neither grow the record nor hide plaintext', (t) => {
  const { r } = recorder({ maxNames: 3 });
  for (let i = 0; i < 50; i++) r.notePlaintext('ks', `n${i}.example`, 'http', '10.0.0.1', 'x', 'GET', '/', 'spliced', 'observe');
  const b = r.take()!;
  const names = new Set(b.minutes.map((m) => m.name));
  t.deepEqual([...names].sort(), ['*', 'n0.example', 'n1.example', 'n2.example'].sort());
  t.is(b.minutes.find((m) => m.name === OVERFLOW_NAME)!.plain, 47);
  t.is(r.counters.namesOverflow, 47);
  t.true([...r.outcomeCounts()].length <= 4, 'the metric labels are bounded too');
});

test('distinct clients per batch are capped; the connections still count per minute', (t) => {
  const { r } = recorder({ maxPendingClients: 10, maxPendingTlsStacks: 2 });
  for (let i = 0; i < 25; i++) r.notePlaintext('ks', 'a', 'http', `10.0.0.${i}`, 'x', 'GET', '/', 'spliced', 'observe');
  for (let i = 0; i < 5; i++) r.noteTls('ks', 'a', () => '1.3', undefined, () => `fp${i}`);
  const b = r.take()!;
  t.is(b.clients.length, 10);
  t.is(r.counters.clientsDropped, 15);
  t.is(b.tlsStacks.length, 2);
  t.is(r.counters.tlsStacksDropped, 3);
  t.like(b.minutes[0]!, { plain: 25, tls: 5 });
});

test('every TLS connection is counted; at most TLS_SAMPLES_PER_BATCH per name and minute are fingerprinted', (t) => {
  const { r } = recorder();
  let ja4Reads = 0;
  for (let i = 0; i < TLS_SAMPLES_PER_BATCH * 3; i++) r.noteTls('ks', 'a', () => '1.3', undefined, () => (ja4Reads++, i % 2 === 0 ? 'even' : 'odd'));
  const b = r.take()!;
  t.is(b.minutes[0]!.tls, TLS_SAMPLES_PER_BATCH * 3);
  t.is(ja4Reads, TLS_SAMPLES_PER_BATCH);
  t.deepEqual(b.tlsStacks.map((s) => s.ja4).sort(), ['even', 'odd'], 'both stacks found in the sample');
  // The next batch samples afresh.
  r.noteTls('ks', 'a', () => '1.3', undefined, () => 'later');
  t.deepEqual(r.take()!.tlsStacks.map((s) => s.ja4), ['later']);
});

test('report: counts, share, clients newest first, and the verdicts safe / not-safe / no-traffic', (t) => {
  const clock = { t: T0 - 2 * H };
  const { r } = recorder({}, clock);
  // keystone: plaintext two hours ago only → safe for a 1h quiet period, not safe for 24h.
  r.notePlaintext('ks', 'keystone.internal', 'http', '10.0.0.7', 'python-requests/2.31', 'GET', '/v3', 'spliced', 'observe');
  clock.t = T0 - 2 * H + 1000;
  r.notePlaintext('ks', 'keystone.internal', 'http', '10.0.0.8', 'kube-probe/1.29', 'GET', '/healthz', 'spliced', 'observe');
  const old = r.take()!;
  clock.t = T0 - 60_000;
  for (let i = 0; i < 3; i++) r.noteTls('ks', 'keystone.internal', () => '1.3', ['http/1.1'], () => 'fp');
  // nova: plaintext a minute ago, but exempt → safe.
  r.notePlaintext('ks', 'nova.internal', 'http', '10.0.0.5', 'legacy-agent/1', 'GET', '/', 'exempt', 'reject');
  // glance: non-exempt plaintext a minute ago → not safe.
  r.notePlaintext('ks', 'glance.internal', 'http', '10.0.0.9', 'curl/8.5', 'PUT', '/v2/images', 'rejected', 'reject');
  const recent = r.take()!;
  const view = viewOf(old, recent);

  const opts = { now: T0, since: 24 * H, quietFor: H, names: undefined };
  const rep = buildReport(view, { now: T0, since: 24 * H, quietFor: H });
  const ks = rep.names.find((n) => n.name === 'keystone.internal')!;
  t.is(ks.verdict, 'safe');
  t.like(ks.plaintext, { connections: 2, clients: 2, share: 0.4, exempt: 0 });
  t.is(ks.tls.connections, 3);
  t.deepEqual(ks.clients.map((c) => [c.ip, c.bot]), [['10.0.0.8', true], ['10.0.0.7', false]], 'newest first; the probe is recognisable');
  t.is(rep.names.find((n) => n.name === 'nova.internal')!.verdict, 'safe');
  const glance = rep.names.find((n) => n.name === 'glance.internal')!;
  t.is(glance.verdict, 'not-safe');
  t.like(glance.notSafe!, { connections: 1, lastClient: { ip: '10.0.0.9', userAgent: 'curl/8.5' } });
  t.is(reportExitCode(rep), 3);
  t.is(rep.quietFor, '1h');
  t.is(rep.since, new Date(T0 - 24 * H).toISOString());
  t.is(reportReadSince(opts), T0 - 24 * H);

  const strict = buildReport(view, { now: T0, since: 24 * H, quietFor: 24 * H, names: ['keystone.internal', 'never.seen'] });
  t.deepEqual(
    strict.names.map((n) => [n.name, n.verdict]),
    [
      ['keystone.internal', 'not-safe'],
      ['never.seen', 'no-traffic'],
    ],
  );
  t.is(reportExitCode(buildReport(view, { now: T0, since: 24 * H, quietFor: H, names: ['nova.internal', 'never.seen'] })), 0);
  // A window that starts after all traffic: no traffic, exit 0.
  const later = buildReport(view, { now: T0 + 48 * H, since: H, quietFor: H });
  t.deepEqual(later.names, []);
  t.is(reportExitCode(later), 0);
});

test('report JSON has the documented shape, with null for requests without a name', (t) => {
  const { r } = recorder();
  r.notePlaintext('ks', undefined, 'http', '10.0.0.1', undefined, 'GET', '/', 'spliced', 'observe');
  const rep = buildReport(viewOf(r.take()!), { now: T0 + 1000, since: H, quietFor: H, phaseOf: () => 'redirect' });
  const n = rep.names[0]!;
  t.is(n.name, null);
  t.is(n.phase, 'redirect');
  t.is(n.clients[0]!.userAgent, null);
  for (const key of ['listener', 'name', 'phase', 'verdict', 'plaintext', 'tls', 'clients']) t.true(key in n, key);
  for (const key of ['connections', 'clients', 'lastSeen']) t.true(key in n.plaintext, key);
  for (const key of ['ip', 'userAgent', 'count', 'firstSeen', 'lastSeen', 'outcome']) t.true(key in n.clients[0]!, key);
  for (const key of ['generatedAt', 'since', 'quietFor', 'names']) t.true(key in rep, key);
});

test('bots and health checkers are recognised by User-Agent; periods print as written', (t) => {
  for (const ua of ['kube-probe/1.29', 'ELB-HealthChecker/2.0', 'Googlebot/2.1', 'Prometheus/2.45', 'check_http/v2.3']) t.true(isBotUserAgent(ua), ua);
  for (const ua of ['python-requests/2.31', 'curl/8.5.0', 'openstacksdk/1.0 keystoneauth1/5.1']) t.false(isBotUserAgent(ua), ua);
  t.is(formatPeriod(24 * H), '24h');
  t.is(formatPeriod(30 * 24 * H), '30d');
  t.is(formatPeriod(90 * 60_000), '90m');
});

test('the outcome metric keeps the busiest names per listener and sums the rest under "*"', async (t) => {
  const { boundedOutcomes } = await import('../../src/migration/record.js');
  const counts = [
    { listener: 'ks', name: 'a', protocol: 'http' as const, outcome: 'spliced' as const, count: 10 },
    { listener: 'ks', name: 'b', protocol: 'http' as const, outcome: 'spliced' as const, count: 5 },
    { listener: 'ks', name: 'c', protocol: 'http' as const, outcome: 'spliced' as const, count: 1 },
    { listener: 'ks', name: '*', protocol: 'http' as const, outcome: 'spliced' as const, count: 2 },
    { listener: 'ks', name: 'c', protocol: 'tls' as const, outcome: 'spliced' as const, count: 3 },
  ];
  const out = boundedOutcomes(counts, 2);
  t.deepEqual(
    out.map((o) => `${o.name}/${o.protocol}=${o.count}`).sort(),
    ['*/http=3', '*/tls=3', 'a/http=10', 'b/http=5'],
  );
  t.is(out.reduce((n, o) => n + o.count, 0), counts.reduce((n, o) => n + o.count, 0), 'nothing lost');
});
