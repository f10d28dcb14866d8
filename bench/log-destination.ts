// The close line's cost on pino's synchronous destination (what twinport uses: src/cli/logger.ts) against
// its asynchronous one (SonicBoom buffering, `minLength` bytes per write), into a pipe drained by `cat` and
// into /dev/null. Run: `npm run build && node dist/bench/log-destination.js [lines]`.
//
// One typical close line and one of the largest the close line can be since it is bounded (8 ALPN names
// of 32 control characters, a 255-byte SNI): docs/security.md quotes the result.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { devNull, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';

const LINES = Number(process.argv[2] ?? 200_000);

const typical = {
  conn: 123456,
  listener: 'keystone',
  client: '10.0.0.7:51234',
  protocol: 'tls',
  sni: 'identity.example.com',
  alpn: ['h2', 'http/1.1'],
  route: 0,
  pool: 'identity-tls',
  server: '127.0.0.1:5443',
  reason: 'done',
  bytesIn: 5120,
  bytesOut: 80213,
  durationMs: 12.345,
};
const largest = {
  ...typical,
  sni: 'a'.repeat(255),
  alpn: Array.from({ length: 8 }, () => `${'\u0001'.repeat(32)}…`),
  alpnCount: 64,
};

interface Result {
  readonly target: string;
  readonly mode: string;
  readonly line: string;
  readonly usPerLine: number;
  readonly bytes: number;
}

async function run(target: 'pipe' | 'devnull', sync: boolean, fields: object, name: string): Promise<Result> {
  let fd: number;
  let cat: ReturnType<typeof spawn> | undefined;
  if (target === 'pipe') {
    // A named pipe opened blocking, as a shell redirect or systemd's journal pipe hands stdout over.
    cat = spawn('cat', [FIFO], { stdio: ['ignore', 'ignore', 'inherit'] });
    fd = openSync(FIFO, 'w');
  } else {
    fd = openSync(devNull, 'w');
  }
  const dest = pino.destination({ dest: fd, sync, ...(sync ? {} : { minLength: 4096 }) });
  const logger = pino({ level: 'info', base: { pid: process.pid } }, dest);
  const bytes = JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, ...fields, msg: 'close' }).length + 1;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < LINES; i++) logger.info(fields, 'close');
  await new Promise<void>((resolve) => dest.flush(() => resolve()));
  const cpu = process.cpuUsage(cpu0);
  closeSync(fd);
  if (cat !== undefined) await new Promise((r) => cat!.once('exit', r));
  return { target, mode: sync ? 'sync' : 'async (minLength 4096)', line: name, usPerLine: (cpu.user + cpu.system) / LINES, bytes };
}

const DIR = mkdtempSync(join(tmpdir(), 'twp-logbench-'));
const FIFO = join(DIR, 'fifo');
execFileSync('mkfifo', [FIFO]);

const results: Result[] = [];
for (const target of ['pipe', 'devnull'] as const) {
  for (const [name, fields] of [
    ['typical', typical],
    ['largest', largest],
  ] as const) {
    for (const sync of [true, false]) results.push(await run(target, sync, fields, name));
  }
}
rmSync(DIR, { recursive: true, force: true });
console.log(`| target | line (bytes) | destination | CPU µs per line |\n|---|---|---|---:|`);
for (const r of results) console.log(`| ${r.target} | ${r.line} (${r.bytes}) | ${r.mode} | ${r.usPerLine.toFixed(2)} |`);
console.log(`\n${LINES} lines per cell; node ${process.version}`);
