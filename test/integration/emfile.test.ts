// Out of file descriptors: twinport as a real process under a 64-descriptor limit. More clients than it
// has descriptors for connect at once; accept(2) fails with EMFILE, twinport logs `accept failed` with the
// code, keeps running, and serves again once the extra clients are gone. libuv sheds some of the waiting
// clients to clear its backlog; the native engine's accept backs off instead and sheds none.
//
// The limit is applied with `prlimit --pid` once twinport listens: Node's ESM loader opens module files
// concurrently at startup and itself dies of EMFILE under 64 (a limit that low is not a startup we test).
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { exchange, LogSink, startBackend, type Backend } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const NOFILE = 64;
/** Well past what 64 descriptors allow once Node has taken its own (stdio, epoll, pipes…). */
const EXTRA_CLIENTS = 120;

interface Child {
  readonly proc: ChildProcess;
  readonly logs: LogSink;
  readonly exited: Promise<number | null>;
  readonly stderr: string[];
}

function startChild(configFile: string): Child {
  const proc = spawn(process.execPath, [MAIN, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = new LogSink();
  // One JSON object per line; a pipe may split lines across chunks, so reassemble them first.
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) logs.stream.write(`${line}\n`);
  });
  const stderr: string[] = [];
  proc.stderr!.on('data', (c: Buffer) => stderr.push(c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, logs, exited, stderr };
}

async function stopChild(child: Child): Promise<number | null> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return child.exited;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), 5000);
  const code = await child.exited;
  clearTimeout(timer);
  return code;
}

/** Opens a client that sends nothing: twinport holds one descriptor for it while it peeks. */
function openSilent(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    // Resolve on connect (the kernel completed the handshake; accept may or may not follow) or on an
    // early failure: either way the next client can go.
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    p.on('close', (code) => resolve({ code, out }));
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const REQUEST = Buffer.from('GET /fd HTTP/1.1\r\nHost: emfile.example\r\n\r\n');

/**
 * After the extra clients close, twinport frees their descriptors as it reads each EOF: retry until a
 * request is served, pacing the retries by its close lines (each one frees a descriptor), at most 50.
 */
async function servedAgain(t: ExecutionContext, child: Child, port: number): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const seen = child.logs.closes().length;
    const { answer } = await exchange(port, REQUEST);
    if (answer.length > 0) return answer.toString();
    await Promise.race([
      child.logs.waitFor((l) => l.msg === 'close' && child.logs.closes().length > seen + 1),
      new Promise((r) => setTimeout(r, 100)),
    ]);
  }
  t.fail('twinport did not serve again after the extra clients closed');
  return '';
}

testWithTools({ prlimit: 'util-linux' }, `EMFILE under --nofile=${NOFILE}: accept failed is logged, twinport survives and serves again`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twinport-emfile-'));
  const backend: Backend = await startBackend('served');
  const file = join(dir, 'twinport.yaml');
  writeFileSync(
    file,
    `
listeners:
  - name: main
    bind: "127.0.0.1:0"
    # Silent clients must hold their descriptor for the whole test.
    timeouts: { peek: 60s, connect: 1s, idle: 60s }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web: { servers: ["${backend.address}"] }
shutdown_timeout: 1s
`,
  );
  const child = startChild(file);
  const extras: Socket[] = [];
  try {
    const listening = await Promise.race([
      child.logs.waitFor((l) => l.msg === 'listening'),
      child.exited.then((code) => {
        throw new Error(`twinport exited with ${code}: ${child.stderr.join('')}`);
      }),
    ]);
    const port = Number(String(listening['address']).split(':').pop());
    const limited = await run('prlimit', ['--pid', String(child.proc.pid), `--nofile=${NOFILE}:${NOFILE}`]);
    t.is(limited.code, 0, limited.out);

    t.is((await exchange(port, REQUEST)).answer.toString(), 'served\n', 'served before the flood');

    for (let i = 0; i < EXTRA_CLIENTS; i++) extras.push(await openSilent(port));
    // Bounded, so a twinport that sheds clients without a word fails here instead of hanging the run.
    const failed = await within(child.logs.waitFor((l) => l.msg === 'accept failed'), 10_000, 'no "accept failed" line');
    t.is(failed['code'], 'EMFILE');
    t.is(failed['listener'], 'main');
    t.is(failed['level'], 50, 'logged at error level');
    const open = extras.filter((s) => !s.destroyed).length;
    if (listening['accepts'] === 'native') {
      // The native engine stops accepting for a moment instead: the extra clients wait in the backlog,
      // none is dropped unseen (as HAProxy does).
      t.is(open, EXTRA_CLIENTS, 'no extra client shed by the native accept');
    } else {
      // libuv accepts and closes some to clear the backlog (its reserve-descriptor trick).
      t.true(open < EXTRA_CLIENTS, `${open} of ${EXTRA_CLIENTS} extra clients still open`);
    }
    t.log(`${open} of ${EXTRA_CLIENTS} extra clients held open by twinport`);
    t.is(child.proc.exitCode, null, 'still running');

    for (const s of extras) s.destroy();
    t.is(await servedAgain(t, child, port), 'served\n');
    const last = await child.logs.waitFor((l) => l.msg === 'close' && l['reason'] === 'done' && l['server'] === backend.address && l['conn'] !== 1);
    t.is(last['pool'], 'web');
    t.is(child.proc.exitCode, null, 'still running after the flood');

    // A graceful stop still works, and exits 0.
    t.is(await stopChild(child), 0);
    t.truthy(child.logs.lines.find((l) => l.msg === 'stopped'));
  } finally {
    for (const s of extras) s.destroy();
    await stopChild(child);
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
