// Stage 2 of the `native` engine (docs/native.md): the connection path in C. The addon accepts on the
// listening socket, reads the first bytes and connects to the server; JavaScript gets one call per event
// (accept with the bytes already read, a later read, connected) and keeps every decision: the peek's
// detector, limits, routing, the PROXY header. The common path then hands both sockets to the addon's
// splice by slot (`adopt`): no descriptor duplicated, no libuv handle made or closed, no handle object.
//
// Anything else a connection may do before the hand-over (answer the client, splice in JavaScript for
// an `affinity: tls` pool, pass a FIN on) is served by moving the descriptor into one of Node's own TCP
// handles (`promote`): the endpoint then behaves exactly as the `libuv` engine's.
import { CLIENT, NO_SINK, SHARED_READ_BUFFER, type Endpoint, type EndpointSink, type PeerAddress, type Side } from './endpoint.js';
import { errnoError, HandleEndpoint } from './handle-endpoint.js';
import type { Libuv } from './libuv.js';

/** The addon's socket functions (src/native/addon.c). Negative results are -errno. */
export interface SockAddon {
  sockInit(onSock: (ev: number, slot: number, n: number, listener: number) => void, readBuffer: Buffer): void;
  listen(fd: number, listener: number): number;
  connect(address: string, port: number, ipv6: boolean): number;
  sockRead(slot: number, on: boolean): number;
  sockClose(slot: number, reset: boolean): void;
  sockDetach(slot: number): number;
  sockFd(slot: number): number;
  sockName(slot: number, local: boolean): [string, number] | number;
  adopt(
    clientSlot: number,
    serverSlot: number,
    initial: Buffer | undefined,
    clientEof: boolean,
    serverEof: boolean,
    idleMs: number,
    clientFinMs?: number,
    serverFinMs?: number,
  ): number;
  liveSockets(): number;
}

// sock.h's enum sock_event.
const EV_ACCEPT = 0;
const EV_READ = 1;
const EV_EOF = 2;
const EV_ERROR = 3;
const EV_CONNECTED = 4;
const EV_CONNECT_FAILED = 5;
const EV_ACCEPT_FAILED = 6;

export interface AcceptTarget {
  accept(ep: Endpoint): void;
  failed(err: NodeJS.ErrnoException): void;
}

export class NativeSockets {
  private readonly socks: (NativeSocketEndpoint | undefined)[] = [];
  private readonly targets: (AcceptTarget | undefined)[] = [];

  constructor(
    readonly addon: SockAddon,
    readonly uv: Libuv,
  ) {
    addon.sockInit(this.onSock, SHARED_READ_BUFFER);
  }

  /** Accepts on (a duplicate of) `fd` from now on; a socket slot, or -errno. */
  listen(fd: number, target: AcceptTarget): number {
    let id = this.targets.indexOf(undefined);
    if (id < 0) id = this.targets.length;
    const slot = this.addon.listen(fd, id);
    if (slot >= 0) this.targets[id] = target;
    return slot;
  }

  /** Stops accepting: the duplicate is closed (the socket stays open wherever else it is held). */
  unlisten(slot: number, target: AcceptTarget): void {
    this.addon.sockClose(slot, false);
    const id = this.targets.indexOf(target);
    if (id >= 0) this.targets[id] = undefined;
  }

  listeningFd(slot: number): number | undefined {
    const fd = this.addon.sockFd(slot);
    return fd >= 0 ? fd : undefined;
  }

  /** A server endpoint being connected; `done` gets the outcome from the loop, never during this call. */
  connect(address: string, port: number, ipv6: boolean, done: (err: NodeJS.ErrnoException | undefined) => void): Endpoint {
    const slot = this.addon.connect(address, port, ipv6);
    const ep = new NativeSocketEndpoint(this, slot < 0 ? -1 : slot);
    if (slot < 0) {
      ep.closed = true;
      process.nextTick(done, errnoError(slot, 'connect'));
      return ep;
    }
    ep.connecting = done;
    this.socks[slot] = ep;
    return ep;
  }

  /** Sockets the addon holds before pairing (tests count them). */
  live(): number {
    return this.addon.liveSockets();
  }

  /** @internal the endpoint's slot is no longer the addon's (closed, detached, paired). */
  forget(slot: number): void {
    this.socks[slot] = undefined;
  }

