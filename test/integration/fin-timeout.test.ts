// timeouts.client_fin / server_fin (HAProxy's timeout client-fin / server-fin): once one side has sent
// its FIN, the half-closed pair is closed with reason fin-timeout after that long, whatever idle says.
import test from 'ava';
import net, { type AddressInfo } from 'node:net';
import { startProxy } from '../helpers/proxy-harness.js';

/** A server that never sends its FIN: it answers once and then keeps its half open. */
async function halfOpenServer(finAfterAnswer: boolean): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => {
      if (finAfterAnswer) s.end('answer\n');
      else s.write('answer\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

for (const side of ['client', 'server'] as const) {
  test(`${side}_fin: after the ${side}'s FIN the half-closed pair is closed with reason fin-timeout`, async (t) => {
    const backend = await halfOpenServer(side === 'server');
    const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { idle: 1h, ${side}_fin: 150ms }
    routes: [{ match: {}, to: app }]
pools:
  app: { servers: ["${backend.address}"] }
`);
    t.teardown(async () => {
      await proxy.stop();
      await backend.close();
    });
    const client = net.connect({ host: '127.0.0.1', port: proxy.port(), allowHalfOpen: true });
    client.on('error', () => {});
    await new Promise((r) => client.once('connect', r));
    client.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    const answer = await new Promise<Buffer>((r) => client.once('data', r));
    t.is(answer.toString(), 'answer\n');
    // The client half-closes (client_fin) or keeps its half open after the server's FIN (server_fin).
    if (side === 'client') client.end();
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'fin-timeout');
    t.is(line['detail'], `${side}_fin`);
    client.destroy();
  });
}
