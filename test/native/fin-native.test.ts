// timeouts.client_fin / server_fin on the `native` engine (docs/native.md): the addon carries such pairs
// and bounds a half-closed pair itself. Each case runs on `native` and on `libuv` (the JavaScript splice)
// with the same expectations, so the C timer keeps the JavaScript one's semantics: the first FIN whose
// side has a bound starts it, bytes that flow afterwards do not move it (they do keep `idle` away), a
// shorter `idle` still ends a quiet half-closed pair first, and the other side's FIN starts nothing.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net, { type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { NATIVE } from '../../src/io/native.js';
import { startProxy } from '../helpers/proxy-harness.js';

const engine = NATIVE.engine;

function nativeTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (engine !== undefined) test.serial(title, fn);
  else if (process.env['CI'] === 'true') test(title, (t) => t.fail(`native engine unavailable under CI: ${NATIVE.why}`));
  else test.skip(`${title} — needs the native addon (apt-get install -y g++ make python3, then npm install): ${NATIVE.why}`, () => {});
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const openFds = (): number => readdirSync('/proc/self/fd').length;

/**
 * A backend that keeps its half open after the client's FIN and hands its sockets to the test. On a Unix
 * socket the engine connects in JavaScript and takes the pair by its descriptors (`start`); on TCP the
 * addon connects and pairs its own sockets (`adopt`): both carry the bounds.
 */
async function halfOpenBackend(unix: boolean): Promise<{ address: string; next(): Promise<Socket>; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => {});
    const w = waiting.shift();
    if (w !== undefined) w(s);
    else sockets.push(s);
  });
  const dir = unix ? mkdtempSync(join(tmpdir(), 'twp-fin-')) : undefined;
  if (dir !== undefined) await new Promise<void>((r) => server.listen(join(dir, 'backend.sock'), () => r()));
  else await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    address: dir !== undefined ? `unix:${join(dir, 'backend.sock')}` : `127.0.0.1:${(server.address() as AddressInfo).port}`,
    next: () => {
      const s = sockets.shift();
      return s !== undefined ? Promise.resolve(s) : new Promise((r) => waiting.push(r));
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
          r();
        });
      }),
  };
}

type Side = 'client' | 'server';

interface FinCase {
  readonly name: string;
  /** Whose FIN comes first. */
  readonly first: Side;
  readonly idle: number;
  readonly clientFin?: number;
  readonly serverFin?: number;
  /** After the first FIN: the other side writes every 40 ms, stays quiet, or sends its FIN after `wait`. */
  readonly after: 'traffic' | 'quiet' | 'other-fin';
  /** The client sends its request and its FIN at once, so the FIN is read before the hand-over. */
  readonly finBeforeHandOver?: boolean;
  /** The server is on a Unix socket (the descriptor hand-over, not the addon's own connect). */
  readonly unixServer?: boolean;
  readonly expect: { readonly reason: string; readonly detail?: string; readonly atLeast: number; readonly atMost: number };
}

const other = (s: Side): Side => (s === 'client' ? 'server' : 'client');
const HEAD = Buffer.from('POST /fin HTTP/1.1\r\nHost: fin.example\r\n\r\n');
// A loaded machine (the sanitizer pass, two other test runs) delays a timer's callback, never advances it.
const LATE = 800;
const WAIT = 900;

const CASES: FinCase[] = [
  ...(['client', 'server'] as const).map(
    (first): FinCase => ({
      // The other side's bound is shorter: the first FIN decides, and bytes after it do not move the bound.
      name: `${first}'s FIN, then bytes keep flowing the other way: ${first}_fin ends the pair, not idle`,
      first,
      idle: 500,
      ...(first === 'client' ? { clientFin: 900, serverFin: 300 } : { clientFin: 300, serverFin: 900 }),
      after: 'traffic',
      expect: { reason: 'fin-timeout', detail: `${first}_fin`, atLeast: 900, atMost: 900 + LATE },
    }),
  ),
  ...(['client', 'server'] as const).map(
    (first): FinCase => ({
      name: `${first}'s FIN, then nothing moves: a shorter idle still ends the pair first`,
      first,
      idle: 300,
      ...(first === 'client' ? { clientFin: 3000 } : { serverFin: 3000 }),
      after: 'quiet',
      // The idle clock started at the last byte (the request), before the FIN.
      expect: { reason: 'idle-timeout', atLeast: 0, atMost: 300 + 300 / 8 + LATE },
    }),
  ),
  ...(['client', 'server'] as const).map(
    (first): FinCase => ({
      name: `${first}'s FIN does not start ${other(first)}_fin: the pair outlives it, and ends done at the second FIN`,
      first,
      idle: 30_000,
      ...(first === 'client' ? { serverFin: 300 } : { clientFin: 300 }),
      after: 'other-fin',
      expect: { reason: 'done', atLeast: WAIT, atMost: WAIT + LATE },
    }),
  ),
  {
    name: 'a FIN read with the request, before the hand-over, starts client_fin at the splice',
    first: 'client',
    idle: 30_000,
    clientFin: 600,
    after: 'quiet',
    finBeforeHandOver: true,
    expect: { reason: 'fin-timeout', detail: 'client_fin', atLeast: 600, atMost: 600 + LATE },
  },
  ...(['client', 'server'] as const).map(
    (first): FinCase => ({
      name: `a server on a Unix socket (the pair handed over by descriptors): ${first}_fin ends it while bytes flow`,
      first,
      idle: 500,
      ...(first === 'client' ? { clientFin: 700 } : { serverFin: 700 }),
      after: 'traffic',
      unixServer: true,
      expect: { reason: 'fin-timeout', detail: `${first}_fin`, atLeast: 700, atMost: 700 + LATE },
    }),
  ),
];