  private readonly onSock = (ev: number, slot: number, n: number, listener: number): void => {
    if (ev === EV_ACCEPT) {
      const ep = new NativeSocketEndpoint(this, slot);
      this.socks[slot] = ep;
      const target = this.targets[listener];
      if (target === undefined) {
        ep.destroy();
        return;
      }
      // The first bytes go to the connection when it starts reading, usually inside accept (resume).
      ep.held = n;
      target.accept(ep);
      if (ep.held > 0) ep.keepHeld();
      return;
    }
    if (ev === EV_ACCEPT_FAILED) {
      this.targets[listener]?.failed(errnoError(-n, 'accept'));
      return;
    }
    const ep = this.socks[slot];
    if (ep === undefined) return;
    switch (ev) {
      case EV_READ:
        ep.readEvent(n);
        return;
      case EV_EOF:
        ep.eofEvent();
        return;
      case EV_ERROR:
        // The addon closed it already: the slot may be handed out again at once.
        this.socks[slot] = undefined;
        ep.failEvent(errnoError(-n, 'read'));
        return;
      case EV_CONNECTED:
        ep.connectEvent(undefined);
        return;
      case EV_CONNECT_FAILED:
        this.socks[slot] = undefined;
        ep.connectEvent(errnoError(-n, 'connect'));
        return;
    }
  };
}

export class NativeSocketEndpoint implements Endpoint {
  readonly checksPeerAtAccept = false;
  private sink: EndpointSink = NO_SINK;
  private side: Side = CLIENT;
  private reading = false;
  private eof = false;
  /** @internal */
  closed = false;
  /** @internal a server endpoint whose connect is under way. */
  connecting: ((err: NodeJS.ErrnoException | undefined) => void) | undefined;
  /** After promote(): the libuv endpoint that carries on. */
  private inner: HandleEndpoint | undefined;
  private readOwn = 0;
  private peer: PeerAddress | undefined | null = null;
  private here: PeerAddress | undefined | null = null;

  constructor(
    private readonly owner: NativeSockets,
    /** The addon's socket slot; -1 once it is not the addon's any more. */
    public slot: number,
  ) {}

  get destroyed(): boolean {
    return this.inner !== undefined ? this.inner.destroyed : this.closed;
  }

  get readEnded(): boolean {
    return this.eof || (this.inner?.readEnded ?? false);
  }

  get bytesRead(): number {
    return this.readOwn + (this.inner?.bytesRead ?? 0);
  }

  get bytesWritten(): number {
    return this.inner?.bytesWritten ?? 0;
  }

  /** Still the addon's, neither promoted nor closed: the pair can be adopted by slot. */
  get adoptable(): boolean {
    return this.inner === undefined && !this.closed && this.slot >= 0 && this.connecting === undefined;
  }

  remote(): PeerAddress | undefined {
    if (this.peer === null) this.peer = this.inner !== undefined ? this.inner.remote() : this.name(false);
    return this.peer;
  }

  local(): PeerAddress | undefined {
    if (this.here === null) this.here = this.inner !== undefined ? this.inner.local() : this.name(true);
    return this.here;
  }

  private name(local: boolean): PeerAddress | undefined {
    if (this.closed || this.slot < 0) return undefined;
    const r = this.owner.addon.sockName(this.slot, local);
    return typeof r === 'number' ? undefined : { address: r[0], port: r[1] };
  }

  attach(sink: EndpointSink, side: Side): void {
    this.sink = sink;
    this.side = side;
    this.inner?.attach(sink, side);
  }

  pause(): void {
    if (this.inner !== undefined) return this.inner.pause();
    if (!this.reading || this.closed) return;
    this.reading = false;
    const err = this.owner.addon.sockRead(this.slot, false);
    if (err !== 0) this.failSoon(errnoError(err, 'read'));
  }

  resume(): void {
    if (this.inner !== undefined) return this.inner.resume();
    if (this.reading || this.eof || this.closed || this.connecting !== undefined) return;
    this.reading = true;
    if (this.held > 0 || this.heldCopy !== undefined) {
      this.giveHeld();
      // The sink may have paused, closed, promoted or decided everything meanwhile.
      if (!this.reading || this.closed || this.inner !== undefined) return;
    }
    const err = this.owner.addon.sockRead(this.slot, true);
    if (err !== 0) {
      this.reading = false;
      this.failSoon(errnoError(err, 'read'));
    }
  }

  write(chunk: Buffer, pooled?: Buffer): boolean {
    return this.promote().write(chunk, pooled);
  }

  end(): void {
    this.promote().end();
  }

  destroy(): void {
    this.close(false);
  }

  reset(): void {
    this.close(true);
  }

