// Both engines' Endpoint (docs/io-engine.md) against real sockets: what the connection relies on —
// reads that stop when the sink says so, backpressure and drain, FIN after every queued byte, the
// handle closing once FIN went both ways, resets, refused connects — with identical results.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { CLIENT, CHUNKS, SERVER, type Endpoint, type EndpointSink, type Side } from '../../src/io/endpoint.js';
import { errnoError } from '../../src/io/handle-endpoint.js';
import { chooseIoEngine, connectEndpoint, resolveIoEngine, type IoEngine } from '../../src/io/io-engine.js';
import { LIBUV } from '../../src/io/libuv.js';
import { listenServer, sha256 } from '../helpers/proxy-harness.js';

const ENGINES: IoEngine[] = ['libuv', 'streams'];
// (`native` uses the libuv endpoints until a pair is connected: test/integration/native.test.ts covers its splice.)

/** Records every event; `accept` decides what onRead answers. */
class RecordingSink implements EndpointSink {
  readonly chunks: Buffer[] = [];
  readonly events: string[] = [];
  reads = 0;
  accept = true;
  error: NodeJS.ErrnoException | undefined;
  private waiters: { what: string; resolve: () => void }[] = [];

  onRead(side: Side, n: number, buf: Buffer, owned: boolean): boolean {
    this.reads++;
    // Unowned bytes are only valid during the call: copy, as the connection does.
    this.chunks.push(owned ? buf.subarray(0, n) : Buffer.from(buf.subarray(0, n)));
    this.note(`read:${side}`);
    return this.accept;
  }
  onEnd(side: Side): void {
    this.note(`end:${side}`);
  }
  onError(side: Side, err: NodeJS.ErrnoException): void {
    this.error = err;
    this.note(`error:${side}`);
  }
  onClose(side: Side): void {
    this.note(`close:${side}`);
  }
  onDrain(side: Side): void {
    this.note(`drain:${side}`);
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  private note(what: string): void {
    this.events.push(what);
    this.waiters = this.waiters.filter((w) => (w.what === what ? (w.resolve(), false) : true));
  }
  until(what: string): Promise<void> {
    if (this.events.includes(what)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ what, resolve }));
  }
}

async function serverWithPeer(): Promise<{ port: number; peer: Promise<Socket>; close: () => void }> {
  let got!: (s: Socket) => void;
  const peer = new Promise<Socket>((r) => (got = r));
  const server = net.createServer({ allowHalfOpen: true }, (s) => got(s));
  const port = await listenServer(server);
  return { port, peer, close: () => server.close() };
}

function connect(engine: IoEngine, port: number): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    const ep = connectEndpoint(engine, { text: `127.0.0.1:${port}`, host: '127.0.0.1', port }, (err) => (err === undefined ? resolve(ep) : reject(err)));
  });
}

function readAll(s: Socket): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (b: Buffer) => parts.push(b));
    s.on('end', () => resolve({ data: Buffer.concat(parts), ended: true }));
  });
}

const engineTest = (title: string, fn: (t: ExecutionContext, engine: IoEngine) => Promise<void>): void => {
  for (const engine of ENGINES) test(`${engine}: ${title}`, (t) => fn(t, engine));
};

const NO_NATIVE = { engine: undefined, why: 'addon not built (test)' };

test('the libuv engine is available on this Node, so auto picks it when the native addon is not there', (t) => {
  t.not(LIBUV, undefined, `Node ${process.version} lacks a piece src/io/libuv.ts checks for`);
  t.is(resolveIoEngine('auto', true, NO_NATIVE), 'libuv');
  t.is(resolveIoEngine('libuv'), 'libuv');
  t.is(resolveIoEngine('streams'), 'streams');
  t.regex(chooseIoEngine('auto', true, NO_NATIVE).why, /native unavailable, addon not built \(test\)/);
});

test('without the handles or the addon, auto falls back to streams; an explicit libuv or native is a startup error', (t) => {
  t.is(resolveIoEngine('auto', false, NO_NATIVE), 'streams');
  t.is(resolveIoEngine('streams', false, NO_NATIVE), 'streams');
  const err = t.throws(() => resolveIoEngine('libuv', false, NO_NATIVE));
  t.is((err as { code?: string }).code, 'TWP_ERR_IO_ENGINE');
  const native = t.throws(() => resolveIoEngine('native', true, NO_NATIVE));
  t.is((native as { code?: string }).code, 'TWP_ERR_IO_ENGINE');
  t.regex(native!.message, /addon not built \(test\)/);
});

test('libuv status codes become errors with the errno name', (t) => {
  const err = errnoError(-104, 'read');
  t.is(err.code, 'ECONNRESET');
  t.is(err.syscall, 'read');
  t.is(err.errno, -104);
});

