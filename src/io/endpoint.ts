// One side of a proxied pair as the connection sees it: read callbacks, writes with backpressure, FIN
// passed on separately (half-close), destroy or reset. Two engines implement it (docs/io-engine.md):
// `libuv` (handle-endpoint.ts, Node's stream handles driven directly) and `streams` (below, a
// net.Socket). Events go to one sink per connection, told apart by `side`, so an endpoint costs the
// connection no closures.
import type { Socket } from 'node:net';
import { ChunkPool } from './chunk-pool.js';

/** Which end of the pair an endpoint is: handed back with every event. */
export type Side = 0 | 1;
export const CLIENT: Side = 0;
export const SERVER: Side = 1;

export interface EndpointSink {
  /**
   * `n` bytes at the start of `buf`. Unless `owned`, `buf` is a buffer shared by every endpoint and
   * valid only during the call. Returning false stops reading until `resume()`.
   */
  onRead(side: Side, n: number, buf: Buffer, owned: boolean): boolean;
  /** The peer's FIN: nothing more will be read. The write side stays open (half-close). */
  onEnd(side: Side): void;
  /** Read, write or shutdown failed; `onClose` follows. */
  onError(side: Side, err: NodeJS.ErrnoException): void;
  /** The descriptor is closed: after destroy(), an error, or FIN both ways. */
  onClose(side: Side): void;
  /** Everything written has reached the kernel after a write() returned false. */
  onDrain(side: Side): void;
}

export interface PeerAddress {
  readonly address: string;
  readonly port: number;
}

export interface Endpoint {
  readonly destroyed: boolean;
  /** The peer's FIN has been read. */
  readonly readEnded: boolean;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** undefined when the socket is no longer connected (the peer left between accept and now). */
  remote(): PeerAddress | undefined;
  /**
   * net.Socket looks the peer up at accept; a peer gone by then means a socket that never carried
   * anything. Handles skip that lookup: a peer gone early shows up as the first read's reset or EOF.
   */
  readonly checksPeerAtAccept: boolean;
  local(): PeerAddress | undefined;
  /** Events go to `sink` from now on; before, they are dropped (a failed connect attempt's close). */
  attach(sink: EndpointSink, side: Side): void;
  pause(): void;
  resume(): void;
  /**
   * False when the bytes waiting to be written reached the high-water mark: stop feeding it until
   * `onDrain`. `pooled`, if given, is the CHUNKS buffer behind `chunk`; it goes back to the pool once
   * the write completed (and never after a failed one: libuv may still have held it).
   */
  write(chunk: Buffer, pooled?: Buffer): boolean;
  /** Sends FIN after everything written so far. */
  end(): void;
  destroy(): void;
  /** Close with a RST (TCP); a plain close where the transport has none. */
  reset(): void;
  /**
   * The descriptor, for the `native` engine to take over (docs/native.md): only while nothing of ours is
   * in flight on it (no write waiting, no FIN queued, no bytes read and kept); otherwise undefined.
   */
  descriptor(): number | undefined;
  /** Closes our descriptor without any further event, after the native engine took a duplicate. */
  release(): void;
}

/** What both engines read into (reads are never concurrent: each is handled before the next one). */
export const READ_SIZE = 64 * 1024;
export const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(READ_SIZE);
/** 64 buffers: 4 MiB kept at most, enough for a few dozen bulk transfers at once. */
export const CHUNKS = new ChunkPool(READ_SIZE, 64);

/** The sink of an endpoint nobody has attached yet: reads stop, events go nowhere. */
export const NO_SINK: EndpointSink = {
  onRead: () => false,
  onEnd: () => {},
  onError: () => {},
  onClose: () => {},
  onDrain: () => {},
};

/** The `streams` engine: a net.Socket (created with allowHalfOpen; see runtime.ts and connectEndpoint). */
export class SocketEndpoint implements Endpoint {
  readonly checksPeerAtAccept = true;
  private sink: EndpointSink = NO_SINK;
  private side: Side = CLIENT;

  constructor(readonly socket: Socket) {
    socket.on('end', () => this.sink.onEnd(this.side));
    socket.on('error', (err: NodeJS.ErrnoException) => this.sink.onError(this.side, err));
    socket.on('close', () => this.sink.onClose(this.side));
    socket.on('drain', () => this.sink.onDrain(this.side));
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get readEnded(): boolean {
    return this.socket.readableEnded;
  }

  get bytesRead(): number {
    return this.socket.bytesRead;
  }

  get bytesWritten(): number {
    return this.socket.bytesWritten;
  }

  remote(): PeerAddress | undefined {
    const s = this.socket;
    return s.remoteAddress === undefined ? undefined : { address: s.remoteAddress, port: s.remotePort ?? 0 };
  }

  local(): PeerAddress | undefined {
    const s = this.socket;
    return s.localAddress === undefined ? undefined : { address: s.localAddress, port: s.localPort ?? 0 };
  }

  attach(sink: EndpointSink, side: Side): void {
    this.sink = sink;
    this.side = side;
  }

  /** For sockets created without `onread`: Node allocates every chunk, so it is owned. */
  readonly onData = (chunk: Buffer): void => {
    if (!this.sink.onRead(this.side, chunk.length, chunk, true)) this.socket.pause();
  };

  /** For sockets created with `onread` into SHARED_READ_BUFFER; false makes net.Socket stop reading. */
  readonly onSharedRead = (n: number, buf: Buffer): boolean => this.sink.onRead(this.side, n, buf, false);

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  write(chunk: Buffer, pooled?: Buffer): boolean {
    if (pooled === undefined) return this.socket.write(chunk);
    return this.socket.write(chunk, (err) => {
      if (err == null) CHUNKS.give(pooled);
    });
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }

  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }

  descriptor(): number | undefined {
    const s = this.socket;
    if (s.destroyed || s.connecting || s.writableLength > 0 || s.writableEnded || s.readableLength > 0) return undefined;
    const fd = (s as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  release(): void {
    this.sink = NO_SINK;
    this.socket.destroy();
  }
}
