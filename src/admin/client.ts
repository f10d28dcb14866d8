// A client of the admin API for the CLI verbs (`twinport status|pools|drain|ready`): plain node:http, so
// that `unix:/path` admin sockets work as well as `http://host:port`.
import http from 'node:http';
import { TwinportError } from '../errors.js';

export interface AdminTarget {
  /** `http://127.0.0.1:9901` or `unix:/run/twinport/admin.sock`. */
  readonly url: string;
  readonly token?: string;
}

export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
  readonly text: string;
}

const TIMEOUT_MS = 10_000;

export function adminRequest(target: AdminTarget, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<AdminAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (target.token !== undefined) headers['authorization'] = `Bearer ${target.token}`;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  let where: http.RequestOptions;
  if (target.url.startsWith('unix:')) {
    where = { socketPath: target.url.slice('unix:'.length), path };
  } else {
    let u: URL;
    try {
      u = new URL(path, target.url.endsWith('/') ? target.url : `${target.url}/`);
    } catch {
      throw new TwinportError('TWP_ERR_ADMIN_REQUEST', `"${target.url}" is not an admin URL (http://host:port or unix:/path)`);
    }
    if (u.protocol !== 'http:') throw new TwinportError('TWP_ERR_ADMIN_REQUEST', `"${target.url}": the admin listener speaks http:// (or unix:/path)`);
    where = { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 80 : Number(u.port), path: `${u.pathname}${u.search}` };
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, headers, timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        if (/json/.test(res.headers['content-type'] ?? '')) {
          try {
            parsed = JSON.parse(text);
          } catch {
            // left as text
          }
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (e) => reject(new TwinportError('TWP_ERR_ADMIN_REQUEST', `${target.url}: ${e.message}`, { cause: e })));
    req.end(payload);
  });
}
