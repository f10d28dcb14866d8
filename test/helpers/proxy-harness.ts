// Runs twinport in-process from YAML text (the same validator as the CLI), captures its JSON log lines,
// and provides real TCP backends and relays ("taps") that record every byte, so tests can assert on what
// a backend actually received and which backend a connection landed on.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { parseConfigText } from '../../src/config/load.js';
import { ProxyRuntime } from '../../src/proxy/runtime.js';

// The sanitizer pass (scripts/test.mjs) preloads the ASan/UBSan runtimes into this process for the
// instrumented addon, loaded by the imports above. The programs tests start (curl, openssl, haproxy,
// twinport's CLI) must not inherit them: uninstrumented, they fail under a preloaded ASan. A test that starts
// another node process loading the instrumented addon (test/native/pair-holder.ts) passes SANITIZER_ENV on.
export const SANITIZER_ENV: NodeJS.ProcessEnv | undefined =
  process.env['TWINPORT_SANITIZER_PRELOAD'] === '1'
    ? {
        LD_PRELOAD: process.env['LD_PRELOAD'],
        TWINPORT_NATIVE_ADDON: process.env['TWINPORT_NATIVE_ADDON'],
        TWINPORT_SANITIZER_PRELOAD: '1',
      }
    : undefined;
if (process.env['TWINPORT_SANITIZER_PRELOAD'] === '1') {
  delete process.env['LD_PRELOAD'];
  delete process.env['TWINPORT_NATIVE_ADDON'];
  delete process.env['TWINPORT_SANITIZER_PRELOAD'];
}

export type LogLine = Record<string, unknown> & { msg?: string };

export class LogSink {
  readonly lines: LogLine[] = [];
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() === '') continue;
        const line = JSON.parse(text) as LogLine;
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(line)) return true;
          w.resolve(line);
          return false;
        });
      }
      cb();
    },
  });

  /** Resolves with the first line (already logged or future) that matches. */
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine> {
    const found = this.lines.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  closes(): LogLine[] {
    return this.lines.filter((l) => l.msg === 'close');
  }

  /** The close line of the n-th connection (1-based ids are per process, so match on a predicate). */
  waitForClose(pred: (l: LogLine) => boolean = () => true): Promise<LogLine> {
    return this.waitFor((l) => l.msg === 'close' && pred(l));
  }
}

export interface RunningProxy {
  readonly runtime: ProxyRuntime;
  readonly logs: LogSink;
  /** Port of a listener (the first when no name given). */
  port(name?: string): number;
  stop(): Promise<void>;
}

/**
 * `npm test` runs the proxy's integration tests again with TWINPORT_TEST_IO_ENGINE=libuv and =streams
 * (scripts/test.mjs; the first pass runs auto's choice, native where it built), so every engine
 * (docs/io-engine.md) passes the same suite. A config that names its engine keeps it.
 */
export const TEST_IO_ENGINE = process.env['TWINPORT_TEST_IO_ENGINE'] as 'native' | 'libuv' | 'streams' | undefined;

