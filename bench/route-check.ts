// Before a target is measured: does it really send plaintext to the HTTP backend and TLS to the HTTPS
// backend, and do both bodies arrive whole? A proxy that routes everything to one backend would
// otherwise post great numbers.
import http from 'node:http';
import https from 'node:https';
import { bodyFor, MIB } from './backend-content.js';
import type { RunningTarget } from './targets.js';

/** The SNI every TLS client of the benchmark sends (twinport and the peers parse it). */
export const BENCH_SNI = 'a.example.com';

interface Got {
  readonly status: number;
  readonly backend: string | undefined;
  readonly body: Buffer;
}

function get(secure: boolean, port: number, path: string): Promise<Got> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, path, agent: false, timeout: 10000 };
    const onRes = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = res.headers['x-backend'];
        resolve({ status: res.statusCode ?? 0, backend: Array.isArray(h) ? h[0] : h, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    };
    const req = secure
      ? https.get({ ...options, servername: BENCH_SNI, rejectUnauthorized: false }, onRes)
      : http.get(options, onRes);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** Problems found (empty: the target routes both protocols correctly). */
export async function checkRouting(t: RunningTarget): Promise<string[]> {
  const problems: string[] = [];
  for (const [secure, want, port] of [
    [false, 'http', t.httpPort],
    [true, 'https', t.tlsPort],
  ] as const) {
    const proto = secure ? 'TLS' : 'plaintext';
    try {
      const small = await get(secure, port, '/');
      if (small.status !== 200) problems.push(`${proto} GET / answered ${small.status}`);
      if (small.backend !== want) problems.push(`${proto} GET / reached backend ${small.backend ?? '(none)'}, not ${want}`);
      if (small.body.toString('utf8') !== bodyFor(want)) problems.push(`${proto} GET / body differs from the backend's`);
      const big = await get(secure, port, '/1m');
      if (big.backend !== want || big.body.length !== MIB) {
        problems.push(`${proto} GET /1m: backend ${big.backend ?? '(none)'}, ${big.body.length} bytes`);
      }
    } catch (e) {
      problems.push(`${proto} request failed: ${(e as Error).message}`);
    }
  }
  return problems;
}
