// pools.<name>.on_down: close (HAProxy's on-marked-down shutdown-sessions): when health marks a server
// down, its spliced connections are closed with reason server-down; with the default (keep) they run on.
import test from 'ava';
import net from 'node:net';
import { startBackend, startProxy } from '../helpers/proxy-harness.js';

for (const onDown of ['close', 'keep'] as const) {
  test(`on_down: ${onDown}: a spliced connection to a server that health marks down is ${onDown === 'close' ? 'closed (server-down)' : 'kept'}`, async (t) => {
    const backend = await startBackend('b', (socket) => socket.on('data', (c: Buffer) => socket.write(c)));
    const proxy = await startProxy(`
listeners:
  - { name: main, bind: "127.0.0.1:0", routes: [{ match: {}, to: app }] }
pools:
  app:
    health: { type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 1 }
    on_down: ${onDown}
    servers: ["${backend.address}"]
`);
    t.teardown(async () => {
      await proxy.stop();
      await backend.close();
    });
    const client = net.connect(proxy.port(), '127.0.0.1');
    client.on('error', () => {});
    const closed = new Promise((r) => client.on('close', r));
    await new Promise((r) => client.once('connect', r));
    client.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    await new Promise((r) => client.once('data', r));
    // The server stops accepting (its open connection stays): the next check fails and marks it down.
    const rec = await backend.connection(1);
    await new Promise<void>((r) => {
      // Close the listener only: the recorded connection lives on.
      const server = (rec.socket as unknown as { server: net.Server }).server;
      server.close(() => r());
      setTimeout(r, 50);
    });
    await proxy.logs.waitFor((l) => l.msg === 'health' && l['to'] === 'down');
    if (onDown === 'close') {
      await closed;
      const line = await proxy.logs.waitForClose();
      t.is(line['reason'], 'server-down');
      t.regex(String(line['detail']), /tcp check failed 1 in a row/);
    } else {
      // Still spliced: bytes still make the round trip through the down server's open connection.
      client.write('still here\n');
      const echoed = await new Promise<Buffer>((r) => client.once('data', r));
      t.is(echoed.toString(), 'still here\n');
      t.is(proxy.logs.closes().length, 0);
      client.destroy();
      await proxy.logs.waitForClose();
    }
  });
}
