// P1's pool when nginx is not installed: N HTTPS servers in one process, each with its own `ticketKeys`
// (so a ticket names the server that sealed it, as with separate OpenSSL processes), serving `/` like
// the nginx pool: `x-backend: https-<i>`, and `x-resumed: r` or `.` as the server saw the handshake.
//
//   node dist/bench/pools-node-backend.js '{"ports":[…],"keys":[FILE…],"certFile":…,"keyFile":…}'
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { bodyFor } from './backend-content.js';

interface Spec {
  readonly ports: readonly number[];
  readonly keys: readonly string[];
  readonly certFile: string;
  readonly keyFile: string;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const cert = readFileSync(spec.certFile);
const key = readFileSync(spec.keyFile);
const body = bodyFor('https');

spec.ports.forEach((port, i) => {
  const server = https.createServer({ cert, key, ticketKeys: readFileSync(spec.keys[i]!), keepAliveTimeout: 300_000 }, (req, res) => {
    res.setHeader('x-backend', `https-${i}`);
    // nginx's $ssl_session_reused spelling, so the client reads both backends the same way.
    res.setHeader('x-resumed', (req.socket as TLSSocket).isSessionReused() ? 'r' : '.');
    res.setHeader('content-type', 'application/octet-stream');
    if (req.url === '/') res.end(body);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  server.listen(port, '127.0.0.1');
});
process.on('SIGTERM', () => process.exit(0));
