// Binary upgrade (SIGUSR2 / `twinport upgrade`) under real load: new HTTP and TLS connections all the
// time and 20 slow downloads in flight while twinport replaces itself 5 times in a row; then an upgrade
// whose new process cannot start (a broken config, a broken binary) while the old one keeps serving.
import test from 'ava';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTwinport, spawnTwinport, type TwinportProcess } from '../helpers/cli-process.js';
import { startHttpBackend } from '../helpers/http-backend.js';
import { exitedPid, slowDownload, startLoad, startTlsBackend } from '../helpers/load.js';
import { freePort } from '../helpers/proxy-harness.js';

const BIG = 4 * 1024 * 1024;

function configText(port: number, http: string, tlsServer: string): string {
  return `listeners:
  - name: edge
    bind: "127.0.0.1:${port}"
    routes:
      - { match: { protocol: tls }, to: secure }
      - { match: { protocol: http }, to: web }
pools:
  web:
    servers: ["${http}"]
  secure:
    servers: ["${tlsServer}"]
shutdown_timeout: 30s
`;
}

function setup(text: string): { dir: string; file: string; pidFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'twp-upgrade-'));
  const file = join(dir, 'twinport.yaml');
  writeFileSync(file, text);
  return { dir, file, pidFile: join(dir, 'twinport.pid') };
}

/** Every process of the chain: the first is our child, later ones are detached from it. */
function killAll(p: TwinportProcess, pids: Iterable<number>): void {
  p.kill('SIGKILL');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

test('upgrade 5 times under load: no connection refused or reset, every slow download complete, old pids gone, the last one serves', async (t) => {
  const web = await startHttpBackend('web-backend', BIG);
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const { file, pidFile } = setup(configText(port, web.address, secure.address));
  const p = spawnTwinport(['run', '-c', file, '--pid-file', pidFile]);
  const pids = new Set<number>([p.child.pid!]);
  try {
    await p.waitFor((l) => l.msg === 'ready');
    const downloads = Array.from({ length: 20 }, () => slowDownload(port, BIG, 80));
    const load = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 12, maxAttempts: 40_000, maxMs: 90_000 });
    const readyMs: number[] = [];
    let firstUpgradeDone = Infinity;
    let serving = p.child.pid!;
    for (let i = 0; i < 5; i++) {
      // Some load between upgrades, so each new process serves before it is replaced in turn.
      const before = load.result.attempted;
      while (i > 0 && load.result.attempted < before + 300) await new Promise((r) => setTimeout(r, 20));
      const r = await runTwinport(['upgrade', '--pid-file', pidFile]);
      t.is(r.code, 0, r.stdout + r.stderr);
      const m = /upgraded: (\d+) → (\d+) \(new process ready after (\d+) ms/.exec(r.stdout);
      t.truthy(m, r.stdout);
      t.is(Number(m![1]), serving);
      serving = Number(m![2]);
      pids.add(serving);
      readyMs.push(Number(m![3]));
      if (i === 0) firstUpgradeDone = performance.now();
    }
    while (load.result.attempted < 5000) await new Promise((r) => setTimeout(r, 20));
    const result = await load.stop();
    const got = await Promise.all(downloads);

    t.log(`load: ${result.attempted} connections (${result.http} http, ${result.tls} tls ok), ${result.failures.length} failed ${JSON.stringify(result.failures.slice(0, 5))}`);
    t.log(`SIGUSR2 → new process ready: ${readyMs.join(', ')} ms`);
    t.true(result.attempted >= 5000);
    t.deepEqual(result.failures, []);
    t.is(result.ok, result.attempted);
    t.deepEqual(got.filter((d) => !d.intact || d.failure !== undefined), [], 'every download byte-complete');
    t.true(got.every((d) => d.endedAt > firstUpgradeDone), 'the downloads were in flight across at least the first upgrade');

    // Each old process drained and exited; the drains' durations are in their 'stopped' lines.
    const old = [...pids].filter((pid) => pid !== serving);
    const stopped = await Promise.all(old.map((pid) => p.waitFor((l) => l.msg === 'stopped' && l['pid'] === pid)));
    t.log(`drain: ${stopped.map((l) => l['drainMs']).join(', ')} ms`);
    for (const pid of old) {
      await p.waitFor(() => exitedPid(pid));
      t.true(exitedPid(pid), `old pid ${pid} is gone`);
    }
    t.true(p.lines.some((l) => l.msg === 'ready' && l['pid'] === serving && typeof l['version'] === 'string'), 'the new process says which version serves');
    const lastClose = p.lines.filter((l) => l.msg === 'close').at(-1);
    t.is(lastClose?.['pid'], serving);
    t.false(exitedPid(serving));
    process.kill(serving, 'SIGTERM');
    await p.waitFor((l) => l.msg === 'stopped' && l['pid'] === serving);
  } finally {
    killAll(p, pids);
    await web.close();
    await secure.close();
  }
});

