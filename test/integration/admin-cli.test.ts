// The admin listener of the real `twinport` process: drain under load through the CLI verbs, and one
// scrape summed over `--workers 2`, read with curl as Prometheus would.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePromText, sumOf } from '../../src/admin/prom-text.js';
import { fetchVia, startHttpBackend, type WebBackend } from '../helpers/admin-harness.js';
import { MAIN, runTwinport, spawnTwinport } from '../helpers/cli-process.js';
import { freePort } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

function configFor(port: number, adminPort: number, servers: readonly WebBackend[], extra = ''): string {
  return `listeners:
  - name: main
    bind: "127.0.0.1:${port}"
    routes: [{ match: { protocol: http }, to: web }]
pools:
  web:
    servers: [${servers.map((s) => `"${s.address}"`).join(', ')}]
admin:
  bind: "127.0.0.1:${adminPort}"
${extra}`;
}

function curl(args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const c = spawn('curl', ['-sS', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code, stdout: out }));
  });
}

test('drain under load through the CLI: no connection started after the drain reaches the server, open ones finish, zero failures; ready brings it back', async (t) => {
  // Each answer takes 100 ms, so connections to b are open when the drain lands.
  const servers = await Promise.all(['a', 'b', 'c'].map((tag) => startHttpBackend(tag, 100)));
  const dir = mkdtempSync(join(tmpdir(), 'twinport-admin-cli-'));
  const file = join(dir, 'twinport.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(file, configFor(port, adminPort, servers));
  const p = spawnTwinport(['--config', file]);
  t.teardown(async () => {
    p.kill('SIGKILL');
    await Promise.all(servers.map((s) => s.close()));
  });
  await p.waitFor((l) => l.msg === 'admin listening');
  const target = servers[1]!;

  let failures = 0;
  let stop = false;
  let drainedAt = Infinity;
  let readyAt = Infinity;
  let readyAskedAt = Infinity;
  const afterDrain: string[] = [];
  const afterReady: string[] = [];
  const loop = async (): Promise<void> => {
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < 400 && !stop && Date.now() < deadline; i++) {
      const started = Date.now();
      try {
        const r = await fetchVia(port);
        if (r.status !== 200) failures++;
        // Accepted after the drain was applied and answered before the ready was asked for.
        if (started > drainedAt && Date.now() < readyAskedAt) afterDrain.push(r.body);
        if (started > readyAt) afterReady.push(r.body);
      } catch {
        failures++;
      }
    }
  };
  const loops = [loop(), loop(), loop()];
  // Let traffic reach all three, then drain b while connections to it are open.
  while (target.requests < 3) await new Promise((r) => setTimeout(r, 10));
  const drain = await runTwinport(['drain', 'web', target.address, '--admin', `http://127.0.0.1:${adminPort}`]);
  t.is(drain.code, 0, drain.stderr);
  t.is(drain.stdout.trim(), `web ${target.address}: drain (weight 1)`);
  drainedAt = Date.now();
  const pools = await runTwinport(['pools', '--config', file]);
  t.regex(pools.stdout, new RegExp(`web\\s+${target.address.replace(/\./g, '\\.')}\\s+drain`));
  while (afterDrain.length < 30) await new Promise((r) => setTimeout(r, 10));
  readyAskedAt = Date.now();
  const ready = await runTwinport(['ready', 'web', target.address, '--config', file]);
  t.is(ready.code, 0, ready.stderr);
  readyAt = Date.now();
  while (afterReady.length < 30) await new Promise((r) => setTimeout(r, 10));
  stop = true;
  await Promise.all(loops);

  t.is(failures, 0);
  t.false(afterDrain.includes('b\n'), 'no connection started after the drain reached b');
  t.true(afterDrain.includes('a\n') && afterDrain.includes('c\n'));
  t.true(afterReady.includes('b\n'), 'ready brought b back');
  // Every connection ended with one close line, none of them a failure.
  const closes = p.lines.filter((l) => l.msg === 'close');
  t.true(closes.every((l) => l['reason'] === 'done'), JSON.stringify(closes.filter((l) => l['reason'] !== 'done').slice(0, 3)));
});

