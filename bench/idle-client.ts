// M1's client: opens COUNT plaintext connections through a target, sends one keep-alive request on each
// and waits for the whole response — so each connection is routed and spliced to the backend, not
// merely accepted — then holds them all idle. Prints one JSON line {ready, failed, ms} when every
// connection has settled or the deadline passed, and keeps them open until SIGTERM.
//
//   node dist/bench/idle-client.js '{"port":1234,"count":10000,"concurrency":256,"deadlineMs":60000}'
import net from 'node:net';
import { bodyFor } from './backend-content.js';

interface IdleSpec {
  readonly port: number;
  readonly count: number;
  readonly concurrency: number;
  readonly deadlineMs: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as IdleSpec;
const request = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n');
const expected = bodyFor('http');
const sockets: net.Socket[] = [];
const started = Date.now();
let launched = 0;
let ready = 0;
let failed = 0;
let reported = false;

function report(): void {
  if (reported) return;
  reported = true;
  process.stdout.write(`${JSON.stringify({ ready, failed, ms: Date.now() - started })}\n`);
}

function settle(ok: boolean): void {
  if (ok) ready++;
  else failed++;
  if (ready + failed === spec.count) report();
  else launch();
}

function openOne(): void {
  const s = net.connect({ port: spec.port, host: '127.0.0.1' });
  sockets.push(s);
  let got = '';
  let done = false;
  const finish = (ok: boolean): void => {
    if (done) return;
    done = true;
    settle(ok);
  };
  s.once('connect', () => s.write(request));
  s.on('data', (d: Buffer) => {
    if (done) return;
    got += d.toString('latin1');
    if (got.endsWith(expected)) finish(true);
  });
  s.on('error', () => finish(false));
  s.on('close', () => finish(false));
}

function launch(): void {
  while (launched < spec.count && launched - ready - failed < spec.concurrency) {
    launched++;
    openOne();
  }
}

setTimeout(report, spec.deadlineMs).unref();
launch();
process.on('SIGTERM', () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
});
