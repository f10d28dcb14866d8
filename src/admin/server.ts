// The admin listener (docs/admin.md): HTTP/1.1 on loopback or a unix socket, JSON resources as paths
// (as Caddy's admin API), reads are GETs and nothing mutates on a GET (Envoy's and HAProxy's rule).
//
// Security, in order: the bind is loopback or a unix socket unless a token is configured (config check);
// with `token_file` every API request carries `Authorization: Bearer <token>`, compared in constant time;
// a mutating request from a browser page of another origin is refused (Origin must match Host) and a
// POST body must be application/json, which a cross-origin form cannot send without a CORS preflight
// that this server never answers.
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { AdminConfig } from '../config/types.js';
import { parseDuration, parsePeriod } from '../config/units.js';
import { TwinportError } from '../errors.js';
import { ApiError, parseStateChange, type AdminBackend } from './api.js';
import { History } from './history.js';

const MAX_BODY = 4096;
const MAX_CONNECTIONS_LISTED = 10_000;
const DEFAULT_CONNECTIONS_LISTED = 100;

/** Files of the dashboard page, served from the package (no CDN, no build step). */
function assetTable(): Map<string, { file: string; type: string }> {
  const req = createRequire(import.meta.url);
  const dir = new URL('../../../dashboard/', import.meta.url);
  return new Map([
    ['/', { file: new URL('index.html', dir).pathname, type: 'text/html; charset=utf-8' }],
    ['/assets/dashboard.js', { file: new URL('dashboard.js', dir).pathname, type: 'text/javascript; charset=utf-8' }],
    ['/assets/dashboard.css', { file: new URL('dashboard.css', dir).pathname, type: 'text/css; charset=utf-8' }],
    ['/assets/uplot.js', { file: req.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' }],
    ['/assets/uplot.css', { file: req.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }],
  ]);
}

/** Reads the bearer token; a missing, unreadable or empty file stops the start (TWP_ERR_ADMIN_TOKEN). */
export function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TwinportError('TWP_ERR_ADMIN_TOKEN', `${file}: ${(e as Error).message}`, { cause: e });
  }
  const token = text.replace(/[\r\n\t ]+$/, '').replace(/^[\r\n\t ]+/, '');
  if (token === '') throw new TwinportError('TWP_ERR_ADMIN_TOKEN', `${file} is empty`);
  if (/[^\x21-\x7e]/.test(token)) throw new TwinportError('TWP_ERR_ADMIN_TOKEN', `${file}: the token must be printable ASCII without spaces`);
  return token;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export interface AdminServer {
  /** `http://127.0.0.1:9901` or `unix:/path`. */
  readonly url: string;
  /** For tcp binds: the port (port 0 in the config becomes the real one). */
  readonly port: number | undefined;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, e: ApiError, headers: Record<string, string> = {}): void {
  send(res, e.status, { code: e.code, message: e.message, error: e.message }, headers);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new ApiError(413, 'TWP_ADMIN_BODY_TOO_LARGE', `the body is over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(400, 'TWP_ADMIN_BAD_JSON', 'the body is not valid JSON');
  }
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError(400, 'TWP_ADMIN_BAD_PATH', `"${s}" is not a valid URL-encoded path segment`);
  }
}

function limitParam(v: string | null, fallback: number): number {
  if (v === null) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CONNECTIONS_LISTED) throw new ApiError(400, 'TWP_ADMIN_BAD_LIMIT', `limit must be a whole number from 1 to ${MAX_CONNECTIONS_LISTED}`);
  return n;
}

type Method = 'GET' | 'POST' | 'DELETE';

export interface AdminServerOptions {
  /** Time between two samples of the dashboard's history (default 10 s; tests use less). */
  readonly historyIntervalMs?: number;
}

export async function startAdminServer(cfg: AdminConfig, backend: AdminBackend, logger: Logger, opts: AdminServerOptions = {}): Promise<AdminServer> {
  const token = cfg.tokenFile === undefined ? undefined : readToken(cfg.tokenFile);
  const history = new History(backend, opts.historyIntervalMs);
  const tokenDigest = token === undefined ? undefined : digest(token);
  const assets = assetTable();

  const authorized = (req: IncomingMessage): boolean => {
    if (tokenDigest === undefined) return true;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    return m !== null && timingSafeEqual(digest(m[1]!), tokenDigest);
  };

  const route = async (method: Method, parts: string[], query: URLSearchParams, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const allow = (methods: Method[]): void => {
      if (!methods.includes(method)) throw Object.assign(new ApiError(405, 'TWP_ADMIN_METHOD', `${method} is not allowed here: use ${methods.join(', ')}`), { allow: methods.join(', ') });
    };
    const [a, b, c, d, e] = parts;
    if (a === 'metrics' && parts.length === 1) {
      allow(['GET']);
      const m = await backend.metrics();
      res.writeHead(200, { 'content-type': m.contentType, 'cache-control': 'no-store' });
      res.end(m.text);
      return;
    }
    if (a === 'status' && parts.length === 1) {
      allow(['GET']);
      send(res, 200, await backend.status());
      return;
    }
    if (a === 'pools' && parts.length === 1) {
      allow(['GET']);
      send(res, 200, { pools: await backend.pools() });
      return;
    }
    if (a === 'pools' && b !== undefined && parts.length === 2) {
      allow(['GET']);
      send(res, 200, await backend.pool(decodeSegment(b)));
      return;
    }
    if (a === 'pools' && b !== undefined && c === 'servers' && d !== undefined && e === 'state' && parts.length === 5) {
      allow(['POST']);
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json\b/i.test(type)) throw new ApiError(415, 'TWP_ADMIN_CONTENT_TYPE', 'send the body as Content-Type: application/json');
      const change = parseStateChange(await readBody(req), parseDuration);
      send(res, 200, await backend.setServerState(decodeSegment(b), decodeSegment(d), change));
      return;
    }
    if (a === 'connections' && parts.length === 1) {
      allow(['GET']);
      const filter = {
        limit: limitParam(query.get('limit'), DEFAULT_CONNECTIONS_LISTED),
        ...(query.get('pool') !== null && { pool: query.get('pool')! }),
        ...(query.get('server') !== null && { server: query.get('server')! }),
        ...(query.get('listener') !== null && { listener: query.get('listener')! }),
      };
      send(res, 200, await backend.connections(filter));
      return;
    }
    if (a === 'connections' && b !== undefined && parts.length === 2) {
      allow(['DELETE']);
      send(res, 200, await backend.closeConnection(decodeSegment(b)));
      return;
    }
    if (a === 'affinity' && b !== undefined && parts.length === 2) {
      allow(['GET']);
      send(res, 200, await backend.affinity(decodeSegment(b), limitParam(query.get('limit'), DEFAULT_CONNECTIONS_LISTED)));
      return;
    }
    if (a === 'history' && parts.length === 1) {
      allow(['GET']);
      send(res, 200, history.snapshot());
      return;
    }
    if (a === 'migration' && parts.length === 1) {
      allow(['GET']);
      const period = (key: string, alias: string): number => {
        const text = query.get(key) ?? query.get(alias) ?? '24h';
        const ms = parsePeriod(text);
        if (typeof ms === 'string') throw new ApiError(400, 'TWP_ADMIN_BAD_PERIOD', `${key}: ${ms}`);
        return ms;
      };
      const names = query.getAll('name');
      send(res, 200, await backend.migration({ since: period('since', 'since'), quietFor: period('quietFor', 'quiet_for'), ...(names.length > 0 && { names }) }));
      return;
    }
    throw new ApiError(404, 'TWP_ADMIN_NOT_FOUND', `no resource ${req.url ?? ''}: see docs/admin.md for the endpoints`);
  };

  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://admin');
      const method = req.method ?? 'GET';
      // The page and its static files hold no data: a browser must be able to load them before it has a
      // token to send (the page asks for it and sends it with each API call).
      const asset = assets.get(url.pathname);
      if (asset !== undefined) {
        if (method !== 'GET' && method !== 'HEAD') {
          sendError(res, new ApiError(405, 'TWP_ADMIN_METHOD', `${method} is not allowed here: use GET`), { allow: 'GET' });
          return;
        }
        const body = readFileSync(asset.file);
        res.writeHead(200, {
          'content-type': asset.type,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
          ...(url.pathname === '/' && { 'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'", 'x-frame-options': 'DENY' }),
        });
        res.end(method === 'HEAD' ? undefined : body);
        return;
      }
      if (!authorized(req)) {
        sendError(res, new ApiError(401, 'TWP_ADMIN_UNAUTHORIZED', 'this admin listener needs Authorization: Bearer <token> (admin.token_file)'), {
          'www-authenticate': 'Bearer realm="twinport"',
        });
        return;
      }
      if (method !== 'GET' && method !== 'HEAD') {
        const origin = req.headers.origin;
        if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) {
          sendError(res, new ApiError(403, 'TWP_ADMIN_CROSS_ORIGIN', `a request from ${origin} may not change anything here`));
          return;
        }
      }
      const parts = url.pathname.split('/').filter((p) => p !== '');
      try {
        await route((method === 'HEAD' ? 'GET' : method) as Method, parts, url.searchParams, req, res);
        if (method !== 'GET' && method !== 'HEAD') logger.info({ method, path: url.pathname, status: res.statusCode }, 'admin request');
      } catch (e) {
        if (e instanceof ApiError) {
          const allowHeader = (e as ApiError & { allow?: string }).allow;
          sendError(res, e, allowHeader === undefined ? {} : { allow: allowHeader });
          return;
        }
        logger.error({ err: { message: (e as Error)?.message, stack: (e as Error)?.stack }, path: url.pathname }, 'admin request failed');
        if (!res.headersSent) sendError(res, new ApiError(500, 'TWP_ADMIN_INTERNAL', String((e as Error)?.message ?? e)));
        else res.destroy();
      }
    })();
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  const bind = cfg.bind;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new TwinportError('TWP_ERR_ADMIN_LISTEN', `${bind.text}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      resolve();
    };
    if ('path' in bind) {
      void removeStaleSocket(bind.path).then(() => server.listen(bind.path, done), onError);
    } else server.listen({ host: bind.host, port: bind.port }, done);
  });
  const a = server.address();
  const port = typeof a === 'object' && a !== null ? (a as AddressInfo).port : undefined;
  const url = 'path' in bind ? bind.text : `http://${bind.host.includes(':') ? `[${bind.host}]` : bind.host}:${port}`;
  logger.info({ admin: url, token: token !== undefined }, 'admin listening');
  history.start();
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        history.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A socket file left by a process that is gone (nothing accepts on it) is removed; a live one is not. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (!live) unlinkSync(path);
}
