// A real HTTP/1.1 server that answers every request with its tag and records the Host it saw, for tests
// where real clients (curl, node http with keep-alive) go through twinport to it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpBackend {
  readonly port: number;
  readonly address: string;
  /** Host header of every request received, in order. */
  readonly hosts: string[];
  close(): Promise<void>;
}

/** `bodyBytes` > 0: `GET /big` answers that many bytes (a long download when the client reads slowly). */
export async function startHttpBackend(tag: string, bodyBytes = 0): Promise<HttpBackend> {
  const hosts: string[] = [];
  const server = http.createServer((req, res) => {
    hosts.push(req.headers.host ?? '');
    if (req.url === '/big' && bodyBytes > 0) {
      res.writeHead(200, { 'content-length': String(bodyBytes), 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = bodyBytes;
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    res.end(`${tag}\n`);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    hosts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
