// The admin listener against a running proxy with real clients and backends: exact metric values for
// known traffic, the token, drain / maint / ready, closing one connection, per-source limits, the
// affinity table and what survives a reload.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { parsePromText, sumOf } from '../../src/admin/prom-text.js';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/issues.js';
import { fetchVia, startAdminFor, startHttpBackend, startHttpsBackend } from '../helpers/admin-harness.js';
import { canListenOn, startProxy, type LogLine } from '../helpers/proxy-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'twinport-admin-'));

async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 10));
}

function connectRaw(port: number, localAddress?: string, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, ...(localAddress !== undefined && { localAddress }) }, () => resolve(s));
    s.on('error', reject);
  });
}

test('metrics: N HTTP, M TLS, K rejects and one limit hit give exactly those counters, equal to the close lines', async (t) => {
  const web = await startHttpBackend('web');
  const secure = await startHttpsBackend('secure');
  const hold = await startHttpBackend('hold', 60_000);
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    routes:
      - { match: { protocol: tls }, to: secure }
      - { match: { protocol: http }, to: web }
  - name: small
    bind: "127.0.0.5:0"
    max_connections: 1
    routes:
      - { match: { protocol: http }, to: hold }
pools:
  web: { servers: ["${web.address}"] }
  secure: { servers: ["${secure.address}"] }
  hold: { servers: ["${hold.address}"] }
admin:
  bind: "127.0.0.1:0"
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await Promise.all([web.close(), secure.close(), hold.close()]);
  });
  const N = 5;
  const M = 3;
  const K = 2;
  const main = proxy.port('main');
  for (let i = 0; i < N; i++) t.is((await fetchVia(main)).body, 'web\n');
  for (let i = 0; i < M; i++) t.is((await fetchVia(main, { tls: true })).body, 'secure\n');
  for (let i = 0; i < K; i++) {
    // A TLS record header with an alert type: claimed by the TLS probe and refused (tls.record.*).
    const s = await connectRaw(main);
    s.end(Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]));
    await new Promise((r) => s.on('close', r));
  }
  // The small listener holds one slow request; the second connection is over its max_connections.
  const slow = await connectRaw(proxy.port('small'), undefined, '127.0.0.5');
  slow.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => hold.requests >= 1);
  const over = await connectRaw(proxy.port('small'), undefined, '127.0.0.5');
  await new Promise((r) => over.on('close', r));
  const limitLine = await proxy.logs.waitForClose((l) => l['reason'] === 'limit');
  t.regex(String(limitLine['client']), /^127\.0\.0\.1:\d+$/, 'the limit close line names the client');
  const expectedCloses = N + M + K + 1;
  await until(() => proxy.logs.closes().length >= expectedCloses);

  const scrape = await admin.get('/metrics');
  t.is(scrape.status, 200);
  t.regex(String(scrape.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const m = parsePromText(scrape.text);
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'main', protocol: 'http', reason: 'done' }), N);
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'main', protocol: 'tls', reason: 'done' }), M);
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'main', protocol: 'tls', reason: 'rejected' }), K);
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'small', reason: 'limit' }), 1);
  t.is(sumOf(m, 'twinport_limit_rejections_total', { listener: 'small', limit: 'listener.max_connections' }), 1);
  t.is(sumOf(m, 'twinport_rejected_total', { listener: 'main' }), K);
  // Envoy's rule: one outcome per connection, so the counters add up to the close lines.
  t.is(sumOf(m, 'twinport_connections_total'), proxy.logs.closes().length);
  t.is(sumOf(m, 'twinport_connections_accepted_total', { listener: 'main' }), N + M + K);
  t.is(sumOf(m, 'twinport_connections_accepted_total', { listener: 'small' }), 2);
  t.is(sumOf(m, 'twinport_connections_active', { listener: 'small' }), 1);
  const closed = (pool: string, key: 'bytesIn' | 'bytesOut') =>
    proxy.logs.closes().filter((l) => l['pool'] === pool).reduce((n, l) => n + (l[key] as number), 0);
  t.is(sumOf(m, 'twinport_bytes_total', { pool: 'web', direction: 'in' }), closed('web', 'bytesIn'));
  t.is(sumOf(m, 'twinport_bytes_total', { pool: 'secure', direction: 'out' }), closed('secure', 'bytesOut'));
  t.true(sumOf(m, 'twinport_bytes_total', { pool: 'hold', direction: 'in' }) > 0, 'an open connection counts its bytes so far');
  t.is(sumOf(m, 'twinport_peek_duration_seconds_count', { listener: 'main' }), N + M);
  t.is(sumOf(m, 'twinport_connect_duration_seconds_count', { pool: 'secure' }), M);
  t.is(sumOf(m, 'twinport_server_up', { pool: 'web', server: web.address }), 1);
  t.is(sumOf(m, 'twinport_server_state', { pool: 'web', server: web.address, state: 'ready' }), 1);
  t.is(sumOf(m, 'twinport_server_active_connections', { pool: 'hold', server: hold.address }), 1);
  // A second scrape does not count anything twice.
  const again = parsePromText((await admin.get('/metrics')).text);
  t.is(sumOf(again, 'twinport_connections_total', { listener: 'main', protocol: 'http', reason: 'done' }), N);
  slow.destroy();
});

