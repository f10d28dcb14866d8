// One autocannon run in its own process (so it can be pinned to the load generator's cores and never
// shares a CPU with the proxy). Takes a JSON LoadSpec as argv[2], prints one JSON LoadResult line.
//
// TLS: autocannon connects with `rejectUnauthorized: false` (the backends' certificates are self-signed);
// only this load generator skips verification. The parent also sets NODE_TLS_REJECT_UNAUTHORIZED=0 in
// this process's environment only.
//
// New connection per request (S2, S4): autocannon's `reconnectRate: 1` resets the connection after each
// response but, in autocannon 9.0.0, returns before emitting 'response', so those requests are never
// counted (results show 0 requests). `countResetResponses` below emits the missing event from the same
// data autocannon would have used. Latency then covers connect + handshake + request, as it should.
import autocannon from 'autocannon';
import type { EventEmitter } from 'node:events';

export interface LoadSpec {
  readonly url: string;
  readonly connections: number;
  readonly durationSec: number;
  /** A new TCP (and TLS) connection for every request. */
  readonly reconnect: boolean;
  readonly servername?: string;
}

export interface LoadResult {
  readonly tool: 'autocannon' | 'wrk';
  readonly requests: number;
  readonly durationSec: number;
  readonly reqPerSec: number;
  readonly bytesPerSec: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly errors: number;
  readonly non2xx: number;
}

interface QueuedResponse {
  readonly headers: { readonly statusCode: number };
  readonly bytes: number;
  readonly duration: number;
}

function countResetResponses(client: EventEmitter & Record<string, unknown>): void {
  const queue = client['pipelinedRequests'] as { terminateRequest: () => QueuedResponse };
  const reset = client['_resetConnection'] as () => void;
  let last: QueuedResponse | undefined;
  const terminate = queue.terminateRequest.bind(queue);
  queue.terminateRequest = () => (last = terminate());
  client['_resetConnection'] = () => {
    if (last !== undefined) client.emit('response', last.headers.statusCode, last.bytes, last.duration, client['rate']);
    last = undefined;
    reset.call(client);
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  const r = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationSec,
    timeout: 10,
    ...(spec.servername !== undefined && { servername: spec.servername }),
    ...(spec.reconnect && { reconnectRate: 1, setupClient: countResetResponses }),
  });
  const result: LoadResult = {
    tool: 'autocannon',
    requests: r.requests.total,
    durationSec: r.duration,
    reqPerSec: r.requests.total / r.duration,
    bytesPerSec: r.throughput.total / r.duration,
    latencyP50Ms: r.latency.p50,
    latencyP99Ms: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
