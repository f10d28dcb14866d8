// The admin listener over an in-process proxy (as app.ts wires it for one process), and real HTTP and
// TLS backends that answer with their tag, for the admin tests.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { generate } from 'selfsigned';
import { LocalAdmin } from '../../src/admin/api.js';
import { createProxyMetrics } from '../../src/admin/metrics.js';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import type { RunningProxy } from './proxy-harness.js';

export interface RunningAdmin {
  readonly server: AdminServer;
  readonly url: string;
  get(path: string, token?: string): Promise<{ status: number; body: unknown; text: string; headers: http.IncomingHttpHeaders }>;
  post(path: string, body: unknown, token?: string): Promise<{ status: number; body: unknown; text: string }>;
  del(path: string, token?: string): Promise<{ status: number; body: unknown; text: string }>;
  close(): Promise<void>;
}

/** Starts the admin listener for `proxy` with the `admin` block of its config. */
export async function startAdminFor(proxy: RunningProxy, opts: { historyIntervalMs?: number } = {}): Promise<RunningAdmin> {
  const cfg = proxy.runtime.currentConfig.admin;
  if (cfg === undefined) throw new Error('the config has no admin block');
  const metrics = createProxyMetrics(proxy.runtime, { processMetrics: false });
  const local = new LocalAdmin(proxy.runtime, metrics.registry, { version: 'test', configFile: 'test.yaml', workers: 1 });
  const server = await startAdminServer(cfg, local, pino(), opts);
  const request = (method: string, path: string, token: string | undefined, body?: unknown) =>
    new Promise<{ status: number; body: unknown; text: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        `${server.url}${path}`,
        {
          method,
          agent: false,
          headers: {
            ...(token !== undefined && { authorization: `Bearer ${token}` }),
            ...(payload !== undefined && { 'content-type': 'application/json' }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            if (/json/.test(res.headers['content-type'] ?? '')) parsed = JSON.parse(text);
            resolve({ status: res.statusCode ?? 0, body: parsed, text, headers: res.headers });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  return {
    server,
    url: server.url,
    get: (path, token) => request('GET', path, token),
    post: (path, body, token) => request('POST', path, token, body),
    del: (path, token) => request('DELETE', path, token),
    close: () => server.close(),
  };
}

function pino() {
  // The admin server logs its mutations: a silent logger keeps the test output to the proxy's lines.
  return { info() {}, warn() {}, error() {}, debug() {} } as unknown as Parameters<typeof startAdminServer>[2];
}

export interface WebBackend {
  readonly tag: string;
  readonly port: number;
  readonly address: string;
  /** Requests this backend answered. */
  requests: number;
  close(): Promise<void>;
}

/** An HTTP/1.1 server answering `tag` to every request, optionally after `delayMs`. */
export async function startHttpBackend(tag: string, delayMs = 0): Promise<WebBackend> {
  const b = { tag, port: 0, address: '', requests: 0 } as WebBackend & { port: number; address: string };
  const server = http.createServer((req, res) => {
    b.requests++;
    req.resume();
    const answer = (): void => {
      res.setHeader('connection', 'close');
      res.end(`${tag}\n`);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  b.port = (server.address() as AddressInfo).port;
  b.address = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return b;
}

let pems: { key: string; cert: string } | undefined;
async function cert(): Promise<{ key: string; cert: string }> {
  if (pems === undefined) {
    const p = await generate([{ name: 'commonName', value: 'a.example.com' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
    pems = { key: p.private, cert: p.cert };
  }
  return pems;
}

/** An HTTPS server answering `tag` (self-signed certificate for a.example.com). */
export async function startHttpsBackend(tag: string): Promise<WebBackend> {
  const b = { tag, port: 0, address: '', requests: 0 } as WebBackend & { port: number; address: string };
  const server = https.createServer(await cert(), (req, res) => {
    b.requests++;
    req.resume();
    res.setHeader('connection', 'close');
    res.end(`${tag}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  b.port = (server.address() as AddressInfo).port;
  b.address = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return b;
}

/** One HTTP (or HTTPS, certificate not checked) GET through the proxy, a new connection each time. */
export function fetchVia(port: number, opts: { tls?: boolean; localAddress?: string; path?: string; host?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  const mod = opts.tls === true ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: opts.host ?? '127.0.0.1',
        port,
        path: opts.path ?? '/',
        agent: false,
        ...(opts.headers !== undefined && { headers: opts.headers }),
        ...(opts.localAddress !== undefined && { localAddress: opts.localAddress }),
        ...(opts.tls === true && { servername: 'a.example.com', rejectUnauthorized: false }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
