// The floor: the least a Node protocol multiplexer can do. Route on the first byte (0x16 = a TLS
// handshake record, RFC 8446 §5.1), then pipe() both ways. No parsing, no limits, no timeouts, no logs.
//
//   node dist/bench/naive-proxy.js LISTEN_PORT HTTP_PORT HTTPS_PORT
import net from 'node:net';

const [listen, httpPort, httpsPort] = process.argv.slice(2).map(Number);

net
  .createServer({ noDelay: true }, (client) => {
    client.once('data', (first: Buffer) => {
      const upstream = net.connect({ host: '127.0.0.1', port: first[0] === 0x16 ? httpsPort! : httpPort!, noDelay: true });
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    client.on('error', () => client.destroy());
  })
  .listen(listen, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
