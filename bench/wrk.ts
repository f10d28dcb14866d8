// wrk as a cross-check of autocannon: one autocannon process (one JS thread) can saturate before the
// proxy does; wrk (C, epoll) costs the load core much less per request. New-connection scenarios send
// `Connection: close`, which wrk answers by reconnecting. wrk does not verify TLS certificates.
import { runToEnd } from './children.js';
import type { LoadResult, LoadSpec } from './load-autocannon.js';

const UNITS: Record<string, number> = { us: 1e-3, ms: 1, s: 1000, m: 60000 };
const SIZE: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

function ms(value: string, unit: string): number {
  return Number(value) * (UNITS[unit] ?? Number.NaN);
}

/** Parses `wrk --latency` output; undefined when it is not wrk's summary. */
export function parseWrk(out: string): LoadResult | undefined {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB) read/.exec(out);
  if (total === null) return undefined;
  const requests = Number(total[1]);
  const durationSec = ms(total[2]!, total[3]!) / 1000;
  const bytes = Number(total[4]) * (SIZE[total[5]!] ?? Number.NaN);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m === null ? Number.NaN : ms(m[1]!, m[2]!);
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sock === null ? 0 : Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    tool: 'wrk',
    requests,
    durationSec,
    reqPerSec: requests / durationSec,
    bytesPerSec: bytes / durationSec,
    latencyP50Ms: pct('50'),
    latencyP99Ms: pct('99'),
    errors,
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
}

export async function runWrk(spec: LoadSpec, cpus: string | undefined): Promise<LoadResult> {
  const args = ['-t1', `-c${spec.connections}`, `-d${spec.durationSec}s`, '--timeout', '10s', '--latency'];
  if (spec.reconnect) args.push('-H', 'Connection: close');
  args.push(spec.url);
  const r = await runToEnd('wrk', 'wrk', args, { cpus, timeoutMs: (spec.durationSec + 20) * 1000 });
  const parsed = parseWrk(r.stdout);
  if (parsed === undefined) throw new Error(`wrk gave no summary (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return parsed;
}
