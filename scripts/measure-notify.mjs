#!/usr/bin/env node
// How to send sd_notify messages from Node, which cannot send to a unix datagram socket itself:
// `systemd-notify --pid` once per message, against a resident python3 helper fed over a pipe.
// docs/operations.md quotes a run. Usage: node scripts/measure-notify.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
const RECV = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    data = s.recv(4096)
    print(f"{time.monotonic():.6f} {data!r}", flush=True)
`;
const HELPER = `
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    s.sendto(line.rstrip("\\n").encode(), os.environ["NOTIFY_SOCKET"])
`;
const path = join(mkdtempSync(join(tmpdir(), 'twp-measure-notify-')), 'notify.sock');
const recv = spawn('python3', ['-c', RECV, path], { stdio: ['ignore', 'pipe', 'inherit'] });
const lines = createInterface({ input: recv.stdout });
let waiter; lines.on('line', (l) => waiter?.(l));
const next = () => new Promise((r) => (waiter = r));
await next();
const env = { ...process.env, NOTIFY_SOCKET: path };
const N = 30;
// systemd-notify per message
let t0 = performance.now(); let times = [];
for (let i = 0; i < N; i++) {
  const s = performance.now();
  const got = next();
  const r = spawn('systemd-notify', [`--pid=${process.pid}`, `STATUS=m${i}`], { env, stdio: 'ignore' });
  await got; times.push(performance.now() - s);
  await new Promise((res) => r.on('exit', res));
}
times.sort((a, b) => a - b);
console.log(`systemd-notify --pid: message received after median ${times[N/2].toFixed(2)} ms, max ${times[N-1].toFixed(2)} ms; total ${(performance.now()-t0).toFixed(0)} ms for ${N}`);
const ru0 = process.resourceUsage();
// persistent python helper
t0 = performance.now();
const h = spawn('python3', ['-c', HELPER], { env, stdio: ['pipe', 'ignore', 'inherit'] });
let got = next(); h.stdin.write('READY=1\n'); await got;
console.log(`python3 helper: first message after ${(performance.now()-t0).toFixed(1)} ms (start included)`);
times = [];
for (let i = 0; i < N; i++) { const s = performance.now(); got = next(); h.stdin.write(`STATUS=m${i}\n`); await got; times.push(performance.now() - s); }
times.sort((a, b) => a - b);
console.log(`python3 helper: then median ${times[N/2].toFixed(3)} ms, max ${times[N-1].toFixed(3)} ms per message`);
h.stdin.end();
recv.kill();