test('a failing upgrade (broken config, then a broken binary) keeps the old process serving, logs why, fails no connection', async (t) => {
  const web = await startHttpBackend('web-backend');
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const { dir, file, pidFile } = setup(configText(port, web.address, secure.address));
  const broken = join(dir, 'broken-twinport');
  writeFileSync(broken, '#!/bin/sh\necho "broken build: cannot start" >&2\nexit 3\n');
  chmodSync(broken, 0o755);
  const p = spawnTwinport(['run', '-c', file, '--pid-file', pidFile]);
  const pids = new Set<number>([p.child.pid!]);
  try {
    await p.waitFor((l) => l.msg === 'ready');
    const load = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 8, maxAttempts: 20_000, maxMs: 60_000 });

    writeFileSync(file, configText(port, web.address, secure.address).replace('to: web', 'to: nowhere'));
    const r1 = await runTwinport(['upgrade', '--pid-file', pidFile]);
    t.is(r1.code, 1);
    t.regex(r1.stdout, new RegExp(`upgrade failed, ${p.child.pid} keeps serving: the new process exited \\(code 1\\) before it was ready: .*listeners\\[0\\]\\.routes\\[1\\]\\.to: unknown pool "nowhere"`));
    const logged = await p.waitFor((l) => l.msg === 'upgrade failed: this process keeps serving');
    t.is(logged['pid'], p.child.pid);
    let before = load.result.ok;
    while (load.result.ok < before + 200) await new Promise((r) => setTimeout(r, 20));
    const first = await load.stop();
    t.log(`broken config: ${first.attempted} connections, ${first.failures.length} failed`);
    t.deepEqual(first.failures, []);
    t.is(p.child.exitCode, null, 'the old process still runs');

    // The binary: TWINPORT_BIN is what the launcher exports; here the running process's environment
    // names a broken build, as if a bad package had been installed.
    writeFileSync(file, configText(port, web.address, secure.address));
    p.kill('SIGTERM');
    await p.exited;
    const q = spawnTwinport(['run', '-c', file, '--pid-file', pidFile], { env: { ...process.env, TWINPORT_BIN: broken } });
    pids.add(q.child.pid!);
    await q.waitFor((l) => l.msg === 'ready');
    const load2 = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 8, maxAttempts: 20_000, maxMs: 60_000 });
    const r2 = await runTwinport(['upgrade', '--pid-file', pidFile]);
    t.is(r2.code, 1);
    t.regex(r2.stdout, /the new process exited \(code 3\) before it was ready/);
    t.regex(q.stderr(), /broken build: cannot start/);
    before = load2.result.ok;
    while (load2.result.ok < before + 200) await new Promise((r) => setTimeout(r, 20));
    const second = await load2.stop();
    t.log(`broken binary: ${second.attempted} connections, ${second.failures.length} failed`);
    t.deepEqual(second.failures, []);
    t.true(q.lines.some((l) => l.msg === 'close' && l['pid'] === q.child.pid), 'the old process still serves');
    q.kill('SIGTERM');
    t.deepEqual(await q.exited, { code: 0, signal: null });
  } finally {
    killAll(p, pids);
    await web.close();
    await secure.close();
  }
});

test('with an admin listener: the upgrade hands the admin address over too, and /status names the new pid and its version', async (t) => {
  const web = await startHttpBackend('web-backend');
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const adminPort = await freePort();
  const { file, pidFile } = setup(`${configText(port, web.address, secure.address)}admin:\n  bind: "127.0.0.1:${adminPort}"\n`);
  const p = spawnTwinport(['run', '-c', file, '--pid-file', pidFile]);
  const pids = new Set<number>([p.child.pid!]);
  const status = async (): Promise<{ pid?: number; version?: string }> => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/status`);
    return (await r.json()) as { pid?: number; version?: string };
  };
  try {
    await p.waitFor((l) => l.msg === 'ready');
    t.is((await status()).pid, p.child.pid);
    const r = await runTwinport(['upgrade', '--pid-file', pidFile]);
    t.is(r.code, 0, r.stdout);
    const newPid = Number(/→ (\d+)/.exec(r.stdout)![1]);
    pids.add(newPid);
    const s = await status();
    t.is(s.pid, newPid, '/status answers from the new process');
    t.is(typeof s.version, 'string');
    process.kill(newPid, 'SIGTERM');
    await p.waitFor((l) => l.msg === 'stopped' && l['pid'] === newPid);
  } finally {
    killAll(p, pids);
    await web.close();
    await secure.close();
  }
});
