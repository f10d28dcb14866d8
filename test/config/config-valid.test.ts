// Valid configs: every default filled in as docs/config.md says, every string compiled, the result frozen
// all the way down; the demo config and the shipped examples pass the same validator.
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, buildDemoConfig, checkConfigFile, loadConfigFile, parseConfigText } from '../../src/config/load.js';
import { matchName } from '../../src/routing/name-pattern.js';
import { cidrContains } from '../../src/routing/cidr.js';
import { fixture, repoRoot } from './fixture-paths.js';

/** Paths of every object or array reachable from `value` that is not frozen (Buffers and functions are leaves). */
function unfrozen(value: unknown, path = '$'): string[] {
  if (typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return [];
  const own = Object.isFrozen(value) ? [] : [path];
  return [...own, ...Object.entries(value).flatMap(([k, v]) => unfrozen(v, `${path}.${k}`))];
}

test('the design.md §3 example (plus the two pools it names) loads with the right values and defaults', (t) => {
  const file = fixture('good/design-example.yaml');
  const c = loadConfigFile(file);
  t.is(c.source, resolve(file));
  t.is(c.shutdownTimeout, 30_000);
  t.deepEqual(c.log, { level: 'info', rawBytes: false, ja4: false });
  t.is(c.listeners.length, 1);
  const l = c.listeners[0]!;
  t.is(l.name, 'keystone');
  t.deepEqual(l.bind, { text: '127.0.0.1:5000', host: '127.0.0.1', port: 5000 });
  t.deepEqual(l.timeouts, { peek: 5000, connect: 3000, idle: 3_600_000, silent: 3000 });
  t.is(l.maxClientHello, 64 * 1024);
  t.is(l.maxConnections, undefined);
  t.false('maxConnections' in l);
  t.deepEqual(
    l.proxyProtocol?.trusted.map((c) => [c.text, c.family, c.prefix]),
    [['10.0.0.0/8', 4, 8]],
  );
  t.true(cidrContains(l.proxyProtocol!.trusted[0]!, '10.1.2.3'));

  t.is(l.routes.length, 4);
  const [r0, r1, r2, r3] = l.routes;
  t.deepEqual(r0, { index: 0, match: { sni: [{ kind: 'exact', name: 'identity.example.com' }] }, to: 'identity-tls' });
  t.deepEqual(r1?.match.alpn, ['h2']);
  t.deepEqual(r1?.match.sni, [{ kind: 'wildcard', suffix: '.example.com' }]);
  t.is(r1?.to, 'web-h2');
  t.deepEqual(r2?.match, { protocol: ['tls'] });
  t.deepEqual(r3?.match, { protocol: ['http', 'h2c'] });
  t.is(r3?.to, 'http');

  t.deepEqual(Object.keys(c.pools).sort(), ['http', 'https', 'identity-tls', 'web-h2']);
  t.deepEqual(c.pools['http'], {
    name: 'http',
    balance: 'round-robin',
    retries: 0,
    affinityTable: { size: 100_000, ttl: 3_600_000, sidTtl: 300_000 },
    queue: { size: 1024, timeout: 5000 },
    servers: [{ address: { text: '127.0.0.1:5080', host: '127.0.0.1', port: 5080 }, weight: 1, backup: false }],
  });
  const https = c.pools['https']!;
  t.is(https.balance, 'round-robin');
  t.is(https.affinity, 'tls');
  t.is(https.retries, 1, 'default retries = servers - 1');
  t.deepEqual(https.servers[1], {
    address: { text: '127.0.0.1:5444', host: '127.0.0.1', port: 5444 },
    weight: 2,
    sendProxy: 'v2',
    backup: false,
  });
  const h2 = c.pools['web-h2']!;
  t.is(h2.balance, 'hash');
  t.is(h2.hashKey, 'sni+source-ip');
  t.is(h2.retries, 0, 'an explicit retries wins over the default');
  t.deepEqual(h2.servers[0]?.address, { text: '[::1]:7443', host: '::1', port: 7443 });
  t.true(h2.servers[0]?.backup);
  t.deepEqual(h2.servers[1]?.address, { text: 'unix:/run/web-h2.sock', path: '/run/web-h2.sock' });
});

test('the loaded config is frozen all the way down', (t) => {
  for (const name of ['good/design-example.yaml', 'good/full.yaml', 'good/minimal.yaml']) {
    const c = loadConfigFile(fixture(name));
    t.deepEqual(unfrozen(c), [], name);
  }
  const c = loadConfigFile(fixture('good/minimal.yaml'));
  t.throws(() => {
    (c.listeners as unknown as unknown[]).push({});
  }, { instanceOf: TypeError });
});

test('a minimal config: the listener is named after its bind, port 0 is allowed', (t) => {
  const c = loadConfigFile(fixture('good/minimal.yaml'));
  t.is(c.listeners[0]?.name, '127.0.0.1:0');
  t.is(c.listeners[0]?.bind.port, 0);
  t.is(c.pools['https']?.retries, 0);
});

test('a listener without migration has none; migration: {} is observe with the defaults', (t) => {
  const base = 'pools: { p: { servers: ["127.0.0.1:1"] } }\nlisteners:\n  - bind: "127.0.0.1:0"\n    routes: [{ match: {}, to: p }]\n';
  t.is(parseConfigText(base, 'a.yaml').listeners[0]!.migration, undefined);
  const m = parseConfigText(`${base}    migration: {}\n`, 'b.yaml').listeners[0]!.migration;
  t.deepEqual(m, { phase: 'observe', redirectStatus: 308, rejectStatus: 426, exempt: { sources: [], userAgents: [] }, names: [] });
});

test('every key with a non-default value is compiled', (t) => {
  const c = loadConfigFile(fixture('good/full.yaml'));
  const l = c.listeners[0]!;
  t.deepEqual(l.bind, { text: '[::1]:0', host: '::1', port: 0 });
  t.deepEqual(l.timeouts, { peek: 1500, connect: 250, idle: 600_000, silent: 1000 });
  t.is(l.maxClientHello, 16 * 1024);
  t.is(l.maxConnections, 1000);
  t.deepEqual(l.proxyProtocol?.trusted.map((x) => x.family), [4, 6]);
  t.is(c.shutdownTimeout, 3_600_000);
  t.deepEqual(c.log, { level: 'debug', rawBytes: true, ja4: true });
  const m = l.migration!;
  t.like(m, { phase: 'redirect', httpsPort: 8443, redirectStatus: 307, rejectStatus: 403, canonicalHost: '[2001:db8::1]' });
  t.true(cidrContains(m.exempt.sources[0]!, '10.0.0.5'));
  t.deepEqual(
    m.exempt.userAgents.map((p) => (p.kind === 'exact' ? p.value : `~${p.source}`)),
    ['~^legacy-agent/', 'Go-http-client/1.1'],
  );
  t.deepEqual(m.names.map((r) => r.phase), ['reject', 'observe']);
  t.deepEqual(m.names[0]!.match, [{ kind: 'exact', name: 'keystone.internal' }]);
  t.is(m.names[1]!.match.length, 2);

  const [ssh, noSni, names, host, all] = l.routes;
  t.is(ssh?.name, 'ssh');
  t.deepEqual(ssh?.match.protocol, ['silent']);
  t.true(cidrContains(ssh!.match.source![0]!, '192.168.7.7'));
  t.is(noSni?.match.sni, null);
  const patterns = names!.match.sni!;
  t.is(patterns.length, 2);
  t.true(matchName(patterns[0]!, 'API7.example.com'), 'regexes are case-insensitive');
  t.false(matchName(patterns[0]!, 'api.example.com'));
  t.deepEqual(patterns[1], { kind: 'exact', name: 'plain.example.com' });
  t.deepEqual(names?.match.alpn, ['h2', 'http/1.1']);
  t.deepEqual(host?.match.host, [{ kind: 'wildcard', suffix: '.example.org' }]);
  t.deepEqual(all?.match, {}, 'match: {} is the explicit catch-all');

  const pool = c.pools['ssh']!;
  t.is(pool.balance, 'least-conn');
  t.is(pool.servers[1]?.weight, 0);
  t.is(pool.servers[1]?.sendProxy, 'v1');
});

test('the demo config goes through the same validator', (t) => {
  const c = buildDemoConfig({ listen: '127.0.0.1:8080', httpBackend: '127.0.0.1:40001', httpsBackend: '[::1]:40002' });
  t.is(c.source, '<demo>');
  t.deepEqual(unfrozen(c), []);
  t.is(c.listeners.length, 1);
  const l = c.listeners[0]!;
  t.is(l.name, 'demo');
  t.deepEqual(l.bind, { text: '127.0.0.1:8080', host: '127.0.0.1', port: 8080 });
  t.deepEqual(
    l.routes.map((r) => [r.match.protocol, r.to]),
    [
      [['tls'], 'https'],
      [['http', 'h2c'], 'http'],
    ],
  );
  t.is(c.pools['http']?.servers[0]?.address.port, 40001);
  t.is(c.pools['https']?.servers[0]?.address.host, '::1');

  const error = t.throws(() => buildDemoConfig({ listen: '127.0.0.1', httpBackend: '127.0.0.1:1', httpsBackend: '127.0.0.1:2' }), {
    instanceOf: ConfigError,
  });
  t.is(error?.issues.length, 1);
  t.is(error?.issues[0]?.file, '<demo>');
  t.is(error?.issues[0]?.path, 'listeners[0].bind');
});

test('checkConfigFile summarises a valid file on one line', (t) => {
  const file = fixture('good/design-example.yaml');
  t.deepEqual(checkConfigFile(file), { ok: true, summary: `${file}: ok — 1 listener, 4 pools, 4 routes` });
});

// Security review F12: written as IPv6, these blocks never matched the IPv4 clients they name.
test('CIDRs written in IPv4-mapped form load as IPv4 and match IPv4 clients', (t) => {
  const c = parseConfigText(
    [
      'listeners:',
      '  - bind: "[::]:0"',
      '    proxy_protocol: { trusted: ["::ffff:127.0.0.2"] }',
      '    routes:',
      '      - match: { source: ["::ffff:127.0.0.0/104", "::/0"] }',
      '        to: admin',
      'pools:',
      '  admin: { servers: ["127.0.0.1:5443"] }',
      '',
    ].join('\n'),
    'mapped.yaml',
  );
  const l = c.listeners[0]!;
  const trusted = l.proxyProtocol!.trusted[0]!;
  t.like(trusted, { text: '::ffff:127.0.0.2', family: 4, prefix: 32 });
  t.true(cidrContains(trusted, '127.0.0.2'));
  t.true(cidrContains(trusted, '::ffff:127.0.0.2'));
  const [mapped, all6] = l.routes[0]!.match.source!;
  t.like(mapped, { text: '::ffff:127.0.0.0/104', family: 4, prefix: 8 });
  t.true(cidrContains(mapped!, '127.0.0.5'));
  t.true(cidrContains(mapped!, '::ffff:127.0.0.5'));
  t.like(all6, { text: '::/0', family: 6, prefix: 0 });
});

test('parseConfigText names the file as given in its messages', (t) => {
  const error = t.throws(() => parseConfigText('listeners: []\npools: {}\n', 'conf/x.yaml'), { instanceOf: ConfigError });
  t.deepEqual(
    error?.issues.map((i) => `${i.file}:${i.line}:${i.col} ${i.path}: ${i.message}`),
    ['conf/x.yaml:1:12 listeners: must not be empty', 'conf/x.yaml:2:8 pools: must not be empty'],
  );
});

const examplesDir = join(repoRoot, 'examples');
const examples = existsSync(examplesDir)
  ? readdirSync(examplesDir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.ya?ml$/.test(f))
  : [];
for (const name of examples) {
  test(`examples/${name} passes twinport check`, (t) => {
    const result = checkConfigFile(join(examplesDir, name));
    t.true(result.ok, result.ok ? '' : result.lines.join('\n'));
  });
}
if (examples.length === 0) test.todo('examples/*.yaml pass twinport check (no examples yet)');
