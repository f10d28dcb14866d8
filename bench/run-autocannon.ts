// Runs one autocannon measurement in its own pinned process (bench/load-autocannon.ts) and returns its
// result: shared by the main runner and P1.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToEnd } from './children.js';
import type { LoadResult, LoadSpec } from './load-autocannon.js';

const script = fileURLToPath(new URL('./load-autocannon.js', import.meta.url));

export async function runAutocannon(spec: LoadSpec, cpus: string | undefined): Promise<LoadResult> {
  // Only the load generator skips certificate checks (self-signed backends).
  const env = { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0', NODE_NO_WARNINGS: '1' };
  const r = await runToEnd('autocannon', process.execPath, [script, JSON.stringify(spec)], {
    cpus,
    env,
    timeoutMs: (spec.durationSec + 30) * 1000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || line === '') throw new Error(`autocannon failed (exit ${r.code}): ${r.stderr.trim()}`);
  return JSON.parse(line) as LoadResult;
}