test('the CLI verbs: errors name the pool or server and exit 1; a token from TWINPORT_ADMIN_TOKEN or --token-file', async (t) => {
  const web = await startHttpBackend('web');
  const dir = mkdtempSync(join(tmpdir(), 'twinport-admin-cli-'));
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, 'tok-123\n');
  const file = join(dir, 'twinport.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(file, configFor(port, adminPort, [web], `  token_file: admin.token\n`));
  const p = spawnTwinport(['--config', file]);
  t.teardown(async () => {
    p.kill('SIGKILL');
    await web.close();
  });
  await p.waitFor((l) => l.msg === 'admin listening');
  const url = `http://127.0.0.1:${adminPort}`;
  const refused = await runTwinport(['drain', 'web', web.address, '--admin', url]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /401 TWP_ADMIN_UNAUTHORIZED/);
  const noPool = await runTwinport(['drain', 'nope', web.address, '--admin', url, '--token-file', tokenFile]);
  t.is(noPool.code, 1);
  t.regex(noPool.stderr, /404 TWP_ADMIN_UNKNOWN_POOL: no pool "nope"/);
  // The config names the admin address and the token file (relative to the config's directory).
  const status = await runTwinport(['status', '--config', file, '--json']);
  t.is(status.code, 0, status.stderr);
  t.is((JSON.parse(status.stdout) as { listeners: { name: string }[] }).listeners[0]!.name, 'main');
  const env = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const c = spawn(process.execPath, [MAIN, 'pools', '--admin', url, '--json'], { env: { ...process.env, TWINPORT_ADMIN_TOKEN: 'tok-123' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code, stdout: out }));
  });
  t.is(env.code, 0);
  t.is((JSON.parse(env.stdout) as { pools: { servers: { address: string }[] }[] }).pools[0]!.servers[0]!.address, web.address);
  const unreachable = await runTwinport(['status', '--admin', `http://127.0.0.1:${await freePort()}`]);
  t.is(unreachable.code, 1);
  t.regex(unreachable.stderr, /cannot reach the admin listener/);
});

testWithTools({ curl: 'curl' }, '--workers 2: one scrape sums both workers and equals the close lines; drain and /connections reach every worker', async (t) => {
  const servers = await Promise.all(['a', 'b'].map((tag) => startHttpBackend(tag)));
  const dir = mkdtempSync(join(tmpdir(), 'twinport-admin-workers-'));
  const file = join(dir, 'twinport.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(file, configFor(port, adminPort, servers));
  const p = spawnTwinport(['--config', file, '--workers', '2']);
  t.teardown(async () => {
    p.kill('SIGKILL');
    await Promise.all(servers.map((s) => s.close()));
  });
  await p.waitFor(() => p.lines.filter((l) => l.msg === 'listening').length >= 2);
  const N = 24;
  for (let i = 0; i < N; i++) t.is((await fetchVia(port)).status, 200);
  while (p.lines.filter((l) => l.msg === 'close').length < N) await new Promise((r) => setTimeout(r, 10));
  const workersServing = new Set(p.lines.filter((l) => l.msg === 'close').map((l) => l['pid']));
  t.is(workersServing.size, 2, 'both workers served connections');

  const scrape = await curl([`http://127.0.0.1:${adminPort}/metrics`]);
  t.is(scrape.code, 0);
  const m = parsePromText(scrape.stdout);
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'main', protocol: 'http', reason: 'done' }), N);
  t.is(sumOf(m, 'twinport_connections_total'), p.lines.filter((l) => l.msg === 'close').length);
  t.is(sumOf(m, 'twinport_connections_accepted_total', { listener: 'main' }), N);
  t.is(sumOf(m, 'twinport_server_up', { pool: 'web', server: servers[0]!.address }), 1, 'server_up is the minimum over workers, not their sum');
  const bytesIn = p.lines.filter((l) => l.msg === 'close').reduce((n, l) => n + (l['bytesIn'] as number), 0);
  t.is(sumOf(m, 'twinport_bytes_total', { pool: 'web', direction: 'in' }), bytesIn);

  const status = JSON.parse((await curl([`http://127.0.0.1:${adminPort}/status`])).stdout) as { workers: number; listeners: { accepted: number }[] };
  t.is(status.workers, 2);
  t.is(status.listeners[0]!.accepted, N);

  const drain = await runTwinport(['drain', 'web', servers[0]!.address, '--config', file]);
  t.is(drain.code, 0, drain.stderr);
  const before = servers[0]!.requests;
  for (let i = 0; i < 8; i++) t.is((await fetchVia(port)).body, 'b\n');
  t.is(servers[0]!.requests, before, 'neither worker sent a new connection to the drained server');
  const pools = JSON.parse((await curl([`http://127.0.0.1:${adminPort}/pools`])).stdout) as { pools: { servers: { state: string; totalConnections: number }[] }[] };
  t.is(pools.pools[0]!.servers[0]!.state, 'drain');
  t.is(pools.pools[0]!.servers[0]!.totalConnections + pools.pools[0]!.servers[1]!.totalConnections, N + 8);
});