  private close(reset: boolean): void {
    if (this.inner !== undefined) {
      if (reset) this.inner.reset();
      else this.inner.destroy();
      return;
    }
    if (this.closed) return;
    this.closed = true;
    this.reading = false;
    this.connecting = undefined;
    this.giveUpSlot(reset);
    // As a libuv handle's close callback: after this turn's events, never inside the caller's call.
    setImmediate(() => this.sink.onClose(this.side));
  }

  descriptor(): number | undefined {
    if (this.inner !== undefined) return this.inner.descriptor();
    if (this.closed || this.slot < 0 || this.connecting !== undefined) return undefined;
    const fd = this.owner.addon.sockFd(this.slot);
    return fd >= 0 ? fd : undefined;
  }

  release(): void {
    if (this.inner !== undefined) return this.inner.release();
    if (this.closed) return;
    this.sink = NO_SINK;
    this.closed = true;
    this.reading = false;
    this.giveUpSlot(false);
  }

  /** The pair was adopted by the addon: the slot is the pair's now, nothing of ours remains. */
  adopted(): void {
    this.owner.forget(this.slot);
    this.slot = -1;
    this.sink = NO_SINK;
    this.closed = true;
    this.reading = false;
  }

  private giveUpSlot(reset: boolean): void {
    if (this.slot < 0) return;
    this.owner.forget(this.slot);
    this.owner.addon.sockClose(this.slot, reset);
    this.slot = -1;
  }

  /**
   * Moves the descriptor into a Node TCP handle: from here the `libuv` engine's endpoint does everything
   * (writes, FIN, the JavaScript splice). What was read already stays counted here.
   */
  private promote(): Endpoint {
    if (this.inner !== undefined) return this.inner;
    const uv = this.owner.uv;
    const handle = new uv.TCP(uv.TCP_SOCKET);
    const inner = new HandleEndpoint(handle, uv);
    this.inner = inner;
    inner.attach(this.sink, this.side);
    const fd = this.closed || this.slot < 0 ? -1 : this.owner.addon.sockDetach(this.slot);
    if (this.slot >= 0) this.owner.forget(this.slot);
    this.slot = -1;
    const err = fd < 0 ? fd : (handle as unknown as { open(fd: number): number }).open(fd);
    if (err !== 0 && err !== undefined) {
      inner.destroy();
      return inner;
    }
    if (this.eof) inner.markEnded();
    if (this.reading) inner.resume();
    return inner;
  }

  /** @internal Bytes the accept read, still in SHARED_READ_BUFFER: given at the first resume. */
  held = 0;
  private heldCopy: Buffer | undefined;

  /** @internal The accept's call is over and the bytes were not taken: copy them out of the shared buffer. */
  keepHeld(): void {
    this.heldCopy = Buffer.from(SHARED_READ_BUFFER.subarray(0, this.held));
    this.held = 0;
  }

  private giveHeld(): void {
    const copy = this.heldCopy;
    const n = this.held;
    this.held = 0;
    this.heldCopy = undefined;
    if (this.closed) return;
    if (copy !== undefined) {
      this.readOwn += copy.length;
      if (!this.sink.onRead(this.side, copy.length, copy, true)) this.pause();
      return;
    }
    this.readEvent(n);
  }

  /** @internal n bytes are in SHARED_READ_BUFFER. */
  readEvent(n: number): void {
    if (this.closed || this.inner !== undefined) return;
    this.readOwn += n;
    if (!this.sink.onRead(this.side, n, SHARED_READ_BUFFER, false)) this.pause();
  }

  /** @internal */
  eofEvent(): void {
    if (this.closed || this.inner !== undefined) return;
    this.eof = true;
    this.reading = false;
    this.sink.onEnd(this.side);
  }

  /** @internal the addon closed the socket after a failed read. */
  failEvent(err: NodeJS.ErrnoException): void {
    this.slot = -1;
    if (this.closed) return;
    this.closed = true;
    this.reading = false;
    this.sink.onError(this.side, err);
    setImmediate(() => this.sink.onClose(this.side));
  }

  /** @internal */
  connectEvent(err: NodeJS.ErrnoException | undefined): void {
    const done = this.connecting;
    this.connecting = undefined;
    if (err !== undefined) {
      // The addon closed it; as connectHandle, the endpoint is destroyed before `done` hears of it.
      this.slot = -1;
      this.closed = true;
    }
    if (done !== undefined && !(err === undefined && this.closed)) done(err);
  }

  private failSoon(err: NodeJS.ErrnoException): void {
    process.nextTick(() => {
      if (this.closed) return;
      this.sink.onError(this.side, err);
      this.destroy();
    });
  }
}