engineTest('a refused connect reports ECONNREFUSED on a later tick, never synchronously', async (t, engine) => {
  const probe = net.createServer();
  const port = await listenServer(probe);
  await new Promise<void>((r) => probe.close(() => r()));
  let sync = true;
  const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    connectEndpoint(engine, { text: `127.0.0.1:${port}`, host: '127.0.0.1', port }, resolve);
    sync = false;
  });
  t.false(sync);
  t.is(err?.code, 'ECONNREFUSED');
});

engineTest('4 MiB written into a peer that does not read: write() says stop, drain follows once it reads, FIN comes after the last byte', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  const sink = new RecordingSink();
  ep.attach(sink, SERVER);
  ep.resume();
  const peer = await srv.peer;
  peer.pause();
  const data = randomBytes(4 * 1024 * 1024);
  let refused = -1;
  for (let off = 0, i = 0; off < data.length; off += 64 * 1024, i++) {
    if (!ep.write(data.subarray(off, off + 64 * 1024)) && refused < 0) refused = i;
  }
  t.true(refused >= 0, 'write() never reported backpressure');
  const received = readAll(peer);
  peer.resume();
  await sink.until(`drain:${SERVER}`);
  ep.end();
  const got = await received;
  t.is(sha256(got.data), sha256(data));
  t.true(got.ended);
  t.is(ep.bytesWritten, data.length);
  // Our FIN is out; the handle closes once the peer's FIN arrives too (half-close, then auto-close).
  t.false(sink.events.includes(`close:${SERVER}`));
  peer.end();
  await sink.until(`close:${SERVER}`);
  t.deepEqual(
    sink.events.filter((e) => !e.startsWith('read')),
    [`drain:${SERVER}`, `end:${SERVER}`, `close:${SERVER}`],
  );
  t.true(ep.destroyed);
  srv.close();
});

engineTest('returning false from onRead stops reading until resume(), and nothing is lost', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  const sink = new RecordingSink();
  sink.accept = false;
  ep.attach(sink, CLIENT);
  ep.resume();
  const peer = await srv.peer;
  const data = randomBytes(2 * 1024 * 1024);
  peer.end(data);
  await sink.until(`read:${CLIENT}`);
  await new Promise((r) => setTimeout(r, 100));
  t.is(sink.reads, 1, 'read on after onRead returned false');
  sink.accept = true;
  ep.resume();
  await sink.until(`end:${CLIENT}`);
  t.is(sha256(sink.bytes), sha256(data));
  t.is(ep.bytesRead, data.length);
  t.true(ep.readEnded);
  ep.destroy();
  await sink.until(`close:${CLIENT}`);
  srv.close();
});

engineTest('reset() sends a RST: the peer sees ECONNRESET', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  const sink = new RecordingSink();
  ep.attach(sink, SERVER);
  const peer = await srv.peer;
  const code = new Promise<string | undefined>((resolve) => {
    peer.on('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    peer.on('close', () => resolve(undefined));
  });
  peer.resume();
  ep.reset();
  t.is(await code, 'ECONNRESET');
  await sink.until(`close:${SERVER}`);
  t.deepEqual(sink.events, [`close:${SERVER}`]);
  srv.close();
});

engineTest('a peer that resets mid-read is one error then one close', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  const sink = new RecordingSink();
  ep.attach(sink, SERVER);
  ep.resume();
  const peer = await srv.peer;
  peer.write('some bytes');
  await sink.until(`read:${SERVER}`);
  peer.resetAndDestroy();
  await sink.until(`close:${SERVER}`);
  t.is(sink.error?.code, 'ECONNRESET');
  t.deepEqual(
    sink.events.filter((e) => !e.startsWith('read')),
    [`error:${SERVER}`, `close:${SERVER}`],
  );
  t.is(sink.bytes.toString(), 'some bytes');
  srv.close();
});

engineTest('remote() and local() name both ends of the connection', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  const peer = await srv.peer;
  t.deepEqual(ep.remote(), { address: '127.0.0.1', port: srv.port });
  t.deepEqual(ep.local(), { address: '127.0.0.1', port: peer.remotePort });
  ep.destroy();
  srv.close();
});

engineTest('a pooled buffer goes back to CHUNKS once its write completed', async (t, engine) => {
  const srv = await serverWithPeer();
  const ep = await connect(engine, srv.port);
  ep.attach(new RecordingSink(), SERVER);
  const peer = await srv.peer;
  const received = readAll(peer);
  const pooled = CHUNKS.take();
  pooled.fill(7);
  const before = CHUNKS.available;
  ep.write(pooled.subarray(0, 50_000), pooled);
  ep.end();
  const got = await received;
  await new Promise((r) => setImmediate(r));
  t.is(got.data.length, 50_000);
  t.true(got.data.every((b) => b === 7));
  t.is(CHUNKS.available, before + 1);
  ep.destroy();
  srv.close();
});
