// Descriptor exhaustion must not shed connections unseen (issue 12 item 4). twinport started under
// `ulimit -n 256` derives a connection ceiling from RLIMIT_NOFILE; 400 clients connect at once to a backend
// that answers slowly. Every client is either served or closed by twinport with a `limit` close line: the
// close lines add up to the clients, and accept(2) never fails with EMFILE (which libuv would answer by
// closing connections itself, with no line and no counter).
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort, LogSink, startBackend } from '../helpers/proxy-harness.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const NOFILE = 256;
const CLIENTS = 400;

test(`ulimit -n ${NOFILE}, ${CLIENTS} clients at once: each is served or gets a counted limit close; no EMFILE`, async (t) => {
  // Answers 300 ms after the request, so connections pile up past the ceiling.
  const backend = await startBackend('served', (socket) => {
    socket.once('data', () => setTimeout(() => socket.end('served\n'), 300));
  });
  const dir = mkdtempSync(join(tmpdir(), 'twp-fd-'));
  const file = join(dir, 'twinport.yaml');
  const port = await freePort();
  writeFileSync(
    file,
    `listeners:
  - bind: "127.0.0.1:${port}"
    timeouts: { peek: 10s, connect: 2s, idle: 10s }
    routes:
      - match: { protocol: http }
        to: web
pools:
  web: { servers: ["${backend.address}"] }
shutdown_timeout: 1s
`,
  );
  const child = spawn('sh', ['-c', `ulimit -n ${NOFILE} && exec "$0" "$@"`, process.execPath, MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = new LogSink();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l.startsWith('{')) logs.stream.write(`${l}\n`);
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    const started = await logs.waitFor((l) => l.msg === 'connection ceiling');
    const limit = started['maxConnections'] as number;
    t.true(limit > 10 && limit < (NOFILE / 2), `ceiling ${limit} for ${NOFILE} descriptors`);
    const outcomes = await Promise.all(
      Array.from(
        { length: CLIENTS },
        () =>
          new Promise<string>((resolve) => {
            // No half-close from the client: the backend answers after its delay, then closes.
            const s = net.connect({ port, host: '127.0.0.1' });
            let got = '';
            s.on('data', (c: Buffer) => (got += c.toString()));
            s.on('error', () => {});
            s.on('close', () => resolve(got));
            s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: fd.example\r\n\r\n'));
          }),
      ),
    );
    const served = outcomes.filter((o) => o === 'served\n').length;
    await logs.waitFor(() => logs.closes().length >= CLIENTS);
    const closes = logs.closes();
    const limited = closes.filter((l) => l['reason'] === 'limit').length;
    t.log(`ceiling ${limit}: ${served} served, ${limited} closed at the ceiling`);
    t.is(closes.length, CLIENTS, 'one close line per client');
    t.is(served + limited, CLIENTS, 'every client served or closed with a counted limit');
    t.true(limited > 0, 'the ceiling was reached');
    t.is(closes.filter((l) => l['reason'] === 'done').length, served);
    t.false(logs.lines.some((l) => l.msg === 'accept failed'), 'accept(2) never ran out of descriptors');
    t.truthy(logs.lines.find((l) => l.msg === 'connection ceiling reached: closing new connections'));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    t.is(child.exitCode ?? 0, 0, stderr);
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
