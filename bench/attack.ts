// "Attacker connections per second to saturate one core" (issue 17, docs/security.md): for each first flight,
// a flood of connections that each send it and close, against twinport pinned to one CPU, while an
// innocent client sends a request every 50 ms. Proxy CPU per connection comes from /proc; one core
// divided by it is the rate at which such connections saturate twinport's core.
//
//   npm run build && node dist/bench/attack.js [--baseline DIR] [--seconds 5] [--rounds 3] [--concurrency 20] [--only a,b]
//
// --baseline DIR runs the same flights against another checkout (built, with node_modules) in the same
// run: the before/after of docs/security.md. The flights are the security review's (F8) worst cases and
// the worst one can build within today's caps.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProxyV2 } from '../src/protocol/proxy-header-build.js';
import {
  clientHelloRecords,
  ext,
  extAlpn,
  extGroups,
  extKeyShare,
  extPsk,
  extPskModes,
  extSigAlgs,
  extSni,
  extSupportedVersions,
  sslv2ClientHello,
  typicalExtensions,
  type ClientHelloSpec,
  type Ext,
} from '../test/helpers/tls-build.js';
import { freePort, spawnChild, waitForPort, type Child } from './children.js';
import { CLK_TCK, treeUsage } from './proc-stats.js';

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
const SECONDS = Number(arg('seconds') ?? 5);
const CONCURRENCY = Number(arg('concurrency') ?? 20);
const BASELINE = arg('baseline');
const ONLY = arg('only')?.split(',');
const ROUNDS = Number(arg('rounds') ?? 3);

const range = (n: number, f: (i: number) => number = (i) => i): number[] => Array.from({ length: n }, (_, i) => f(i));
const ids = (n: number, size: number): Buffer[] => range(n).map((i) => Buffer.concat([Buffer.alloc(16, i & 0xff), Buffer.alloc(size - 16, 7)]));

/** Every list at its cap, in one hello of ~58 KiB (ciphers 1024, ALPN 64 × 255, groups and sigalgs 1024, 64 key shares, 16 PSKs). */
function worstWithinCaps(): Buffer {
  const fillers = range(110 - 9, (i) => 0x1000 + i).map((t) => ext(t));
  return clientHelloRecords(
    {
      cipherSuites: range(1024, (i) => 0x0100 + i),
      extensions: [
        extSni('a.example.com'),
        extAlpn(...range(64).map((i) => Buffer.alloc(255, 0x61 + (i % 26)))),
        extGroups(...range(1024)),
        extSigAlgs(...range(1024)),
        extKeyShare(...range(64)),
        extSupportedVersions(0x0304, 0x0303),
        ...fillers,
        extPskModes(1),
        extPsk(ids(16, 600)),
      ],
    },
    { sizes: 16384 },
  );
}

interface Flight {
  readonly name: string;
  readonly bytes: Buffer;
  /** Sent from 127.0.0.2, a trusted PROXY source in the config. */
  readonly trusted?: boolean;
}

const hello = (extensions: readonly Ext[], more: ClientHelloSpec = {}): Buffer => clientHelloRecords({ ...more, extensions }, { sizes: 16384 });

const FLIGHTS: Flight[] = [
  { name: 'typical hello', bytes: hello(typicalExtensions()) },
  { name: 'worst hello within the caps', bytes: worstWithinCaps() },
  { name: '32 000 one-byte ALPN names', bytes: hello([extAlpn(...range(32_000).map(() => Buffer.from('a')))]) },
  { name: '16 300 empty extensions', bytes: hello(range(16_300, (i) => 0x1000 + i).map((t) => ext(t))) },
  { name: '32 700 cipher suites', bytes: hello(typicalExtensions(), { cipherSuites: range(32_700, (i) => 0x0100 + i) }) },
  { name: '1150 PSK identities', bytes: hello([extSni('a.example.com'), extSupportedVersions(0x0304, 0x0303), extPskModes(1), extPsk(ids(1150, 16))]) },
  { name: 'SSLv2 hello, 10 900 specs', bytes: sslv2ClientHello({ cipherSpecs: range(10_900) }) },
  {
    name: 'untrusted PROXY v2, 21 000 NOOP TLVs + hello',
    bytes: Buffer.concat([
      buildProxyV2({
        source: { address: '8.8.8.8', port: 1 },
        destination: { address: '10.0.0.1', port: 443 },
        tlvs: range(21_000).map(() => ({ type: 0x04, value: Buffer.alloc(0) })),
      }),
      hello(typicalExtensions()),
    ]),
  },
  {
    name: 'trusted PROXY v2, 64 TLVs of 900 B + hello',
    trusted: true,
    bytes: Buffer.concat([
      buildProxyV2({
        source: { address: '8.8.8.8', port: 1 },
        destination: { address: '10.0.0.1', port: 443 },
        tlvs: range(63).map(() => ({ type: 0xe1, value: Buffer.alloc(900, 1) })),
      }),
      hello(typicalExtensions()),
    ]),
  },
];

function config(port: number, trustedPort: number, sink: number): string {
  return `listeners:
  - name: attack
    bind: "127.0.0.1:${port}"
    routes:
      - match: { protocol: tls }
        to: sink
  - name: trusted
    bind: "127.0.0.1:${trustedPort}"
    proxy_protocol: { trusted: ["127.0.0.2/32"] }
    routes:
      - match: { protocol: tls }
        to: sink
pools:
  sink: { servers: ["127.0.0.1:${sink}"] }
`;
}