test('the token: without it every API call is refused (401), with it answered; the page shell loads without it', async (t) => {
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 's3cret-token\n');
  const web = await startHttpBackend('web');
  const proxy = await startProxy(`
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: {}, to: web }] }
pools:
  web: { servers: ["${web.address}"] }
admin:
  bind: "127.0.0.1:0"
  token_file: ${tokenFile}
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await web.close();
  });
  const statePath = `/pools/web/servers/${encodeURIComponent(web.address)}/state`;
  for (const path of ['/metrics', '/status', '/pools', '/connections']) {
    const r = await admin.get(path);
    t.is(r.status, 401, path);
    t.is((r.body as { code: string }).code, 'TWP_ADMIN_UNAUTHORIZED');
  }
  t.is((await admin.post(statePath, { state: 'drain' })).status, 401);
  t.is((await admin.post(statePath, { state: 'drain' }, 'wrong')).status, 401);
  t.is(proxy.runtime.poolRuntimes.get('web')!.state.adminState(0), 'ready', 'a refused call changed nothing');
  t.is((await admin.get('/status', 's3cret-token')).status, 200);
  const ok = await admin.post(statePath, { state: 'drain' }, 's3cret-token');
  t.is(ok.status, 200);
  t.is(proxy.runtime.poolRuntimes.get('web')!.state.adminState(0), 'drain');
  const page = await admin.get('/');
  t.is(page.status, 200);
  t.regex(page.text, /<title>twinport<\/title>/);
});

test('config: the admin bind may not be a data listener\'s address, nor a non-loopback address without a token', (t) => {
  const e = t.throws(
    () =>
      parseConfigText(
        `listeners:
  - { name: main, bind: "127.0.0.1:7001", routes: [{ match: {}, to: web }] }
pools:
  web: { servers: ["127.0.0.1:9"] }
admin:
  bind: "127.0.0.1:7001"
`,
        'admin.yaml',
      ),
    { instanceOf: ConfigError },
  );
  t.true(e.issues.some((i) => i.path === 'admin.bind' && /never shares a data listener/.test(i.message) && i.line === 6));
  const e2 = t.throws(
    () =>
      parseConfigText(
        `listeners:
  - { name: main, bind: "127.0.0.1:7001", routes: [{ match: {}, to: web }] }
pools:
  web: { servers: ["127.0.0.1:9"] }
admin:
  bind: "0.0.0.0:9901"
`,
        'admin.yaml',
      ),
    { instanceOf: ConfigError },
  );
  t.true(e2.issues.some((i) => i.path === 'admin.bind' && /needs admin.token_file/.test(i.message)));
});

test('errors: unknown pool or server is 404 naming it, a bad state is 400 listing the allowed ones, unknown paths and methods answer JSON', async (t) => {
  const web = await startHttpBackend('web');
  const proxy = await startProxy(`
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: {}, to: web }] }
pools:
  web: { servers: ["${web.address}"] }
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await web.close();
  });
  const noPool = await admin.post('/pools/nope/servers/x/state', { state: 'drain' });
  t.is(noPool.status, 404);
  t.regex((noPool.body as { message: string }).message, /no pool "nope"/);
  const noServer = await admin.post('/pools/web/servers/10.9.9.9%3A1/state', { state: 'drain' });
  t.is(noServer.status, 404);
  t.regex((noServer.body as { message: string }).message, /no server "10\.9\.9\.9:1"/);
  const bad = await admin.post(`/pools/web/servers/${encodeURIComponent(web.address)}/state`, { state: 'off' });
  t.is(bad.status, 400);
  t.regex((bad.body as { message: string }).message, /ready, drain, maint/);
  t.is((await admin.get('/nothing')).status, 404);
  const wrongMethod = await admin.get(`/pools/web/servers/${encodeURIComponent(web.address)}/state`);
  t.is(wrongMethod.status, 405);
  t.is(wrongMethod.headers['allow'], 'POST');
  t.is((await admin.get('/pools/nope')).status, 404);
  const migration = await admin.get('/migration');
  t.is(migration.status, 404);
  t.is((migration.body as { error: string }).error, 'migration record not enabled');
});

