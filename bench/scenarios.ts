// The load scenarios of issue 6. Each is one autocannon (and wrk) run per target; M1 is the idle
// connection memory test (bench/idle-client.ts).

export interface LoadScenario {
  readonly id: 'S1' | 'S2' | 'S3' | 'S4' | 'S5-http' | 'S5-tls';
  /** The id `--scenarios` selects it by (S5 selects both bulk cells). */
  readonly group: 'S1' | 'S2' | 'S3' | 'S4' | 'S5';
  readonly title: string;
  readonly tls: boolean;
  readonly path: '/' | '/1m';
  readonly reconnect: boolean;
  readonly connections: number;
  /** Bulk scenarios report MB/s; the others req/s. */
  readonly bulk: boolean;
}

export const LOAD_SCENARIOS: readonly LoadScenario[] = [
  { id: 'S1', group: 'S1', title: 'HTTP keep-alive, 100-byte body', tls: false, path: '/', reconnect: false, connections: 50, bulk: false },
  { id: 'S2', group: 'S2', title: 'HTTP, new connection per request', tls: false, path: '/', reconnect: true, connections: 20, bulk: false },
  { id: 'S3', group: 'S3', title: 'HTTPS keep-alive through passthrough, 100-byte body', tls: true, path: '/', reconnect: false, connections: 50, bulk: false },
  { id: 'S4', group: 'S4', title: 'HTTPS, new TLS handshake per request', tls: true, path: '/', reconnect: true, connections: 20, bulk: false },
  { id: 'S5-http', group: 'S5', title: 'bulk 1 MiB responses over HTTP', tls: false, path: '/1m', reconnect: false, connections: 8, bulk: true },
  { id: 'S5-tls', group: 'S5', title: 'bulk 1 MiB responses over TLS', tls: true, path: '/1m', reconnect: false, connections: 8, bulk: true },
];

// P1: twinport's pool policies and TLS affinity (bench/pools.ts, issue 5); twinport only.
export const SCENARIO_GROUPS = ['S1', 'S2', 'S3', 'S4', 'S5', 'M1', 'P1'] as const;
export type ScenarioGroup = (typeof SCENARIO_GROUPS)[number];

/** M1: connections held open at once, at most. Each spliced connection costs the proxy two descriptors. */
export const IDLE_CONNECTIONS = 10000;

/** How many idle connections fit under the hard descriptor limit the proxies inherit. */
export function idleConnectionsFor(nofile: number): number {
  return Math.max(100, Math.min(IDLE_CONNECTIONS, Math.floor((nofile - 200) / 2)));
}
