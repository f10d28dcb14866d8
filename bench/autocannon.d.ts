// The part of autocannon 9's API the benchmark uses (the package ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  interface Histogram {
    readonly average: number;
    readonly mean: number;
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly max: number;
    readonly total: number;
  }

  interface Result {
    readonly duration: number;
    readonly errors: number;
    readonly timeouts: number;
    readonly non2xx: number;
    readonly mismatches: number;
    readonly resets: number;
    readonly latency: Histogram;
    readonly requests: Histogram & { readonly sent: number };
    readonly throughput: Histogram;
  }

  interface Options {
    url: string;
    connections?: number;
    duration?: number;
    pipelining?: number;
    timeout?: number;
    reconnectRate?: number;
    servername?: string;
    headers?: Record<string, string>;
    tlsOptions?: Record<string, unknown>;
    setupClient?: (client: EventEmitter & Record<string, unknown>) => void;
  }

  function autocannon(opts: Options): Promise<Result>;
  export default autocannon;
}
