// Health, passive health and affinity table/store keys (docs/config.md, docs/health.md): the values and
// defaults they compile to, and the exact `FILE:LINE:COL key.path: message` of each mistake. Positions
// were counted by hand from the YAML below (columns are 1-based).
import test from 'ava';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';
import type { PoolConfig } from '../../src/config/types.js';

const HEAD = `listeners:
  - bind: "127.0.0.1:0"
    routes: [{ match: {}, to: a }]
pools:
`;

function pools(text: string): Readonly<Record<string, PoolConfig>> {
  return parseConfigText(HEAD + text, 'h.yaml').pools;
}

function errors(text: string): string[] {
  try {
    parseConfigText(HEAD + text, 'h.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map(formatIssue);
    throw e;
  }
  return [];
}

test('the documented examples compile to the typed config', (t) => {
  const p = pools(`  a:
    servers: ["127.0.0.1:1"]
    health: { type: tls, interval: 2s, timeout: 1s, rise: 2, fall: 3, sni: "api.example.com", alpn: [h2, http/1.1] }
    passive_health: { fall: 3, down_for: 10s }
    affinity: tls
    affinity_table: { size: 100000, ttl: 1h, sid_ttl: 90s }
    affinity_store: { redis: "redis://127.0.0.1:6379/0", timeout: 5ms, prefix: "twinport:affinity:" }
  b:
    servers: ["127.0.0.1:2"]
    health: { type: http, path: /healthz, host: api.example.com, expect_status: [200, "200-399"] }
  c:
    servers: ["127.0.0.1:3"]
    health: { type: tcp }
`);
  t.deepEqual(p['a']?.health, {
    type: 'tls',
    interval: 2000,
    timeout: 1000,
    rise: 2,
    fall: 3,
    sni: 'api.example.com',
    alpn: ['h2', 'http/1.1'],
    path: '/',
    expectStatus: [{ from: 200, to: 399 }],
  });
  t.deepEqual(p['a']?.passiveHealth, { fall: 3, downFor: 10_000 });
  t.is(p['a']?.affinity, 'tls');
  t.deepEqual(p['a']?.affinityTable, { size: 100_000, ttl: 3_600_000, sidTtl: 90_000 });
  t.deepEqual(p['a']?.affinityStore, { redis: 'redis://127.0.0.1:6379/0', timeout: 5, prefix: 'twinport:affinity:' });
  t.deepEqual(p['b']?.health, {
    type: 'http',
    interval: 2000,
    timeout: 1000,
    rise: 2,
    fall: 3,
    path: '/healthz',
    host: 'api.example.com',
    expectStatus: [
      { from: 200, to: 200 },
      { from: 200, to: 399 },
    ],
  });
  t.is(p['c']?.health?.type, 'tcp');
  t.false('passiveHealth' in p['c']!);
  t.false('affinityStore' in p['c']!);
});

test('defaults: counts, durations, the status range, the store prefix; a short interval pulls the timeout down', (t) => {
  const p = pools(`  a:
    servers: ["127.0.0.1:1"]
    health: { type: tcp }
    passive_health: {}
    affinity: tls
    affinity_store: { redis: "rediss://cache.internal:6380" }
  b:
    servers: ["127.0.0.1:2"]
    health: { type: http, interval: 500ms }
`);
  t.deepEqual(p['a']?.health, { type: 'tcp', interval: 2000, timeout: 1000, rise: 2, fall: 3, path: '/', expectStatus: [{ from: 200, to: 399 }] });
  t.deepEqual(p['a']?.passiveHealth, { fall: 3, downFor: 10_000 });
  t.deepEqual(p['a']?.affinityTable, { size: 100_000, ttl: 3_600_000, sidTtl: 300_000 }, 'the table has defaults without the key; session IDs 5m');
  t.deepEqual(p['a']?.affinityStore, { redis: 'rediss://cache.internal:6380', timeout: 5, prefix: 'twinport:affinity:' });
  t.is(p['b']?.health?.interval, 500);
  t.is(p['b']?.health?.timeout, 250, 'half the interval when that is under 1s');
  t.true(Object.isFrozen(p['b']?.health?.expectStatus));
});

test('a trailing dot in the check SNI is dropped, as a DNS name written absolute', (t) => {
  const p = pools(`  a:
    servers: ["127.0.0.1:1"]
    health: { type: tls, sni: "api.example.com." }
`);
  t.is(p['a']?.health?.sni, 'api.example.com');
});

test('http check mistakes: interval floor, keys of another type, status codes and ranges, path, host, rise', (t) => {
  t.deepEqual(
    errors(`  a:
    servers: ["127.0.0.1:1"]
    health:
      type: http
      interval: 50ms
      sni: api.example.com
      expect_status: [200, 600, "399-200", "200-700", "abc", 1.5]
      path: healthz
      host: "a b"
      rise: 0
`),
    [
      'h.yaml:9:17 pools.a.health.interval: 50ms is too short: checks run at most every 100ms',
      'h.yaml:10:7 pools.a.health.sni: only used with type: tls (type is http)',
      'h.yaml:11:28 pools.a.health.expect_status[1]: must be a whole number from 100 to 599',
      'h.yaml:11:33 pools.a.health.expect_status[2]: "399-200" is an empty range: the first code must not be larger than the second',
      'h.yaml:11:44 pools.a.health.expect_status[3]: "200-700": status codes run from 100 to 599 (RFC 9110 §15)',
      'h.yaml:11:55 pools.a.health.expect_status[4]: "abc" is not a status code or range: write 200 or "200-399"',
      'h.yaml:11:62 pools.a.health.expect_status[5]: must be a status code or a range such as "200-399"',
      'h.yaml:12:13 pools.a.health.path: "healthz" must start with "/" and hold no spaces or control characters (RFC 9112 §3.2.1)',
      'h.yaml:13:13 pools.a.health.host: "a b" is not a Host header value: write host or host:port (RFC 9110 §7.2)',
      'h.yaml:14:13 pools.a.health.rise: must be a whole number from 1 to 100',
    ],
  );
});

test('tls and tcp check mistakes: timeout not under interval, an IP as SNI, empty alpn, foreign keys, a typo, no type', (t) => {
  t.deepEqual(
    errors(`  a:
    servers: ["127.0.0.1:1"]
    health: { type: tls, interval: 1s, timeout: 1s, sni: "10.0.0.1", alpn: [], path: /x }
  b:
    servers: ["127.0.0.1:2"]
    health: { type: tcp, expect_status: [200], sni: "bad_name", intervall: 1s }
  c:
    servers: ["127.0.0.1:3"]
    health: { interval: 1s }
`),
    [
      'h.yaml:7:49 pools.a.health.timeout: timeout (1s) must be shorter than interval (1s): a check must end before the next one is due',
      'h.yaml:7:58 pools.a.health.sni: "10.0.0.1" is an IP address: SNI carries host names only (RFC 6066 §3)',
      'h.yaml:7:76 pools.a.health.alpn: must not be empty',
      'h.yaml:7:80 pools.a.health.path: only used with type: http (type is tls)',
      'h.yaml:10:26 pools.b.health.expect_status: only used with type: http (type is tcp)',
      'h.yaml:10:48 pools.b.health.sni: only used with type: tls (type is tcp)',
      'h.yaml:10:65 pools.b.health.intervall: unknown key "intervall" (did you mean "interval"?)',
      'h.yaml:13:13 pools.c.health.type: required key is missing',
    ],
  );
});

test('a check SNI that is not a host name', (t) => {
  t.deepEqual(
    errors(`  a:
    servers: ["127.0.0.1:1"]
    health: { type: tls, sni: "bad_name" }
`),
    ['h.yaml:7:31 pools.a.health.sni: "bad_name" is not a host name'],
  );
});

test('passive health and affinity mistakes: counts, units, keys without affinity: tls, Redis URLs, the lookup bound', (t) => {
  t.deepEqual(
    errors(`  a:
    servers: ["127.0.0.1:1"]
    passive_health: { fall: 0, down_for: 10 }
    affinity_table: { size: 1000 }
  b:
    affinity: tls
    servers: ["127.0.0.1:2"]
    affinity_table: { size: 0, ttl: 1h, sid_ttl: 300 }
    affinity_store: { redis: "http://127.0.0.1:6379/0", timeout: 2s }
  c:
    affinity: tls
    servers: ["127.0.0.1:3"]
    affinity_store: { redis: "redis://127.0.0.1:6379/cache" }
  d:
    affinity: tls
    servers: ["127.0.0.1:4"]
    affinity_store: { redis: "not a url", prefix: "" }
`),
    [
      'h.yaml:7:29 pools.a.passive_health.fall: must be a whole number from 1 to 100',
      'h.yaml:7:42 pools.a.passive_health.down_for: durations need a unit: write "10s" or "10ms" (units: ms, s, m, h)',
      'h.yaml:8:5 pools.a.affinity_table: only used with affinity: tls',
      'h.yaml:12:29 pools.b.affinity_table.size: must be a whole number from 1 to 10000000',
      'h.yaml:12:50 pools.b.affinity_table.sid_ttl: durations need a unit: write "300s" or "300ms" (units: ms, s, m, h)',
      'h.yaml:13:30 pools.b.affinity_store.redis: "http://127.0.0.1:6379/0" is not a Redis URL (scheme http): write redis://host:port/db or rediss://host:port/db',
      'h.yaml:13:66 pools.b.affinity_store.timeout: 2s is too long: at most 1s, since a new TLS connection may wait this long for the lookup',
      'h.yaml:17:30 pools.c.affinity_store.redis: "redis://127.0.0.1:6379/cache": the database "cache" must be a number',
      'h.yaml:21:30 pools.d.affinity_store.redis: "not a url" is not a URL: write redis://host:port/db or rediss://host:port/db',
      'h.yaml:21:51 pools.d.affinity_store.prefix: must not be empty',
    ],
  );
});

test('affinity_store without its redis key', (t) => {
  t.deepEqual(
    errors(`  a:
    affinity: tls
    servers: ["127.0.0.1:1"]
    affinity_store: { timeout: 5ms }
`),
    ['h.yaml:8:21 pools.a.affinity_store.redis: required key is missing'],
  );
});
