// Fallback backends when nginx is not installed: the same two servers as bench/backends.ts describes
// (`/` ~100 bytes, `/1m` 1 MiB, an `x-backend` header naming the server), in Node.
//
//   node dist/bench/node-backend.js HTTP_PORT HTTPS_PORT CERT.pem KEY.pem
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { bodyFor, MIB } from './backend-content.js';

const [httpPort, httpsPort, certFile, keyFile] = process.argv.slice(2);
const big = Buffer.alloc(MIB, 0x61);

function handler(name: 'http' | 'https') {
  const small = bodyFor(name);
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.setHeader('x-backend', name);
    res.setHeader('content-type', 'application/octet-stream');
    if (req.url === '/1m') res.end(big);
    else if (req.url === '/') res.end(small);
    else {
      res.statusCode = 404;
      res.end();
    }
  };
}

const plain = http.createServer({ keepAliveTimeout: 300_000 }, handler('http'));
const secure = https.createServer(
  { cert: readFileSync(certFile!), key: readFileSync(keyFile!), keepAliveTimeout: 300_000 },
  handler('https'),
);
plain.listen(Number(httpPort), '127.0.0.1');
secure.listen(Number(httpsPort), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
