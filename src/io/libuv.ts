// Node's own libuv stream handles (TCP and Pipe wraps), reached through `process.binding`. twinport uses
// them for the splice instead of net.Socket: the stream layer (a Duplex, its state and a dozen listeners
// per socket, plus the bookkeeping of every read and write) cost ~80 µs of user CPU per proxied
// connection pair in the benchmark's S2, the largest single item between twinport and HAProxy
// (docs/benchmarks.md, "naive-raw"). These are the handles net.Socket itself drives, with the same
// methods, so the behaviour is libuv's either way.
//
// `process.binding` is deprecated (DEP0111) in documentation only; Node 20 serves these modules from
// an allow-list without a warning. If a later Node drops or changes any piece checked below, `LIBUV` is
// undefined and twinport runs on net.Socket (io_engine `streams`), which every test also covers.

export interface StreamHandle {
  /** Called with `this` = the handle; the result is in `streamBaseState` (see kReadBytesOrError). */
  onread: ((this: StreamHandle, arrayBuffer: ArrayBuffer | undefined) => void) | null;
  readStart(): number;
  readStop(): number;
  /** Reads then go into `buf` and `onread` gets no ArrayBuffer (net.Socket's `onread` option). */
  useUserBuffer(buf: Uint8Array): void;
  writeBuffer(req: WriteReq, buf: Uint8Array): number;
  shutdown(req: ShutdownReq): number;
  close(cb?: (this: StreamHandle) => void): void;
  setNoDelay?(on: boolean): number;
  getpeername?(out: SocketName): number;
  getsockname?(out: SocketName): number;
  /** TCP only: close with SO_LINGER 0, i.e. send a RST. */
  reset?(cb?: (this: StreamHandle) => void): number;
  connect(req: ConnectReq, address: string, port?: number): number;
  connect6?(req: ConnectReq, address: string, port: number): number;
  /** The descriptor (an accessor of Node's stream handles on Unix; -1 once closed). */
  readonly fd?: number;
  /** Set by twinport: the endpoint the handle belongs to. */
  owner?: unknown;
}

export interface SocketName {
  address?: string;
  port?: number;
  family?: string;
}

export interface WriteReq {
  handle: StreamHandle;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  [k: string]: unknown;
}
export interface ShutdownReq {
  handle: StreamHandle;
  oncomplete: (this: ShutdownReq, status: number) => void;
  [k: string]: unknown;
}
export interface ConnectReq {
  oncomplete: (this: ConnectReq, status: number, handle: StreamHandle, req: ConnectReq, readable: boolean, writable: boolean) => void;
  [k: string]: unknown;
}

type Ctor<T> = new (type?: number) => T;

export interface Libuv {
  readonly TCP: Ctor<StreamHandle>;
  readonly Pipe: Ctor<StreamHandle>;
  readonly TCPConnectWrap: Ctor<ConnectReq>;
  readonly PipeConnectWrap: Ctor<ConnectReq>;
  readonly WriteWrap: Ctor<WriteReq>;
  readonly ShutdownWrap: Ctor<ShutdownReq>;
  readonly TCP_SOCKET: number;
  readonly PIPE_SOCKET: number;
  /** Shared with C++: after a read, [kReadBytesOrError] is nread; after a write, [kLastWriteWasAsync]. */
  readonly state: Int32Array;
  readonly kReadBytesOrError: number;
  readonly kLastWriteWasAsync: number;
  readonly UV_EOF: number;
}

function load(): Libuv | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, any> }).binding;
    const tcp = binding('tcp_wrap');
    const pipe = binding('pipe_wrap');
    const stream = binding('stream_wrap');
    const uv = binding('uv');
    const proto = tcp['TCP']?.prototype;
    const methods = ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'close', 'connect', 'connect6', 'getpeername', 'getsockname', 'setNoDelay', 'reset'];
    if (proto === undefined || !methods.every((m) => typeof proto[m] === 'function')) return undefined;
    const state = stream['streamBaseState'];
    const numbers = [stream['kReadBytesOrError'], stream['kLastWriteWasAsync'], uv['UV_EOF'], tcp['constants']?.SOCKET, pipe['constants']?.SOCKET];
    if (!(state instanceof Int32Array) || !numbers.every((n) => typeof n === 'number')) return undefined;
    const ctors = [tcp['TCP'], pipe['Pipe'], tcp['TCPConnectWrap'], pipe['PipeConnectWrap'], stream['WriteWrap'], stream['ShutdownWrap']];
    if (!ctors.every((c) => typeof c === 'function')) return undefined;
    return {
      TCP: tcp['TCP'],
      Pipe: pipe['Pipe'],
      TCPConnectWrap: tcp['TCPConnectWrap'],
      PipeConnectWrap: pipe['PipeConnectWrap'],
      WriteWrap: stream['WriteWrap'],
      ShutdownWrap: stream['ShutdownWrap'],
      TCP_SOCKET: tcp['constants'].SOCKET,
      PIPE_SOCKET: pipe['constants'].SOCKET,
      state,
      kReadBytesOrError: stream['kReadBytesOrError'],
      kLastWriteWasAsync: stream['kLastWriteWasAsync'],
      UV_EOF: uv['UV_EOF'],
    };
  } catch {
    return undefined;
  }
}

/** undefined when this Node does not offer what the `libuv` engine needs. */
export const LIBUV: Libuv | undefined = load();
