// Backends that fail in each way a network lets them — refused, silent (SYNs dropped), reset mid-stream
// — and clients that reset: each connection ends with its documented reason (docs/reasons.md), the
// other side is closed too, no byte goes anywhere it should not, and twinport holds no connection after.
import test, { type ExecutionContext } from 'ava';
import net, { type Socket } from 'node:net';
import {
  exchange,
  listenServer,
  startBackend,
  startBlackhole,
  startProxy,
  type LogLine,
  type RunningProxy,
} from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const TIMEOUTS = 'timeouts: { peek: 300ms, connect: 300ms, idle: 5s }';

/** One listener routing every HTTP/1 request to pool `web`. */
function config(servers: string[], timeouts = TIMEOUTS): string {
  return `
listeners:
  - name: main
    bind: "127.0.0.1:0"
    ${timeouts}
    routes:
      - match: { protocol: http }
        to: web
pools:
  web:
    servers: [${servers.map((s) => `"${s}"`).join(', ')}]
`;
}

/** A port nothing listens on: bound by the OS, then released. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listenServer(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const request = (path: string): Buffer => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: faults.example\r\n\r\n`);

/** A client socket whose received bytes, error code and close are recorded. */
interface Client {
  readonly socket: Socket;
  readonly received: Buffer[];
  error: string | undefined;
  readonly closed: Promise<void>;
}

async function connectClient(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<Client> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? true, noDelay: true });
  let done!: () => void;
  const c: Client = { socket, received: [], error: undefined, closed: new Promise((r) => (done = r)) };
  socket.on('data', (b: Buffer) => c.received.push(b));
  socket.on('error', (e: NodeJS.ErrnoException) => {
    c.error = e.code ?? e.message;
  });
  socket.on('close', () => done());
  await new Promise((r) => socket.once('connect', r));
  return c;
}

const clientName = (s: Socket): string => `${s.localAddress}:${s.localPort}`;

/** Every connection closed, and the runtime's table of live connections is empty. */
function assertDrained(t: ExecutionContext, proxy: RunningProxy): void {
  t.is(proxy.runtime.activeConnections, 0);
}