/** Keeps `CONCURRENCY` connections busy sending `bytes` and closing, for `SECONDS`. */
async function flood(port: number, bytes: Buffer, localAddress: string): Promise<number> {
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    range(CONCURRENCY).map(async () => {
      while (performance.now() < until) {
        await new Promise<void>((resolveOne) => {
          const s = net.connect({ port, host: '127.0.0.1', localAddress });
          s.on('error', () => {});
          s.on('close', () => resolveOne());
          s.on('connect', () => s.end(bytes));
          s.resume();
        });
        done++;
      }
    }),
  );
  return done;
}

/** An HTTP-less innocent: a TLS hello every 50 ms to the same port, timed until twinport's sink answers. */
async function innocent(port: number, stop: () => boolean): Promise<number[]> {
  const bytes = hello(typicalExtensions());
  const lat: number[] = [];
  while (!stop()) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('error', () => r());
      s.on('data', () => {
        lat.push(performance.now() - t0);
        s.destroy();
        r();
      });
      s.on('close', () => r());
      s.on('connect', () => s.write(bytes));
    });
    await new Promise((r) => setTimeout(r, 50));
  }
  return lat.sort((a, b) => a - b);
}

interface Row {
  readonly build: string;
  readonly flight: string;
  readonly connPerSec: number;
  readonly cpuMsPerConn: number;
  readonly saturatesAt: number;
  readonly innocentP50: number;
}

interface Running {
  readonly build: string;
  readonly child: Child;
  readonly port: number;
  readonly trustedPort: number;
}

async function startBuild(build: string, root: string, sinkPort: number, dir: string, taken: Set<number>): Promise<Running> {
  const pick = async (): Promise<number> => {
    let p = await freePort();
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    return p;
  };
  const port = await pick();
  const trustedPort = await pick();
  const file = join(dir, `${build}.yaml`);
  writeFileSync(file, config(port, trustedPort, sinkPort));
  const child = spawnChild(`twinport-${build}`, process.execPath, [join(root, 'dist', 'src', 'cli', 'main.js'), '--config', file, '--log-level', 'warn'], {
    cpus: '1',
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await waitForPort(port, child);
  await waitForPort(trustedPort, child);
  return { build, child, port, trustedPort };
}

async function measure(r: Running, f: Flight): Promise<Row> {
  let stopped = false;
  const inn = innocent(r.port, () => stopped);
  const u0 = treeUsage(r.child.pid);
  const n = await flood(f.trusted === true ? r.trustedPort : r.port, f.bytes, f.trusted === true ? '127.0.0.2' : '127.0.0.1');
  const u1 = treeUsage(r.child.pid);
  stopped = true;
  const lat = await inn;
  if (r.child.proc.exitCode !== null) throw new Error(`twinport-${r.build} exited: ${r.child.stderrTail()}`);
  const cpuMs = ((u1.userSec + u1.sysSec - u0.userSec - u0.sysSec) * 1000) / n;
  return {
    build: r.build,
    flight: f.name,
    connPerSec: n / SECONDS,
    cpuMsPerConn: cpuMs,
    saturatesAt: 1000 / cpuMs,
    innocentP50: lat[Math.floor(lat.length / 2)] ?? NaN,
  };
}

/** The row with the median CPU per connection of its rounds. */
function median(rows: Row[]): Row {
  const sorted = [...rows].sort((a, b) => a.cpuMsPerConn - b.cpuMsPerConn);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'twp-attack-'));
  // The sink reads everything, answers "ok" to the first bytes (the innocent client times that) and closes
  // at EOF, as the review's sink.
  const sink = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.write('ok'));
    s.on('end', () => s.end());
    s.resume();
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const sinkPort = (sink.address() as net.AddressInfo).port;
  const flights = FLIGHTS.filter((f) => ONLY === undefined || ONLY.some((o) => f.name.includes(o)));
  const rows: Row[] = [];
  const taken = new Set<number>([sinkPort]);
  const builds: Running[] = [];
  try {
    // Both builds run at once (pinned to the same CPU, idle in turn), each flight measured on one then the
    // other, ROUNDS times: the machine's drift lands on both alike.
    if (BASELINE !== undefined) builds.push(await startBuild('before', resolve(BASELINE), sinkPort, dir, taken));
    builds.push(await startBuild(BASELINE === undefined ? 'now' : 'after', repoRoot, sinkPort, dir, taken));
    for (const f of flights) {
      const perBuild = new Map<string, Row[]>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const b of builds) perBuild.set(b.build, [...(perBuild.get(b.build) ?? []), await measure(b, f)]);
      }
      for (const b of builds) rows.push(median(perBuild.get(b.build)!));
    }
  } finally {
    for (const b of builds) await b.child.stop();
    sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('| first flight | build | conn/s reached | proxy CPU ms/conn | saturates one core at (conn/s) | innocent p50 ms |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const f of flights) {
    for (const r of rows.filter((x) => x.flight === f.name)) {
      console.log(`| ${r.flight} (${f.bytes.length} B) | ${r.build} | ${r.connPerSec.toFixed(0)} | ${r.cpuMsPerConn.toFixed(3)} | ~${r.saturatesAt.toFixed(0)} | ${r.innocentP50.toFixed(1)} |`);
    }
  }
  console.log(
    `\n${SECONDS} s per cell, median CPU of ${ROUNDS} interleaved rounds, ${CONCURRENCY} concurrent attack connections, twinport pinned to CPU 1, CLK_TCK ${CLK_TCK}; node ${process.version}`,
  );
}

await main();