async function runCase(t: ExecutionContext, engineName: 'native' | 'libuv', c: FinCase): Promise<void> {
  const label = `[${engineName}] ${c.name}`;
  const backend = await halfOpenBackend(c.unixServer === true);
  const bounds = [c.clientFin === undefined ? '' : `, client_fin: ${c.clientFin}ms`, c.serverFin === undefined ? '' : `, server_fin: ${c.serverFin}ms`].join('');
  const proxy = await startProxy(`
io_engine: ${engineName}
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 5s, connect: 5s, idle: ${c.idle}ms${bounds} }
    routes: [{ match: { protocol: http }, to: app }]
pools:
  app: { servers: ["${backend.address}"] }
`);
  const liveBefore = engine!.live();
  let ticker: NodeJS.Timeout | undefined;
  try {
    const client = net.connect({ host: '127.0.0.1', port: proxy.port(), allowHalfOpen: true, noDelay: true });
    client.on('error', () => {});
    await new Promise((r) => client.once('connect', r));
    const sock = { client, server: undefined as unknown as Socket };
    const got = { client: [] as Buffer[], server: [] as Buffer[] };
    const ended = { client: false, server: false };
    client.on('data', (b: Buffer) => got.client.push(b));
    client.on('end', () => (ended.client = true));
    let t0: number;
    if (c.finBeforeHandOver === true) {
      client.end(HEAD);
      t0 = performance.now();
    } else client.write(HEAD);
    const server = await backend.next();
    sock.server = server;
    server.on('data', (b: Buffer) => got.server.push(b));
    server.on('end', () => (ended.server = true));
    while (Buffer.concat(got.server).length < HEAD.length) await sleep(5);
    t.is(engine!.live() - liveBefore, engineName === 'native' ? 1 : 0, `${label}: carried by the addon only on native`);

    if (c.finBeforeHandOver !== true) {
      sock[c.first].end();
      t0 = performance.now();
    }
    const reader = other(c.first);
    if (c.after === 'traffic') ticker = setInterval(() => sock[reader].write('t'), 40);
    if (c.after === 'other-fin') {
      await sleep(WAIT);
      t.is(proxy.logs.closes().length, 0, `${label}: still open ${WAIT} ms after the ${c.first}'s FIN`);
      t.is(engine!.live() - liveBefore, engineName === 'native' ? 1 : 0, `${label}: still in the addon`);
      sock[reader].end();
    }
    // Bounded: a bound that bytes kept pushing back would otherwise wait for ava's timeout.
    const line = await Promise.race([proxy.logs.waitForClose(), sleep(c.expect.atMost + 3000).then(() => undefined)]);
    const elapsed = performance.now() - t0!;
    if (line === undefined) {
      t.fail(`${label}: no close line ${(c.expect.atMost + 3000).toFixed(0)} ms after the FIN`);
      return;
    }
    if (ticker !== undefined) clearInterval(ticker);
    t.is(line['reason'], c.expect.reason, label);
    t.is(line['detail'], c.expect.detail, label);
    // Node's timers and the addon's both run on the loop's clock (whole milliseconds): a few ms of slack.
    t.true(elapsed >= c.expect.atLeast - 5 && elapsed <= c.expect.atMost, `${label}: ended ${elapsed.toFixed(0)} ms after the FIN, expected ${c.expect.atLeast}..${c.expect.atMost}`);
    // The FIN was passed on, and the open direction kept forwarding until the end.
    await sleep(50);
    t.true(ended[reader], `${label}: the ${reader} saw the ${c.first}'s FIN`);
    if (c.after === 'traffic') {
      const n = Buffer.concat(got[c.first]).length;
      t.true(n >= 10, `${label}: ${n} bytes reached the ${c.first} after its FIN`);
    }
    client.destroy();
    server.destroy();
    const deadline = Date.now() + 5000;
    while (engine!.live() !== liveBefore && Date.now() < deadline) await sleep(10);
    t.is(engine!.live(), liveBefore, `${label}: the pair left the addon`);
    t.is(proxy.logs.closes().length, 1, `${label}: one close line`);
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    await proxy.stop();
    await backend.close();
  }
}

for (const c of CASES) {
  nativeTest(`FIN bounds, native and JavaScript splice alike: ${c.name}`, async (t) => {
    const fdsBefore = openFds();
    await runCase(t, 'native', c);
    await runCase(t, 'libuv', c);
    const deadline = Date.now() + 5000;
    while (openFds() > fdsBefore && Date.now() < deadline) await sleep(20);
    t.true(openFds() <= fdsBefore, `descriptors: ${openFds()} now, ${fdsBefore} before`);
  });
}