test('refused: a closed port → connect-failed, the client is closed without a byte, the next client is served', async (t) => {
  const dead = await closedPort();
  const live = await startBackend('live');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    ${TIMEOUTS}
    routes:
      - match: { host: dead.example }
        to: dead
      - match: { protocol: http }
        to: web
pools:
  dead: { servers: ["127.0.0.1:${dead}"] }
  web: { servers: ["${live.address}"] }
`);
  try {
    const got = await exchange(proxy.port(), Buffer.from('GET / HTTP/1.1\r\nHost: dead.example\r\n\r\n'));
    t.is(got.answer.length, 0, 'nothing came back from a server that never accepted');
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'connect-failed');
    t.is(line['pool'], 'dead');
    t.is(line['server'], `127.0.0.1:${dead}`);
    t.is(line['bytesOut'], 0);
    t.is(live.connections.length, 0, 'the failed request was not rerouted to another pool');
    // The failure is the dead pool's alone: the next client on the same listener is served.
    const ok = await exchange(proxy.port(), request('/after'));
    t.is(ok.answer.toString(), 'live\n');
    const rec = await live.connection(1);
    await rec.closed;
    t.is(Buffer.concat(rec.received).toString(), request('/after').toString());
    t.is((await proxy.logs.waitForClose((l) => l['pool'] === 'web'))['reason'], 'done');
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await live.close();
  }
});

testWithTools({ python3: 'python3' }, 'blackhole: SYNs dropped → connect-timeout after timeouts.connect, the client is closed', async (t) => {
  const hole = await startBlackhole();
  const proxy = await startProxy(config([hole.address], 'timeouts: { peek: 300ms, connect: 200ms, idle: 5s }'));
  try {
    const got = await exchange(proxy.port(), request('/void'));
    t.is(got.answer.length, 0);
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'connect-timeout');
    t.is(line['server'], hole.address);
    t.is(line['bytesOut'], 0);
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await hole.close();
  }
});

test('server resets mid-stream → server-reset; the client got the bytes sent before, then a reset', async (t) => {
  let clientHasPartial!: () => void;
  const partialSeen = new Promise<void>((r) => (clientHasPartial = r));
  const backend = await startBackend('reset', (socket) => {
    socket.once('data', async () => {
      socket.write('partial answer');
      // Reset only once the client holds the bytes, so the assertion below is about the reset, not
      // about whether an RST overtook data still in flight.
      await partialSeen;
      socket.resetAndDestroy();
    });
  });
  const proxy = await startProxy(config([backend.address]));
  try {
    const c = await connectClient(proxy.port());
    c.socket.on('data', () => {
      if (Buffer.concat(c.received).toString() === 'partial answer') clientHasPartial();
    });
    c.socket.write(request('/reset'));
    await c.closed;
    t.is(Buffer.concat(c.received).toString(), 'partial answer');
    t.is(c.error, 'ECONNRESET', 'the client sees a reset, not a clean end');
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'server-reset');
    t.is(line['detail'], 'ECONNRESET');
    t.is(line['bytesOut'], 'partial answer'.length);
    const rec = await backend.connection(1);
    t.is(Buffer.concat(rec.received).toString(), request('/reset').toString());
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('client resets mid-stream → client-reset; the backend connection ends too', async (t) => {
  const backendErrors: string[] = [];
  const backend = await startBackend('victim', (socket) => {
    socket.on('error', (e: NodeJS.ErrnoException) => backendErrors.push(e.code ?? e.message));
    socket.once('data', () => socket.write('first half'));
  });
  const proxy = await startProxy(config([backend.address]));
  try {
    const c = await connectClient(proxy.port());
    c.socket.write(request('/bye'));
    await new Promise((r) => c.socket.once('data', r));
    c.socket.resetAndDestroy();
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'client-reset');
    t.is(line['detail'], 'ECONNRESET');
    const rec = await backend.connection(1);
    await rec.closed;
    t.is(Buffer.concat(rec.received).toString(), request('/bye').toString());
    // twinport passes the reset on (the backend must not mistake it for a clean end of the request).
    t.deepEqual(backendErrors, ['ECONNRESET']);
    t.false(rec.ended, 'no FIN was forwarded for a reset');
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

/** Which kind of dead server sits in the middle of the pool. */
const deadKinds: { kind: string; tools: Record<string, string>; make: () => Promise<{ address: string; close(): Promise<void> }> }[] = [
  {
    kind: 'refusing',
    tools: {},
    make: async () => {
      const port = await closedPort();
      return { address: `127.0.0.1:${port}`, close: async () => {} };
    },
  },
  { kind: 'blackholed', tools: { python3: 'python3' }, make: startBlackhole },
];

for (const { kind, tools, make } of deadKinds) {
  testWithTools(tools, `retries: one ${kind} server in a pool of three costs no client a failure`, async (t) => {
    const dead = await make();
    const a = await startBackend('a');
    const b = await startBackend('b');
    const proxy = await startProxy(config([a.address, dead.address, b.address], 'timeouts: { peek: 300ms, connect: 150ms, idle: 5s }'));
    try {
      const sent: string[] = [];
      for (let i = 0; i < 20; i++) {
        const body = `GET /n/${i} HTTP/1.1\r\nHost: retry.example\r\n\r\n`;
        sent.push(body);
        const got = await exchange(proxy.port(), Buffer.from(body));
        t.is(got.error, undefined, `client ${i} saw no error`);
        t.regex(got.answer.toString(), /^[ab]\n$/, `client ${i} was answered by a live server`);
      }
      const lines = await Promise.all(sent.map((_, i) => proxy.logs.waitForClose((l) => l['conn'] === i + 1)));
      t.deepEqual(
        lines.map((l) => l['reason']),
        sent.map(() => 'done'),
      );
      for (const l of lines) t.not(l['server'], dead.address, 'a close line names the server that served it');
      // The dead server was tried (round-robin reaches it every third pick) and skipped.
      const failures = proxy.logs.lines.filter((l) => l.msg === 'connect failed' && l['server'] === dead.address);
      t.true(failures.length >= 6, `dead server tried ${failures.length} times`);
      // Every request reached exactly one live server, whole: nothing was lost or sent twice.
      const conns = [...a.connections, ...b.connections];
      await Promise.all(conns.map((c) => c.closed));
      t.deepEqual(conns.map((c) => Buffer.concat(c.received).toString()).sort(), [...sent].sort());
      t.true(a.connections.length > 0 && b.connections.length > 0);
      assertDrained(t, proxy);
    } finally {
      await proxy.stop();
      await a.close();
      await b.close();
      await dead.close();
    }
  });
}

test('timeouts.idle closes an idle spliced pair with idle-timeout while a busy one survives', async (t) => {
  const echo = await startBackend('echo', (socket) => socket.on('data', (c: Buffer) => socket.write(c)));
  const proxy = await startProxy(config([echo.address], 'timeouts: { peek: 300ms, connect: 300ms, idle: 200ms }'));
  const ask = (c: Client, text: string): Promise<void> =>
    new Promise((resolve) => {
      const want = Buffer.concat([...c.received, Buffer.from(text)]).toString();
      const check = (): void => {
        if (Buffer.concat(c.received).toString() === want) {
          c.socket.off('data', check);
          resolve();
        }
      };
      c.socket.on('data', check);
      c.socket.write(text);
    });
  try {
    // Not half-open: twinport's FIN closes it, as an ordinary client would close.
    const idle = await connectClient(proxy.port(), { allowHalfOpen: false });
    const busy = await connectClient(proxy.port());
    // Names taken now: a socket forgets its local address once closed.
    const idleName = clientName(idle.socket);
    const busyName = clientName(busy.socket);
    await ask(idle, 'GET /idle HTTP/1.1\r\nHost: idle\r\n\r\n');
    await ask(busy, 'GET /busy HTTP/1.1\r\nHost: busy\r\n\r\n');
    let idleLine: LogLine | undefined;
    void proxy.logs.waitForClose((l) => l['client'] === idleName).then((l) => (idleLine = l));
    // Keep the busy pair talking every 50 ms (a quarter of the idle timeout) until the idle pair is
    // closed, then for more than two idle periods (the idle timer may fire up to one period late).
    let after = 0;
    let pings = 0;
    while (after < 10) {
      if (idleLine !== undefined) after++;
      await ask(busy, `ping ${pings++}\n`);
      await new Promise((r) => setTimeout(r, 50));
      t.true(pings < 200, 'the idle connection was closed in time');
      if (pings >= 200) break;
    }
    await idle.closed;
    t.is(idleLine?.['reason'], 'idle-timeout');
    t.is(idle.error, undefined, 'an idle close is an orderly close');
    t.false(busy.socket.destroyed, 'the busy pair is still open');
    await ask(busy, 'still here\n');
    busy.socket.end();
    await busy.closed;
    const busyLine = await proxy.logs.waitForClose((l) => l['client'] === busyName);
    t.is(busyLine['reason'], 'done');
    t.is(Buffer.concat(busy.received).toString().endsWith('still here\n'), true);
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

test('timeouts.idle fires on time: idle after the last byte, not up to twice that', async (t) => {
  const echo = await startBackend('echo', (socket) => socket.on('data', (c: Buffer) => socket.write(c)));
  const proxy = await startProxy(config([echo.address], 'timeouts: { peek: 300ms, connect: 300ms, idle: 1s }'));
  try {
    const c = await connectClient(proxy.port(), { allowHalfOpen: false });
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    // The last byte: right after the splice began, the worst case for a timer re-armed a whole period.
    c.socket.write('last\n');
    const lastByte = performance.now();
    await c.closed;
    const quiet = performance.now() - lastByte;
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'idle-timeout');
    t.log(`closed ${Math.round(quiet)} ms after the last byte (idle: 1s)`);
    t.true(quiet >= 950, `not early: ${quiet}`);
    t.true(quiet < 1600, `within idle + idle/8 and some scheduling slack, not ~2 s: ${quiet}`);
  } finally {
    await proxy.stop();
    await echo.close();
  }
});

testWithTools({ python3: 'python3' }, 'a client that resets while its server is still connecting → client-reset, the attempt is abandoned', async (t) => {
  const hole = await startBlackhole();
  // A connect timeout far beyond the test: only the client's reset can end this connection.
  const proxy = await startProxy(config([hole.address], 'timeouts: { peek: 300ms, connect: 60s, idle: 5s }'));
  try {
    const c = await connectClient(proxy.port());
    await new Promise<void>((r) => c.socket.write(request('/gone'), () => r()));
    // Let twinport read the request first (loopback delivers within write(2); the next poll phase of
    // this shared event loop reads it). An RST that arrives in the same read as data is reported by
    // libuv as EOF (POLLHUP after a partial read), which would make this a half-close, not a reset.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    c.socket.resetAndDestroy();
    const line = await proxy.logs.waitForClose();
    t.is(line['reason'], 'client-reset');
    t.is(proxy.logs.closes().length, 1);
    assertDrained(t, proxy);
  } finally {
    await proxy.stop();
    await hole.close();
  }
});
