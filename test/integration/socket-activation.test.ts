// systemd socket activation (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES) with the real systemd-socket-activate:
// it binds the sockets, passes them from fd 3 and execs twinport (same pid) when the first client knocks.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTwinport, type TwinportProcess } from '../helpers/cli-process.js';
import { startHttpBackend } from '../helpers/http-backend.js';
import { freePort } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const NEEDS = { 'systemd-socket-activate': 'systemd', curl: 'curl' };

function curl(url: string): Promise<string> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', url], (err, stdout, stderr) => resolve(err === null ? stdout : `error: ${stderr}`));
  });
}

function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'twp-sa-')), 'twinport.yaml');
  writeFileSync(file, yaml);
  return file;
}

const twoListeners = (webBind: string, apiBind: string, backend: string): string =>
  `listeners:
  - name: web
    bind: "${webBind}"
    routes: [{ match: { protocol: http }, to: app }]
  - name: api
    bind: "${apiBind}"
    routes: [{ match: { protocol: http }, to: app }]
pools:
  app:
    servers: ["${backend}"]
`;

const LAUNCHER = fileURLToPath(new URL('../../../bin/twinport', import.meta.url));

/** systemd-socket-activate holding two sockets: fd 3 named "web", fd 4 named "api". */
async function activate(webPort: number, apiPort: number, args: string[], viaLauncher = false): Promise<TwinportProcess> {
  const p = spawnTwinport(args, {
    prefix: ['systemd-socket-activate', '-l', `127.0.0.1:${webPort}`, '-l', `127.0.0.1:${apiPort}`, '--fdname=web:api'],
    ...(viaLauncher && { command: [LAUNCHER] }),
  });
  await p.waitForStderr(/Listening on 127\.0\.0\.1:\d+ as 4/);
  return p;
}

for (const [workers, viaLauncher] of [[undefined, false], [2, false], [undefined, true]] as const) {
  // Through bin/twinport, which stays node's parent while it serves: LISTEN_PID names the launcher, and
  // the launcher passes it on as node's own pid.
  const label = viaLauncher ? 'through bin/twinport' : workers === undefined ? 'one process' : `--workers ${workers} (the primary holds the sockets)`;
  testWithTools(NEEDS, `socket activation, ${label}: fd:NAME and an address bind take the inherited sockets; curl reaches the backend through both`, async (t) => {
    const backend = await startHttpBackend('activated');
    const webPort = await freePort();
    const apiPort = await freePort();
    // "web" by name, "api" by the address systemd bound.
    const file = writeConfig(twoListeners('fd:web', `127.0.0.1:${apiPort}`, backend.address));
    const p = await activate(webPort, apiPort, ['run', '-c', file, ...(workers === undefined ? [] : ['--workers', String(workers)])], viaLauncher);
    try {
      // The first connection is what makes systemd-socket-activate exec twinport: it waits in the backlog.
      t.is(await curl(`http://127.0.0.1:${webPort}/one`), 'activated\n');
      t.is(await curl(`http://127.0.0.1:${apiPort}/two`), 'activated\n');
      t.deepEqual(backend.hosts.slice(0, 2), [`127.0.0.1:${webPort}`, `127.0.0.1:${apiPort}`]);
      const listening = p.lines.filter((l) => l.msg === 'listening');
      t.true(listening.some((l) => l['listener'] === 'web' && l['fd'] === 3 && l['fdName'] === 'web'));
      t.true(listening.some((l) => l['listener'] === 'api' && l['fd'] === 4 && l['fdName'] === 'api' && l['address'] === `127.0.0.1:${apiPort}`));
      const closes = await p.waitFor(() => p.lines.filter((l) => l.msg === 'close').length >= 2).then(() => p.lines.filter((l) => l.msg === 'close'));
      t.deepEqual(closes.map((l) => [l['listener'], l['reason']]), [['web', 'done'], ['api', 'done']]);
      if (workers !== undefined) {
        // The first curl needed one worker; round-robin over both needs both listening.
        await p.waitFor(() => p.lines.filter((l) => l.msg === 'listening' && l['listener'] === 'web').length >= workers);
        for (let i = 0; i < 6; i++) t.is(await curl(`http://127.0.0.1:${webPort}/`), 'activated\n');
        const pids = new Set(p.lines.filter((l) => l.msg === 'close').map((l) => l['pid']));
        t.is(pids.size, 2, 'both workers serve the inherited socket');
      }
      p.kill('SIGTERM');
      t.deepEqual(await p.exited, { code: 0, signal: null });
    } finally {
      p.kill('SIGKILL');
      await backend.close();
    }
  });
}

testWithTools(NEEDS, 'socket activation: a bind naming a socket that was not passed, and a socket nobody binds, fail the start naming both', async (t) => {
  const backend = await startHttpBackend('unused');
  const webPort = await freePort();
  const apiPort = await freePort();
  const other = await freePort();
  const file = writeConfig(twoListeners('fd:www', `127.0.0.1:${other}`, backend.address));
  const p = await activate(webPort, apiPort, ['run', '-c', file]);
  try {
    await curl(`http://127.0.0.1:${webPort}/`);
    const { code } = await p.exited;
    t.is(code, 1);
    const err = p.stderr();
    t.regex(err, /TWP_ERR_LISTEN_FDS/);
    t.regex(err, /listener "web" bind "fd:www": no inherited socket is named "www"/);
    t.regex(err, new RegExp(`listener "api" bind "127\\.0\\.0\\.1:${other}": no inherited socket is bound to that address`));
    t.regex(err, new RegExp(`inherited fd 3 "web" \\(127\\.0\\.0\\.1:${webPort}\\): no listener binds it`));
    t.regex(err, new RegExp(`inherited fd 4 "api" \\(127\\.0\\.0\\.1:${apiPort}\\): no listener binds it`));
    t.is(backend.hosts.length, 0);
  } finally {
    p.kill('SIGKILL');
    await backend.close();
  }
});

testWithTools(NEEDS, 'fd:NAME without any inherited socket is a startup error, with --workers too (checked once, before forking)', async (t) => {
  const backend = await startHttpBackend('unused');
  const file = writeConfig(twoListeners('fd:web', '127.0.0.1:0', backend.address));
  for (const extra of [[], ['--workers', '2']]) {
    const p = spawnTwinport(['run', '-c', file, ...extra]);
    try {
      t.is((await p.exited).code, 1);
      t.regex(p.stderr(), /TWP_ERR_LISTEN_FDS.*listener "web" bind "fd:web": no sockets were inherited/);
    } finally {
      p.kill('SIGKILL');
    }
  }
  await backend.close();
});
