// Bounded client load for the lifecycle tests: new HTTP and TLS connections, one request each, as fast as
// `concurrency` allows until told to stop (or a cap is reached), and slow long downloads. Every attempt
// ends as ok or as a failure with its reason (refused, reset, timeout, wrong answer), so a test can
// assert that none failed.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';

export interface LoadResult {
  attempted: number;
  ok: number;
  http: number;
  tls: number;
  failures: string[];
}

export interface LoadRun {
  readonly result: LoadResult;
  stop(): Promise<LoadResult>;
}

export interface TlsBackend {
  readonly port: number;
  readonly address: string;
  close(): Promise<void>;
}

/** A TLS server (self-signed "localhost") that answers each connection's first bytes with its tag. */
export async function startTlsBackend(tag: string): Promise<TlsBackend> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ key: pems.private, cert: pems.cert }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.once('data', () => s.end(`${tag}\n`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function once(port: number, kind: 'http' | 'tls', expect: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let got = '';
    let done = false;
    const finish = (failure: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(failure);
    };
    const s: net.Socket =
      kind === 'http'
        ? net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: load.test\r\nConnection: close\r\n\r\n'))
        : tls.connect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false }, () => s.write('ping\n'));
    const timer = setTimeout(() => finish(`${kind} timeout`), timeoutMs);
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    s.on('error', (e) => finish(`${kind} ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    s.on('close', () => finish(got.includes(expect) ? undefined : `${kind} answer ${JSON.stringify(got.slice(0, 80))}`));
  });
}

/**
 * `concurrency` loops, alternating HTTP and TLS, each opening a new connection as soon as the previous
 * one ended; stops at stop() or after `maxAttempts` / `maxMs`.
 */
export function startLoad(opts: { port: number; expect: { http: string; tls: string }; concurrency: number; maxAttempts: number; maxMs: number }): LoadRun {
  const result: LoadResult = { attempted: 0, ok: 0, http: 0, tls: 0, failures: [] };
  let stopped = false;
  const deadline = Date.now() + opts.maxMs;
  const loop = async (i: number): Promise<void> => {
    let n = i;
    while (!stopped && result.attempted < opts.maxAttempts && Date.now() < deadline) {
      const kind = n++ % 2 === 0 ? 'http' : 'tls';
      result.attempted++;
      const failure = await once(opts.port, kind, opts.expect[kind], 10_000);
      if (failure === undefined) {
        result.ok++;
        result[kind]++;
      } else result.failures.push(failure);
    }
  };
  const loops = Promise.all(Array.from({ length: opts.concurrency }, (_, i) => loop(i)));
  return {
    result,
    stop: async () => {
      stopped = true;
      await loops;
      return result;
    },
  };
}

/**
 * A download of `bytes` read slowly (a pause after each `chunk` read), so that it stays in flight for
 * seconds; resolves with the bytes received, or a failure.
 */
export function slowDownload(port: number, bytes: number, pauseMs: number): Promise<{ received: number; intact: boolean; failure?: string; endedAt: number }> {
  return new Promise((resolve) => {
    let head = '';
    let body = 0;
    let intact = true;
    let inBody = false;
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /big HTTP/1.1\r\nHost: load.test\r\nConnection: close\r\n\r\n'));
    s.on('data', (c: Buffer) => {
      let data = c;
      if (!inBody) {
        head += c.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        inBody = true;
        data = Buffer.from(head.slice(end + 4), 'latin1');
      }
      body += data.length;
      if (intact && data.some((b) => b !== 0x61)) intact = false;
      s.pause();
      setTimeout(() => s.resume(), pauseMs);
    });
    s.on('error', (e) => resolve({ received: body, intact, failure: (e as NodeJS.ErrnoException).code ?? e.message, endedAt: performance.now() }));
    s.on('close', () => resolve({ received: body, intact: intact && body === bytes, endedAt: performance.now() }));
  });
}

/** Whether `pid` has exited (a zombie whose parent is gone counts as exited). */
export function exitedPid(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