export async function startProxy(yaml: string, file = 'test.yaml'): Promise<RunningProxy> {
  // A migration listener records into migration_store, by default next to the config file: for a
  // config that names none, a throwaway folder, never the working directory (the repository).
  let stateDir: string | undefined;
  if (!/^migration_store:/m.test(yaml)) {
    stateDir = mkdtempSync(join(tmpdir(), 'twp-state-'));
    yaml = `${yaml}\nmigration_store: ${JSON.stringify(join(stateDir, 'migration.db'))}\n`;
  }
  let config = parseConfigText(yaml, file);
  if (TEST_IO_ENGINE !== undefined && !/^io_engine:/m.test(yaml)) config = { ...config, ioEngine: TEST_IO_ENGINE };
  const logs = new LogSink();
  const logger = pino({ level: 'debug' }, logs.stream);
  const runtime = new ProxyRuntime(config, logger);
  await runtime.start();
  return {
    runtime,
    logs,
    port(name?: string): number {
      const addrs = runtime.addresses();
      const a = name === undefined ? addrs.values().next().value : addrs.get(name);
      if (a === undefined) throw new Error(`no listener ${name ?? ''}`);
      return a.port;
    },
    stop: async () => {
      await runtime.shutdown();
      if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export interface RecordedConnection {
  readonly received: Buffer[];
  ended: boolean;
  closed: Promise<void>;
  socket: Socket;
}

export interface Backend {
  readonly port: number;
  readonly address: string;
  readonly connections: RecordedConnection[];
  /** Resolves when the n-th connection (1-based) has arrived. */
  connection(n: number): Promise<RecordedConnection>;
  close(): Promise<void>;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export async function listenServer(server: Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/**
 * A raw TCP backend that records every byte and calls `onConnection` to answer (default: echo the tag
 * once the client half-closes, then close).
 */
export async function startBackend(
  tag: string,
  onConnection?: (socket: Socket, rec: RecordedConnection) => void,
): Promise<Backend> {
  return startBackendAt(tag, { host: '127.0.0.1' }, onConnection);
}

/** A loopback port that was free a moment ago (for configs and programs that must name a port up front). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listenServer(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A relay that records both directions of every connection and forwards to `target` unchanged: put one
 * in front of a real server (openssl s_server, node tls) to see the exact bytes it received.
 */
export interface Tap {
  readonly port: number;
  readonly sessions: { up: Buffer[]; down: Buffer[]; closed: Promise<void> }[];
  close(): Promise<void>;
}

export async function startTap(targetPort: number, targetHost = '127.0.0.1'): Promise<Tap> {
  const sessions: Tap['sessions'] = [];
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    let done!: () => void;
    const s = { up: [] as Buffer[], down: [] as Buffer[], closed: new Promise<void>((r) => (done = r)) };
    sessions.push(s);
    const upstream = net.connect({ host: targetHost, port: targetPort, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (c: Buffer) => s.up.push(c));
    upstream.on('data', (c: Buffer) => s.down.push(c));
    client.pipe(upstream);
    upstream.pipe(client);
    let open = 2;
    const closed = (): void => {
      if (--open === 0) done();
    };
    client.on('close', closed);
    upstream.on('close', closed);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  const port = await listenServer(server);
  return {
    port,
    sessions,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Connects, writes `data` (in `chunks` pieces when given), half-closes, and collects the answer. */
export async function exchange(
  port: number,
  data: Buffer,
  opts: { chunkSize?: number; halfClose?: boolean; host?: string } = {},
): Promise<{ answer: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true, noDelay: true });
    const answer: Buffer[] = [];
    let error: string | undefined;
    sock.on('data', (c: Buffer) => answer.push(c));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    sock.on('close', () => resolve(error === undefined ? { answer: Buffer.concat(answer) } : { answer: Buffer.concat(answer), error }));
    sock.on('connect', async () => {
      const size = opts.chunkSize ?? data.length;
      for (let i = 0; i < data.length; i += size) {
        const ok = sock.write(data.subarray(i, i + size));
        // One write per event-loop turn so each chunk becomes its own segment on loopback.
        if (opts.chunkSize !== undefined) await new Promise((r) => setImmediate(r));
        if (!ok) await new Promise((r) => sock.once('drain', r));
      }
      if (opts.halfClose ?? true) sock.end();
    });
  });
}

/** Where a recording backend listens: an IP address (e.g. "::1") or a Unix socket path. */
export type BackendPlace = { readonly host: string } | { readonly path: string };

/**
 * `startBackend` on another kind of address: `address` is what a pool's `servers` entry names
 * (`[::1]:PORT`, `unix:/path`). A Unix socket file left by an earlier run is removed first.
 */
export async function startBackendAt(
  tag: string,
  place: BackendPlace,
  onConnection?: (socket: Socket, rec: RecordedConnection) => void,
): Promise<Backend> {
  const connections: RecordedConnection[] = [];
  const waiting = new Map<number, (c: RecordedConnection) => void>();
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    let done!: () => void;
    const rec: RecordedConnection = { received: [], ended: false, closed: new Promise((r) => (done = r)), socket };
    socket.on('data', (c: Buffer) => rec.received.push(c));
    socket.on('end', () => {
      rec.ended = true;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      done();
    });
    connections.push(rec);
    waiting.get(connections.length)?.(rec);
    if (onConnection !== undefined) onConnection(socket, rec);
    else socket.on('end', () => socket.end(`${tag}\n`));
    socket.on('end', () => {
      if (!socket.writableEnded) socket.end();
    });
  });
  let port = 0;
  let address: string;
  if ('path' in place) {
    rmSync(place.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(place.path, () => resolve());
    });
    address = `unix:${place.path}`;
  } else {
    port = await listenServer(server, place.host);
    address = place.host.includes(':') ? `[${place.host}]:${port}` : `${place.host}:${port}`;
  }
  return {
    port,
    address,
    connections,
    connection(n: number): Promise<RecordedConnection> {
      const have = connections[n - 1];
      if (have !== undefined) return Promise.resolve(have);
      return new Promise((resolve) => waiting.set(n, resolve));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** True when this host can listen on `host` (e.g. "::1" is missing where IPv6 is disabled). */
export async function canListenOn(host: string): Promise<boolean> {
  const server = net.createServer();
  try {
    await listenServer(server, host);
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

/**
 * A loopback port whose SYNs go unanswered, so a connect to it neither succeeds nor fails until the
 * caller's own timeout. A python3 socket `listen(0)`s and never accepts; one filler connection fills
 * its accept queue, and Linux then drops further SYNs (tcp_conn_request: accept queue full → drop).
 * The script proves it by timing out a probe connect before it prints the port. Needs python3.
 */
export interface Blackhole {
  readonly port: number;
  readonly address: string;
  close(): Promise<void>;
}

const BLACKHOLE_PY = `
import socket, sys
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)
port = l.getsockname()[1]
fillers = []
while True:
    s = socket.socket(); s.settimeout(0.2)
    try:
        s.connect(('127.0.0.1', port)); fillers.append(s)
    except socket.timeout:
        s.close(); break
    if len(fillers) > 64: sys.exit('accept queue never filled')
print(port, flush=True)
sys.stdin.read()
`;

export async function startBlackhole(): Promise<Blackhole> {
  const child = spawn('python3', ['-c', BLACKHOLE_PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`blackhole script exited with ${code} before printing its port`)));
    child.once('error', reject);
  });
  return {
    port,
    address: `127.0.0.1:${port}`,
    close: async () => {
      // EOF on stdin ends the script; its sockets close with it.
      child.stdin.end();
      await exited;
    },
  };
}
