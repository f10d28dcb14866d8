// --workers N: a reload the workers cannot apply in place (io_engine, the listener set) and
// `twinport reload --restart-workers` replace the workers one at a time under real load: no connection
// fails, and the log shows at least N-1 workers accepting at every step. A binary upgrade of the whole
// cluster hands the primary's sockets to a new primary.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTwinport, spawnTwinport, type TwinportProcess } from '../helpers/cli-process.js';
import { startHttpBackend } from '../helpers/http-backend.js';
import { exitedPid, startLoad, startTlsBackend } from '../helpers/load.js';
import { freePort, type LogLine } from '../helpers/proxy-harness.js';

function configText(ports: number[], http: string, tlsServer: string, engine: 'libuv' | 'streams'): string {
  const listeners = ports
    .map((p, i) => `  - name: edge${i}\n    bind: "127.0.0.1:${p}"\n    routes:\n      - { match: { protocol: tls }, to: secure }\n      - { match: { protocol: http }, to: web }\n`)
    .join('');
  return `io_engine: ${engine}\nlisteners:\n${listeners}pools:\n  web:\n    servers: ["${http}"]\n  secure:\n    servers: ["${tlsServer}"]\nshutdown_timeout: 10s\n`;
}

async function cluster(workers: number, text: string): Promise<{ p: TwinportProcess; file: string; pidFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'twp-roll-'));
  const file = join(dir, 'twinport.yaml');
  const pidFile = join(dir, 'twinport.pid');
  writeFileSync(file, text);
  const p = spawnTwinport(['run', '-c', file, '--workers', String(workers), '--pid-file', pidFile]);
  await p.waitFor(() => p.lines.filter((l) => l.msg === 'worker ready').length >= workers);
  return { p, file, pidFile };
}

/** The accepting-worker counts the primary logged, from the first time all N were up. */
function acceptingCounts(lines: LogLine[], n: number): number[] {
  const counts = lines.filter((l) => l.msg === 'worker ready' || l.msg === 'worker retiring').map((l) => l['accepting'] as number);
  return counts.slice(counts.indexOf(n));
}

function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
    s.on('close', () => resolve(got));
  });
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('--workers 3: an io_engine change rolls the workers one at a time under load: 0 failed, never fewer than 2 accepting', async (t) => {
  const web = await startHttpBackend('web-backend');
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const { p, file, pidFile } = await cluster(3, configText([port], web.address, secure.address, 'libuv'));
  try {
    const load = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 8, maxAttempts: 30_000, maxMs: 90_000 });
    while (load.result.attempted < 300) await wait(20);
    const oldWorkers = p.lines.filter((l) => l.msg === 'worker ready').map((l) => l['worker'] as number);
    writeFileSync(file, configText([port], web.address, secure.address, 'streams'));
    const r = await runTwinport(['reload', '--pid-file', pidFile]);
    t.is(r.code, 0, r.stdout);
    t.regex(r.stdout, /reloaded: workers replaced: io_engine libuv → streams/);
    const before = load.result.attempted;
    while (load.result.attempted < before + 300) await wait(20);
    const result = await load.stop();
    t.log(`load: ${result.attempted} connections (${result.http} http, ${result.tls} tls ok), ${result.failures.length} failed ${JSON.stringify(result.failures.slice(0, 5))}`);
    t.deepEqual(result.failures, []);

    const counts = acceptingCounts(p.lines, 3);
    t.log(`accepting workers, step by step: ${counts.join(' ')}`);
    t.true(Math.min(...counts) >= 2, 'never fewer than N-1 accepting');
    t.is(p.lines.filter((l) => l.msg === 'worker retiring').length, 3);
    for (const pid of oldWorkers) {
      await p.waitFor((l) => l.msg === 'worker retired' && l['worker'] === pid);
      t.true(exitedPid(pid));
    }
    const streams = p.lines.filter((l) => l.msg === 'listening' && l['engine'] === 'streams').map((l) => l['pid']);
    t.is(new Set(streams).size, 3, 'three new workers on the new engine');
    t.true(p.lines.filter((l) => l.msg === 'close').slice(-5).every((l) => streams.includes(l['pid'])));
  } finally {
    p.kill('SIGKILL');
    await web.close();
    await secure.close();
  }
});