test('DELETE /connections/{id} closes one live connection with reason admin: one close line, counted once', async (t) => {
  const slow = await startHttpBackend('slow', 60_000);
  const proxy = await startProxy(`
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: {}, to: slow }] }
pools:
  slow: { servers: ["${slow.address}"] }
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await slow.close();
  });
  const client = await connectRaw(proxy.port());
  client.write('GET /x HTTP/1.1\r\nHost: app.example\r\n\r\n');
  await until(() => slow.requests >= 1);
  const list = (await admin.get(`/connections?pool=slow&limit=10`)).body as { total: number; connections: { id: number; host: string; server: string; protocol: string; bytesIn: number }[] };
  t.is(list.total, 1);
  const c = list.connections[0]!;
  t.is(c.host, 'app.example');
  t.is(c.server, slow.address);
  t.is(c.protocol, 'http');
  t.true(c.bytesIn > 0);
  const closedByClient = new Promise((r) => client.on('close', r));
  const del = await admin.del(`/connections/${c.id}`);
  t.is(del.status, 200);
  await closedByClient;
  const line = await proxy.logs.waitForClose((l: LogLine) => l['conn'] === c.id);
  t.is(line['reason'], 'admin');
  t.is((await admin.del(`/connections/${c.id}`)).status, 404, 'gone');
  await new Promise((r) => setTimeout(r, 50));
  t.is(proxy.logs.closes().filter((l) => l['conn'] === c.id).length, 1);
  const m = parsePromText((await admin.get('/metrics')).text);
  t.is(sumOf(m, 'twinport_connections_total', { reason: 'admin' }), 1);
});

test('drain keeps new connections (hash too) off a server while open ones finish; maint closes them after its deadline; both survive a reload', async (t) => {
  const a = await startHttpBackend('a', 300);
  const b = await startHttpBackend('b', 300);
  const yaml = (extra = '') => `
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: {}, to: web }] }
pools:
  web:
    balance: hash
    hash_key: source-ip
    servers: ["${a.address}", "${b.address}"${extra}]
