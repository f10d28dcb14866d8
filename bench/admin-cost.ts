// What the admin listener's metrics cost the proxy, apart from the noise of a loaded machine
// (docs/benchmarks.md, "Admin listener"): the close observer per connection (the only per-connection
// work: map adds and two histogram observations), and one scrape of /metrics with many open connections.
// The whole-proxy view is the S1/S2 cell twinport-admin vs twinport (bench/run.ts).
//
//   node dist/bench/admin-cost.js [--connections 200000] [--live 10000]
import { createProxyMetrics } from '../src/admin/metrics.js';
import type { Connection } from '../src/proxy/connection.js';
import type { CloseReason } from '../src/proxy/reasons.js';
import type { ProxyRuntime } from '../src/proxy/runtime.js';
import { PoolState } from '../src/routing/pool-state.js';
import { parseConfigText } from '../src/config/load.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const N = arg('connections', 200_000);
const LIVE = arg('live', 10_000);

const config = parseConfigText(
  `listeners:
  - { name: bench, bind: "127.0.0.1:0", routes: [{ match: { protocol: tls }, to: https }, { match: {}, to: http }] }
pools:
  http: { servers: ["127.0.0.1:1", "127.0.0.1:2"] }
  https: { servers: ["127.0.0.1:3", "127.0.0.1:4"] }
`,
  'bench.yaml',
);
const pools = new Map(Object.values(config.pools).map((p) => [p.name, { config: p, state: new PoolState(p) }]));

function fakeConnection(i: number): Connection {
  const tls = i % 2 === 0;
  return {
    listenerName: 'bench',
    protocol: tls ? 'tls' : 'http',
    poolName: tls ? 'https' : 'http',
    bytesIn: 500 + (i % 100),
    bytesOut: 1500 + (i % 300),
    retries: 0,
    limitName: undefined,
    closeDetailText: undefined,
    peekSeconds: 0.0002,
    connectSeconds: 0.0004,
  } as unknown as Connection;
}

const live = Array.from({ length: LIVE }, (_, i) => fakeConnection(i));
let observer: ((c: Connection, r: CloseReason) => void) | undefined;
const runtime = {
  addCloseObserver: (o: (c: Connection, r: CloseReason) => void) => (observer = o),
  listeners: () => [{ name: 'bench', bind: '127.0.0.1:0', address: '127.0.0.1:1', accepted: N, active: LIVE }],
  liveConnections: () => live.values(),
  poolRuntimes: pools,
  affinityStats: () => ({}),
  reloads: { ok: 0, failed: 0, last: undefined },
  configHash: 'bench',
  migrationCounters: () => [],
} as unknown as ProxyRuntime;

const { registry } = createProxyMetrics(runtime, { processMetrics: false });
const conns = Array.from({ length: 1000 }, (_, i) => fakeConnection(i));
// Warm up, then measure.
for (let i = 0; i < 20_000; i++) observer!(conns[i % 1000]!, 'done');
let t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) observer!(conns[i % 1000]!, 'done');
const perClose = Number(process.hrtime.bigint() - t0) / N / 1000;

await registry.metrics();
const scrapes: number[] = [];
for (let i = 0; i < 20; i++) {
  t0 = process.hrtime.bigint();
  await registry.metrics();
  scrapes.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
scrapes.sort((a, b) => a - b);
const median = scrapes[Math.floor(scrapes.length / 2)]!;
console.log(`close observer: ${perClose.toFixed(3)} µs per connection (${N} closes)`);
console.log(`one scrape of /metrics with ${LIVE} open connections: ${median.toFixed(2)} ms (median of 20)`);