test('--workers 2: reload --restart-workers replaces unchanged workers; a new listener rolls them too and serves, the old port stays', async (t) => {
  const web = await startHttpBackend('web-backend');
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const added = await freePort();
  const { p, file, pidFile } = await cluster(2, configText([port], web.address, secure.address, 'libuv'));
  try {
    const load = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 6, maxAttempts: 30_000, maxMs: 90_000 });
    const first = p.lines.filter((l) => l.msg === 'worker ready').map((l) => l['worker'] as number);
    const r1 = await runTwinport(['reload', '--restart-workers', '--pid-file', pidFile]);
    t.is(r1.code, 0, r1.stdout);
    t.regex(r1.stdout, /workers replaced: restart requested/);
    const second = p.lines.filter((l) => l.msg === 'worker ready').map((l) => l['worker'] as number).slice(2);
    t.is(second.length, 2);
    t.false(second.some((w) => first.includes(w)));

    writeFileSync(file, configText([port, added], web.address, secure.address, 'libuv'));
    const r2 = await runTwinport(['reload', '--pid-file', pidFile]);
    t.is(r2.code, 0, r2.stdout);
    t.regex(r2.stdout, /workers replaced: listeners/);
    t.is(await ask(added).then((a) => a.includes('web-backend')), true, 'the new listener serves');
    const before = load.result.attempted;
    while (load.result.attempted < before + 200) await wait(20);
    const result = await load.stop();
    t.log(`load: ${result.attempted} connections, ${result.failures.length} failed ${JSON.stringify(result.failures.slice(0, 5))}`);
    t.deepEqual(result.failures, []);
    t.true(Math.min(...acceptingCounts(p.lines, 2)) >= 1);

    // A config error refuses the restart and keeps the workers.
    writeFileSync(file, 'listeners: [');
    const r3 = await runTwinport(['reload', '--restart-workers', '--pid-file', pidFile]);
    t.is(r3.code, 1);
    t.regex(r3.stdout, /reload failed: .*twinport\.yaml:1:/);
    t.true((await ask(port)).includes('web-backend'));
  } finally {
    p.kill('SIGKILL');
    await web.close();
    await secure.close();
  }
});

test('--workers 2: a binary upgrade of the cluster under load: 0 failed, the new primary serves, the old one and its workers are gone', async (t) => {
  const web = await startHttpBackend('web-backend');
  const secure = await startTlsBackend('tls-backend');
  const port = await freePort();
  const { p, pidFile } = await cluster(2, configText([port], web.address, secure.address, 'libuv'));
  const oldPids = [p.child.pid!, ...p.lines.filter((l) => l.msg === 'worker ready').map((l) => l['worker'] as number)];
  let newPrimary: number | undefined;
  try {
    const load = startLoad({ port, expect: { http: 'web-backend', tls: 'tls-backend' }, concurrency: 8, maxAttempts: 30_000, maxMs: 90_000 });
    while (load.result.attempted < 300) await wait(20);
    const r = await runTwinport(['upgrade', '--pid-file', pidFile]);
    t.is(r.code, 0, r.stdout);
    const m = /upgraded: (\d+) → (\d+) \(new process ready after (\d+) ms/.exec(r.stdout);
    t.truthy(m);
    newPrimary = Number(m![2]);
    t.log(`SIGUSR2 → new cluster ready: ${m![3]} ms`);
    const before = load.result.attempted;
    while (load.result.attempted < before + 500) await wait(20);
    const result = await load.stop();
    t.log(`load: ${result.attempted} connections (${result.http} http, ${result.tls} tls ok), ${result.failures.length} failed ${JSON.stringify(result.failures.slice(0, 5))}`);
    t.deepEqual(result.failures, []);
    await p.exited;
    for (const pid of oldPids) {
      await p.waitFor(() => exitedPid(pid));
      t.true(exitedPid(pid));
    }
    const stopped = p.lines.find((l) => l.msg === 'all workers stopped' && l['pid'] === oldPids[0]);
    t.log(`old cluster drain: ${String(stopped?.['drainMs'])} ms`);
    const newWorkers = p.lines.filter((l) => l.msg === 'worker ready' && l['pid'] === newPrimary).map((l) => l['worker']);
    t.is(newWorkers.length, 2);
    t.true(p.lines.filter((l) => l.msg === 'close').slice(-5).every((l) => newWorkers.includes(l['pid'])));
  } finally {
    p.kill('SIGKILL');
    if (newPrimary !== undefined && !exitedPid(newPrimary)) {
      process.kill(newPrimary, 'SIGTERM');
      await p.waitFor((l) => l.msg === 'all workers stopped' && l['pid'] === newPrimary);
    }
    await web.close();
    await secure.close();
  }
});