admin: { bind: "127.0.0.1:0" }
`;
  const proxy = await startProxy(yaml());
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await Promise.all([a.close(), b.close()]);
  });
  // Every request from 127.0.0.1 hashes to one server: drain that one.
  const first = await fetchVia(proxy.port());
  const hashed = first.body === 'a\n' ? a : b;
  const other = hashed === a ? b : a;
  const inflight = fetchVia(proxy.port());
  await until(() => hashed.requests >= 2);
  const r = await admin.post(`/pools/web/servers/${encodeURIComponent(hashed.address)}/state`, { state: 'drain' });
  t.deepEqual(r.body, { pool: 'web', server: hashed.address, state: 'drain', weight: 1 });
  t.is((await inflight).body, `${hashed.tag}\n`, 'the open connection finished on the drained server');
  for (let i = 0; i < 4; i++) t.is((await fetchVia(proxy.port())).body, `${other.tag}\n`);
  t.is(hashed.requests, 2);
  // A reload with the same servers keeps the drain.
  await proxy.runtime.reload(parseConfigText(yaml(), 'test.yaml'));
  t.is(proxy.runtime.poolRuntimes.get('web')!.state.adminState(hashed === a ? 0 : 1), 'drain');
  t.is((await fetchVia(proxy.port())).body, `${other.tag}\n`);
  // maint with a deadline: an open connection to the server is closed with reason admin.
  await admin.post(`/pools/web/servers/${encodeURIComponent(hashed.address)}/state`, { state: 'ready' });
  const slowClient = await connectRaw(proxy.port());
  slowClient.on('error', () => {});
  slowClient.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((res) => setTimeout(res, 50));
  const maint = await admin.post(`/pools/web/servers/${encodeURIComponent(hashed.address)}/state`, { state: 'maint', deadline: '100ms' });
  t.is(maint.status, 200);
  const line = await proxy.logs.waitForClose((l) => l['reason'] === 'admin');
  t.is(line['server'], hashed.address);
  t.is(line['detail'], 'server in maint');
  const pools = (await admin.get('/pools')).body as { pools: { servers: { address: string; state: string }[] }[] };
  t.is(pools.pools[0]!.servers.find((s) => s.address === hashed.address)!.state, 'maint');
  // ready brings it back.
  await admin.post(`/pools/web/servers/${encodeURIComponent(hashed.address)}/state`, { state: 'ready' });
  t.is((await fetchVia(proxy.port())).body, `${hashed.tag}\n`);
  // A runtime weight survives a reload that keeps the config's weight.
  await admin.post(`/pools/web/servers/${encodeURIComponent(other.address)}/state`, { weight: 5 });
  await proxy.runtime.reload(parseConfigText(yaml(), 'test.yaml'));
  t.is(proxy.runtime.poolRuntimes.get('web')!.state.baseWeight(other === a ? 0 : 1), 5);
});

test('per-source limits: a client on 127.0.0.2 over its limit is refused (reason limit), one on 127.0.0.3 is not', async (t) => {
  if (!(await canListenOn('127.0.0.2')) || !(await canListenOn('127.0.0.3'))) {
    t.fail('127.0.0.2 and 127.0.0.3 are needed (Linux routes all of 127.0.0.0/8 to lo)');
    return;
  }
  const web = await startHttpBackend('web');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    limits: { per_source: { max_connections: 1 } }
    routes: [{ match: {}, to: web }]
  - name: rated
    bind: "127.0.0.6:0"
    limits: { per_source: { rate: 1, burst: 1 } }
    routes: [{ match: {}, to: web }]
pools:
  web: { servers: ["${web.address}"] }
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await web.close();
  });
  // 127.0.0.2 holds one connection open: its second is over per_source.max_connections.
  const held = await connectRaw(proxy.port('main'), '127.0.0.2');
  await until(() => proxy.runtime.listeners().find((l) => l.name === 'main')!.active === 1);
  const second = await connectRaw(proxy.port('main'), '127.0.0.2');
  await new Promise((r) => second.on('close', r));
  const refused = await proxy.logs.waitForClose((l) => l['reason'] === 'limit');
  t.regex(String(refused['client']), /^127\.0\.0\.2:/);
  t.is(refused['detail'], 'listener.per_source.max_connections 1');
  // 127.0.0.3 is its own source.
  t.is((await fetchVia(proxy.port('main'), { localAddress: '127.0.0.3' })).body, 'web\n');
  held.destroy();
  // The rate (1 a second, burst 1): of two connections from 127.0.0.2 at once, one is refused; 127.0.0.3
  // has its own bucket.
  const results = await Promise.allSettled([
    fetchVia(proxy.port('rated'), { localAddress: '127.0.0.2', host: '127.0.0.6' }),
    fetchVia(proxy.port('rated'), { localAddress: '127.0.0.2', host: '127.0.0.6' }),
  ]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  const rate = await proxy.logs.waitForClose((l) => l['detail'] === 'listener.per_source.rate 1/s');
  t.regex(String(rate['client']), /^127\.0\.0\.2:/);
  t.is((await fetchVia(proxy.port('rated'), { localAddress: '127.0.0.3', host: '127.0.0.6' })).body, 'web\n');
  t.is(web.requests, 3, 'a refused connection never reached a server');
  const m = parsePromText((await admin.get('/metrics')).text);
  t.is(sumOf(m, 'twinport_limit_rejections_total', { listener: 'main', limit: 'listener.per_source.max_connections' }), 1);
  t.is(sumOf(m, 'twinport_limit_rejections_total', { listener: 'rated', limit: 'listener.per_source.rate' }), 1);
});

test('GET /affinity/{pool} lists learned keys by prefix only, never a whole ticket key name or session ID', async (t) => {
  const secure = await startHttpsBackend('secure');
  const proxy = await startProxy(`
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: { protocol: tls }, to: secure }] }
pools:
  secure: { affinity: tls, servers: ["${secure.address}"] }
  plain: { servers: ["${secure.address}"] }
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await secure.close();
  });
  // A TLS 1.2 session: the server's ticket (RFC 5077) teaches the table its key name.
  const session = await new Promise<Buffer | undefined>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: proxy.port(), servername: 'a.example.com', rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => {
      s.write('GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
    });
    let got: Buffer | undefined;
    s.on('session', (b: Buffer) => (got = b));
    s.on('data', () => {});
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  t.truthy(session);
  await proxy.logs.waitForClose();
  const r = await admin.get('/affinity/secure');
  t.is(r.status, 200);
  const body = r.body as { entries: { kind: string; keyPrefix: string; server: string }[]; stats: { learned: number } };
  t.true(body.entries.length >= 1);
  for (const e of body.entries) {
    t.regex(e.keyPrefix, /^[0-9a-f]{1,8}…$/);
    t.is(e.server, secure.address);
  }
  t.true(body.stats.learned >= 1);
  t.is((await admin.get('/affinity/plain')).status, 404);
});

