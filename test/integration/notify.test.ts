// Type=notify: READY=1 once every listener accepts, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1
// on SIGTERM, STATUS= with connection counts, sent through the real systemd-notify to a real unix
// datagram socket (helpers/notify-socket.ts) that stands in for the service manager.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTwinport } from '../helpers/cli-process.js';
import { startNotifySocket } from '../helpers/notify-socket.js';
import { freePort, startBackend } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const NEEDS = { 'systemd-notify': 'systemd', python3: 'python3' };

function configFor(ports: number[], backend: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'twp-notify-')), 'twinport.yaml');
  const listeners = ports.map((p, i) => `  - name: l${i}\n    bind: "127.0.0.1:${p}"\n    routes: [{ match: { protocol: other }, to: app }]\n`).join('');
  writeFileSync(file, `listeners:\n${listeners}pools:\n  app:\n    servers: ["${backend}"]\nshutdown_timeout: 5s\n`);
  return file;
}

/** A spliced connection held open: its bytes reached the backend, which answers nothing until it ends. */
async function holdOpen(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write('hello\n');
  return s;
}

function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString()));
    s.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
    s.on('close', () => resolve(got));
    s.end('ping\n');
  });
}

testWithTools(NEEDS, 'Type=notify, one process: READY=1 after both listeners accept, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM, STATUS with counts', async (t) => {
  const backend = await startBackend('notified');
  const notify = await startNotifySocket();
  const ports = [await freePort(), await freePort()];
  const p = spawnTwinport(['run', '-c', configFor(ports, backend.address)], { env: { ...process.env, NOTIFY_SOCKET: notify.path } });
  try {
    const ready = await notify.waitFor('READY=1');
    t.is(p.lines.filter((l) => l.msg === 'listening').length, 2, 'READY=1 only after both listeners listen');
    t.deepEqual(await Promise.all(ports.map(ask)), ['notified\n', 'notified\n']);
    t.true(notify.messages[ready]!.includes('STATUS=serving: 0 connections (l0 0, l1 0)'));
    t.true(notify.messages[ready]!.includes(`MAINPID=${p.child.pid}`));

    const held = await holdOpen(ports[0]!);
    await backend.connection(3);
    p.kill('SIGHUP');
    const reloading = await notify.waitFor('RELOADING=1', ready + 1);
    t.regex(notify.messages[reloading]!.find((f) => f.startsWith('MONOTONIC_USEC='))!, /^MONOTONIC_USEC=\d+$/);
    const reloaded = await notify.waitFor('READY=1', reloading + 1);
    t.true(notify.messages[reloaded]!.includes('STATUS=reloaded: 1 connections (l0 1, l1 0)'));

    p.kill('SIGTERM');
    const stopping = await notify.waitFor('STOPPING=1', reloaded + 1);
    t.true(notify.messages[stopping]!.includes('STATUS=draining: 1 connections (l0 1, l1 0)'));
    held.end();
    t.deepEqual(await p.exited, { code: 0, signal: null });
    const order = notify.messages.flatMap((m) => m.filter((f) => /^(READY|RELOADING|STOPPING)=/.test(f)));
    t.deepEqual(order, ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
  } finally {
    p.kill('SIGKILL');
    notify.close();
    await backend.close();
  }
});

testWithTools(NEEDS, 'Type=notify, --workers 2: the primary says READY=1 once both workers accept, and speaks for them around SIGHUP and SIGTERM', async (t) => {
  const backend = await startBackend('clustered');
  const notify = await startNotifySocket();
  const port = await freePort();
  const p = spawnTwinport(['run', '-c', configFor([port], backend.address), '--workers', '2'], { env: { ...process.env, NOTIFY_SOCKET: notify.path } });
  try {
    const ready = await notify.waitFor('READY=1');
    t.true(notify.messages[ready]!.includes('STATUS=serving: 2 of 2 workers accepting, 0 connections'));
    t.true(notify.messages[ready]!.includes(`MAINPID=${p.child.pid}`), 'sent for the primary');
    t.is(await ask(port), 'clustered\n');
    p.kill('SIGHUP');
    const reloading = await notify.waitFor('RELOADING=1', ready + 1);
    const reloaded = await notify.waitFor('READY=1', reloading + 1);
    t.true(notify.messages[reloaded]!.some((f) => f.startsWith('STATUS=reloaded: 2 of 2 workers accepting')));
    t.is(p.lines.filter((l) => l.msg === 'reloaded').length, 2, 'READY=1 after both workers reloaded');
    p.kill('SIGTERM');
    await notify.waitFor('STOPPING=1', reloaded + 1);
    t.deepEqual(await p.exited, { code: 0, signal: null });
    const order = notify.messages.flatMap((m) => m.filter((f) => /^(READY|RELOADING|STOPPING)=/.test(f)));
    t.deepEqual(order, ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
  } finally {
    p.kill('SIGKILL');
    notify.close();
    await backend.close();
  }
});
