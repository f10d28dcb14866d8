// scripts/record-first-flight.mjs, the recorder the fixtures were captured with: it must write exactly the
// client's first flight under each of its documented rules (test/fixtures/README.md).
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fixturesDir } from '../helpers/fixtures.js';

const RECORDER = join(fixturesDir(), '..', '..', 'scripts', 'record-first-flight.mjs');

interface Recorder {
  port: number;
  out: string;
  /** Resolves with the exit code once the recorder has written its file and exited. */
  exited: Promise<number | null>;
}

async function startRecorder(t: ExecutionContext, args: string[]): Promise<Recorder> {
  const dir = await mkdtemp(join(tmpdir(), 'twinport-recorder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'flight.bin');
  const child: ChildProcess = spawn(process.execPath, [RECORDER, '--out', out, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  t.teardown(() => {
    if (child.exitCode === null) child.kill();
  });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  return { port: Number(line), out, exited };
}

async function listen(t: ExecutionContext, onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return (server.address() as AddressInfo).port;
}

function connectTo(t: ExecutionContext, port: number): net.Socket {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  t.teardown(() => socket.destroy());
  return socket;
}

test('without an upstream it records everything until the client half-closes', async (t) => {
  const rec = await startRecorder(t, ['--quiet-ms', '60000']);
  const client = connectTo(t, rec.port);
  client.on('error', () => {}); // the recorder resets the connection once it has the bytes
  client.write('first ');
  client.end('second');
  t.is(await rec.exited, 0);
  t.is((await readFile(rec.out)).toString(), 'first second');
});

test('with an upstream it records what the client sent before any answer reached it, and relays all', async (t) => {
  const upstreamSaw: Buffer[] = [];
  const upstreamPort = await listen(t, (s) => {
    s.on('data', (chunk) => upstreamSaw.push(chunk));
    s.once('data', () => s.write('answer'));
    s.on('end', () => s.end());
  });
  const rec = await startRecorder(t, ['--upstream', `127.0.0.1:${upstreamPort}`, '--grace-ms', '200']);
  const client = connectTo(t, rec.port);
  // Two writes before any answer (like a ClientHello followed by 0-RTT data), then one in reply.
  client.write('hello|');
  client.write('early|');
  const [answer] = (await once(client, 'data')) as [Buffer];
  t.is(answer.toString(), 'answer');
  client.end('reply');
  await once(client, 'end');
  t.is(await rec.exited, 0);
  t.is((await readFile(rec.out)).toString(), 'hello|early|');
  t.is(Buffer.concat(upstreamSaw).toString(), 'hello|early|reply');
});

test('--conn 2 relays the first connection unrecorded and records the second', async (t) => {
  const upstreamPort = await listen(t, (s) => {
    s.once('data', () => s.write('ok'));
    s.on('end', () => s.end());
  });
  const rec = await startRecorder(t, ['--upstream', `127.0.0.1:${upstreamPort}`, '--conn', '2', '--grace-ms', '0']);
  for (const message of ['one', 'two']) {
    const client = connectTo(t, rec.port);
    client.write(message);
    await once(client, 'data');
    client.end();
    await once(client, 'end');
  }
  t.is(await rec.exited, 0);
  t.is((await readFile(rec.out)).toString(), 'two');
});