test('GET /migration is the report of the running record, and twinport_migration_connections_total counts what was recorded', async (t) => {
  const web = await startHttpBackend('web');
  const store = join(mkdtempSync(join(dir, 'store-')), 'migration.db');
  const proxy = await startProxy(`
listeners:
  - name: keystone
    bind: "127.0.0.1:0"
    migration: { phase: observe }
    routes: [{ match: { protocol: http }, to: web }]
pools:
  web: { servers: ["${web.address}"] }
migration_store: ${JSON.stringify(store)}
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy);
  t.teardown(async () => {
    await admin.close();
    await proxy.stop();
    await web.close();
  });
  for (let i = 0; i < 3; i++) {
    t.is((await fetchVia(proxy.port(), { headers: { host: 'keystone.internal', 'user-agent': 'python-requests/2.31' } })).body, 'web\n');
  }
  await until(() => proxy.logs.closes().length >= 3);
  const r = await admin.get('/migration?since=1h&quietFor=1h');
  t.is(r.status, 200, r.text);
  const report = r.body as { names: { name: string | null; verdict: string; plaintext: { connections: number; clients: number } }[] };
  const name = report.names.find((n) => n.name === 'keystone.internal');
  t.truthy(name, JSON.stringify(report));
  t.is(name!.plaintext.connections, 3);
  t.is(name!.verdict, 'not-safe');
  const m = parsePromText((await admin.get('/metrics')).text);
  t.is(sumOf(m, 'twinport_migration_connections_total', { listener: 'keystone', name: 'keystone.internal', protocol: 'http', outcome: 'spliced' }), 3);
  t.is((await admin.get('/migration?since=forever')).status, 400);
});
