// The `libuv` engine: an Endpoint on one of Node's TCP/Pipe stream handles, driven the way net.Socket
// drives it (lib/net.js), minus the Duplex stream around it. What it keeps of net.Socket's behaviour:
// reads stop when the sink says so; write() reports backpressure at 16 KiB waiting (net's default
// high-water mark) and 'drain' comes when nothing waits; end() sends FIN after queued writes (libuv
// orders uv_shutdown after them); FIN read and FIN sent both → the handle closes (allowHalfOpen, then
// autoDestroy); every error is reported once, then the handle closes. Failures of calls made from
// inside the connection (readStart, write, shutdown) are reported on the next tick, as net.Socket
// does, so the connection never sees an error in the middle of its own call.
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { CHUNKS, CLIENT, NO_SINK, SHARED_READ_BUFFER, type Endpoint, type EndpointSink, type PeerAddress, type Side } from './endpoint.js';
import type { ConnectReq, Libuv, ShutdownReq, SocketName, StreamHandle, WriteReq } from './libuv.js';

/** net.Socket's default writableHighWaterMark. */
const HIGH_WATER = 16 * 1024;
const UV_ENOTCONN = -osConstants.errno.ENOTCONN;

export function errnoError(status: number, syscall: string): NodeJS.ErrnoException {
  const code = status < 0 ? getSystemErrorName(status) : `E${status}`;
  const err = new Error(`${syscall} ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = status;
  err.syscall = syscall;
  return err;
}

interface OwnedWrite extends WriteReq {
  owner: HandleEndpoint | undefined;
  buffer: Buffer | undefined;
  pooled: Buffer | undefined;
  bytes: number;
}

/**
 * A write request the C++ side did not keep (the write completed inside writeBuffer): reused for the
 * next write, so a small keep-alive exchange allocates none.
 */
let spareWrite: OwnedWrite | undefined;

// Callbacks are module functions called with `this` = the handle or request, which carries its
// endpoint: no closure per connection.
function onHandleRead(this: StreamHandle): void {
  (this.owner as HandleEndpoint).readDone();
}
function onHandleClosed(this: StreamHandle): void {
  (this.owner as HandleEndpoint).closeDone();
}
function onWriteDone(this: WriteReq, status: number): void {
  const req = this as OwnedWrite;
  req.owner?.writeDone(req, status);
}
function onShutdownDone(this: ShutdownReq): void {
  (this['owner'] as HandleEndpoint).shutdownDone();
}

export class HandleEndpoint implements Endpoint {
  readonly checksPeerAtAccept = false;
  private sink: EndpointSink = NO_SINK;
  private side: Side = CLIENT;
  private reading = false;
  private eof = false;
  private ending = false;
  private shut = false;
  private closed = false;
  private waiting = 0;
  private needDrain = false;
  private peer: PeerAddress | undefined | null = null;
  private here: PeerAddress | undefined | null = null;
  bytesRead = 0;
  bytesWritten = 0;

  constructor(
    private readonly handle: StreamHandle,
    private readonly uv: Libuv,
  ) {
    handle.owner = this;
    handle.onread = onHandleRead;
    handle.useUserBuffer(SHARED_READ_BUFFER);
  }

  get destroyed(): boolean {
    return this.closed;
  }

  get readEnded(): boolean {
    return this.eof;
  }

  remote(): PeerAddress | undefined {
    if (this.peer === null) this.peer = this.name('getpeername');
    return this.peer;
  }

  local(): PeerAddress | undefined {
    if (this.here === null) this.here = this.name('getsockname');
    return this.here;
  }

  private name(how: 'getpeername' | 'getsockname'): PeerAddress | undefined {
    const out: SocketName = {};
    const fn = this.handle[how];
    if (this.closed || fn === undefined || fn.call(this.handle, out) !== 0 || out.address === undefined) return undefined;
    return { address: out.address, port: out.port ?? 0 };
  }

  attach(sink: EndpointSink, side: Side): void {
    this.sink = sink;
    this.side = side;
  }

  pause(): void {
    if (!this.reading || this.closed) return;
    this.reading = false;
    const err = this.handle.readStop();
    if (err !== 0) this.failSoon(errnoError(err, 'read'));
  }

  resume(): void {
    if (this.reading || this.eof || this.closed) return;
    this.reading = true;
    const err = this.handle.readStart();
    if (err !== 0) {
      this.reading = false;
      this.failSoon(errnoError(err, 'read'));
    }
  }

  /** @internal onread: the result of one read is in streamBaseState, the bytes in SHARED_READ_BUFFER. */
  readDone(): void {
    const n = this.uv.state[this.uv.kReadBytesOrError]!;
    if (n > 0) {
      this.bytesRead += n;
      if (!this.sink.onRead(this.side, n, SHARED_READ_BUFFER, false)) this.pause();
      return;
    }
    if (n === 0 || this.closed) return;
    // libuv stops reading by itself after EOF or an error.
    this.reading = false;
    if (n === this.uv.UV_EOF) {
      this.eof = true;
      this.sink.onEnd(this.side);
      this.closeIfDone();
      return;
    }
    this.fail(errnoError(n, 'read'));
  }

  write(chunk: Buffer, pooled?: Buffer): boolean {
    if (this.closed || this.ending) return false;
    let req = spareWrite;
    spareWrite = undefined;
    if (req === undefined) {
      req = new this.uv.WriteWrap() as OwnedWrite;
      req.oncomplete = onWriteDone;
    }
    req.handle = this.handle;
    req.async = false;
    req.owner = this;
    req.buffer = chunk; // libuv writes from this memory until oncomplete: keep it alive
    req.pooled = pooled;
    req.bytes = chunk.length;
    const err = this.handle.writeBuffer(req, chunk);
    this.bytesWritten += chunk.length;
    if (err !== 0) {
      // Not reused: the C++ side may have bound it before failing.
      req.owner = req.buffer = req.pooled = undefined;
      this.failSoon(errnoError(err, 'write'));
      return false;
    }
    if (this.uv.state[this.uv.kLastWriteWasAsync] === 0) {
      req.owner = req.buffer = req.pooled = undefined;
      spareWrite = req;
      if (pooled !== undefined) CHUNKS.give(pooled);
      return this.waiting < HIGH_WATER;
    }
    req.async = true;
    this.waiting += chunk.length;
    if (this.waiting < HIGH_WATER) return true;
    this.needDrain = true;
    return false;
  }

  /** @internal */
  writeDone(req: OwnedWrite, status: number): void {
    this.waiting -= req.bytes;
    const pooled = req.pooled;
    req.owner = req.buffer = req.pooled = undefined;
    if (status < 0) {
      // Also ECANCELED for writes still queued when the handle closed: nothing to report then.
      this.fail(errnoError(status, 'write'));
      return;
    }
    if (pooled !== undefined) CHUNKS.give(pooled);
    if (this.needDrain && this.waiting === 0 && !this.closed) {
      this.needDrain = false;
      this.sink.onDrain(this.side);
    }
  }

  end(): void {
    if (this.ending || this.closed) return;
    this.ending = true;
    const req = new this.uv.ShutdownWrap();
    req.handle = this.handle;
    req.oncomplete = onShutdownDone;
    req['owner'] = this;
    const err = this.handle.shutdown(req);
    if (err === 0) return;
    if (err === UV_ENOTCONN) {
      // The peer is gone already: as net.Socket does, count the FIN as sent.
      this.shutdownDone();
      return;
    }
    this.failSoon(errnoError(err, 'shutdown'));
  }

  /** @internal */
  shutdownDone(): void {
    this.shut = true;
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (this.eof && this.shut) this.destroy();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.reading = false;
    this.handle.close(onHandleClosed);
  }

  reset(): void {
    if (this.closed) return;
    this.closed = true;
    this.reading = false;
    // uv_tcp_close_reset refuses while a shutdown is pending (EINVAL): then a plain close.
    if (this.handle.reset === undefined || this.handle.reset(onHandleClosed) !== 0) this.handle.close(onHandleClosed);
  }

  descriptor(): number | undefined {
    if (this.closed || this.ending || this.waiting > 0) return undefined;
    const fd = this.handle.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  /** The peer's FIN was read before this handle took the descriptor over (native-socket.ts). */
  markEnded(): void {
    this.eof = true;
    this.reading = false;
  }

  release(): void {
    if (this.closed) return;
    this.sink = NO_SINK;
    this.closed = true;
    this.reading = false;
    // No callback: Node then makes no call back into JavaScript for this close (one per handle saved).
    this.handle.close();
  }

  /** @internal */
  closeDone(): void {
    this.sink.onClose(this.side);
  }

  private fail(err: NodeJS.ErrnoException): void {
    if (this.closed) return;
    this.sink.onError(this.side, err);
    this.destroy();
  }

  private failSoon(err: NodeJS.ErrnoException): void {
    process.nextTick(() => this.fail(err));
  }
}

/** A server endpoint on a new handle; `done` gets the connect's outcome, on a later tick. */
export function connectHandle(
  uv: Libuv,
  to: { readonly host: string; readonly port: number; readonly ipv6: boolean } | { readonly path: string },
  done: (err: NodeJS.ErrnoException | undefined) => void,
): HandleEndpoint {
  const pipe = 'path' in to;
  const handle = pipe ? new uv.Pipe(uv.PIPE_SOCKET) : new uv.TCP(uv.TCP_SOCKET);
  const ep = new HandleEndpoint(handle, uv);
  const req = pipe ? new uv.PipeConnectWrap() : new uv.TCPConnectWrap();
  req.oncomplete = function (this: ConnectReq, status: number): void {
    if (ep.destroyed) return; // gave up (connect timeout): the close cancelled it
    if (status === 0) {
      if (!pipe) handle.setNoDelay?.(true);
      done(undefined);
      return;
    }
    ep.destroy();
    done(errnoError(status, 'connect'));
  };
  let err: number;
  if (pipe) err = handle.connect(req, to.path);
  else if (to.ipv6) err = handle.connect6!(req, to.host, to.port);
  else err = handle.connect(req, to.host, to.port);
  if (err !== 0) {
    ep.destroy();
    process.nextTick(done, errnoError(err, 'connect'));
  }
  return ep;
}
