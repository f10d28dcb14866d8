// Which Endpoint implementation carries the bytes (config `io_engine`, docs/io-engine.md): `native`, the
// C addon that accepts, reads the peek, connects and splices (the default wherever it built and passed
// its self-check; in a cluster worker, or to a host-name server, Node accepts or connects as with
// `libuv`), `libuv`, Node's stream handles driven directly (the default otherwise, wherever this Node
// offers them), or `streams`, net.Socket.
import cluster from 'node:cluster';
import net, { isIP, type AddressInfo, type Server } from 'node:net';
import type { ServerAddress } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { SHARED_READ_BUFFER, SocketEndpoint, type Endpoint } from './endpoint.js';
import { connectHandle, errnoError, HandleEndpoint } from './handle-endpoint.js';
import { LIBUV, type StreamHandle } from './libuv.js';
import { NATIVE, type NativeStatus } from './native.js';

export type IoEngineSetting = 'auto' | 'native' | 'libuv' | 'streams';
export type IoEngine = 'native' | 'libuv' | 'streams';

export interface IoEngineChoice {
  readonly engine: IoEngine;
  /** For the start line: why this engine runs. */
  readonly why: string;
}

/** The engine a setting gives here, and why; an explicit engine that is not available is a start error. */
export function chooseIoEngine(setting: IoEngineSetting, libuvAvailable = LIBUV !== undefined, native: NativeStatus = NATIVE): IoEngineChoice {
  switch (setting) {
    case 'streams':
      return { engine: 'streams', why: 'configured' };
    case 'native':
      if (native.engine !== undefined && native.spliceError !== undefined) throw spliceError(native.spliceError);
      if (native.engine !== undefined) return { engine: 'native', why: `configured; ${native.why}` };
      throw new TwinportError('TWP_ERR_IO_ENGINE', `io_engine: native is not available: ${native.why} (use auto, libuv or streams)`);
    case 'libuv':
      if (libuvAvailable) return { engine: 'libuv', why: 'configured' };
      throw new TwinportError('TWP_ERR_IO_ENGINE', `io_engine: libuv is not available in Node ${process.version} (use auto or streams)`);
    case 'auto':
      if (native.engine !== undefined && native.spliceError !== undefined) throw spliceError(native.spliceError);
      if (native.engine !== undefined) return { engine: 'native', why: `auto: native ${native.why}` };
      if (libuvAvailable) return { engine: 'libuv', why: `auto: native unavailable, ${native.why}` };
      return { engine: 'streams', why: `auto: native unavailable (${native.why}), and this Node lacks the libuv handles` };
    default: {
      const never: never = setting;
      throw new Error(`unknown io_engine ${String(never)}`);
    }
  }
}

function spliceError(why: string): TwinportError {
  return new TwinportError('TWP_ERR_NATIVE_SPLICE', `${why} (docs/native.md)`);
}

export function resolveIoEngine(setting: IoEngineSetting, libuvAvailable = LIBUV !== undefined, native: NativeStatus = NATIVE): IoEngine {
  return chooseIoEngine(setting, libuvAvailable, native).engine;
}

/** isIP per server address, remembered: for an IPv4 address it also runs Node's long IPv6 regex. */
const FAMILIES = new WeakMap<ServerAddress, number>();
function familyOf(addr: ServerAddress): number {
  let f = FAMILIES.get(addr);
  if (f === undefined) FAMILIES.set(addr, (f = isIP(addr.host!)));
  return f;
}

/**
 * Connects to a server. With `libuv`, IP literals and unix paths get a handle of their own; a host name
 * still goes through net.connect, which resolves it (and races its addresses, autoSelectFamily).
 */
export function connectEndpoint(engine: IoEngine, addr: ServerAddress, done: (err: NodeJS.ErrnoException | undefined) => void): Endpoint {
  const uv = LIBUV;
  if (engine !== 'streams' && uv !== undefined) {
    if (addr.path !== undefined) return connectHandle(uv, { path: addr.path }, done);
    const family = familyOf(addr);
    const sockets = engine === 'native' ? NATIVE.engine?.sockets : undefined;
    if (sockets !== undefined && family !== 0) return sockets.connect(addr.host!, addr.port!, family === 6, done);
    if (family !== 0) return connectHandle(uv, { host: addr.host!, port: addr.port!, ipv6: family === 6 }, done);
  }
  // The server's bytes are read into the shared buffer (onread) instead of a new 64 KiB allocation per
  // read pushed through a Readable.
  let ep: SocketEndpoint | undefined;
  const onread = { buffer: SHARED_READ_BUFFER, callback: (n: number, buf: Uint8Array) => ep!.onSharedRead(n, buf as Buffer) };
  const sock =
    addr.path !== undefined
      ? net.connect({ path: addr.path, allowHalfOpen: true, onread })
      : net.connect({ host: addr.host!, port: addr.port!, allowHalfOpen: true, noDelay: true, onread });
  ep = new SocketEndpoint(sock);
  let settled = false;
  sock.once('connect', () => {
    settled = true;
    done(undefined);
  });
  sock.once('error', (err: NodeJS.ErrnoException) => {
    if (settled) return;
    settled = true;
    done(err);
  });
  return ep;
}

/** A listening socket as the runtime sees it, whoever accepts on it (Node, or the native addon). */
export interface Acceptor {
  /** The bound address (kept: once the addon accepts, net.Server has no handle to ask). */
  address(): AddressInfo | null;
  /** The listening descriptor (binary upgrade hands it on); undefined in a cluster worker. */
  fd(): number | undefined;
  /** Stop accepting. */
  close(): void;
  /** Who accepts: 'native' (the addon) or 'node'. */
  readonly accepts: 'native' | 'node';
}

/**
 * Makes `server` hand its accepted connections to `onAccept` as endpoints of `engine`, and accept(2)
 * failures to `onError`. Call it before `listen`. With `libuv` the raw handle is taken before
 * net.Server wraps it in a Socket, from 'listening' on; this works for a cluster worker's server too,
 * whose handle the primary sends (round-robin) or shares (none). With `native`, the addon takes the
 * listening socket itself (a duplicate of it) and Node's handle is closed; not in a cluster worker, whose
 * listening socket belongs to the primary's bookkeeping.
 */
export function acceptEndpoints(
  engine: IoEngine,
  server: Server,
  onAccept: (ep: Endpoint) => void,
  onError: (err: NodeJS.ErrnoException) => void,
): Acceptor {
  let bound: AddressInfo | null = null;
  let nativeSlot = -1;
  const target = { accept: onAccept, failed: onError };
  const acceptor = {
    accepts: 'node' as 'native' | 'node',
    address: (): AddressInfo | null => (nativeSlot >= 0 ? bound : (server.address() as AddressInfo | null)),
    fd: (): number | undefined => {
      if (nativeSlot >= 0) return NATIVE.engine?.sockets?.listeningFd(nativeSlot);
      const fd = (server as unknown as { _handle: { fd?: number } | null })._handle?.fd;
      return typeof fd === 'number' && fd >= 0 ? fd : undefined;
    },
    close: (): void => {
      if (nativeSlot >= 0) NATIVE.engine?.sockets?.unlisten(nativeSlot, target);
      nativeSlot = -1;
      server.close();
    },
  };
  // Always there, even with `libuv`: a round-robin cluster worker can be handed a connection in the same
  // IPC read as its listen reply, which net passes to its own onconnection before 'listening' is
  // emitted. Such a connection arrives here as a net.Socket and is served by the `streams` endpoint.
  server.on('connection', (socket: net.Socket) => {
    const ep = new SocketEndpoint(socket);
    socket.on('data', ep.onData);
    // Until the connection attaches (synchronously, below), nothing can have been read.
    onAccept(ep);
  });
  server.once('listening', () => {
    // Not before: an error while binding is the caller's (listen) business.
    server.on('error', onError);
    const uv = LIBUV;
    const listening = (server as unknown as { _handle: { onconnection: unknown; fd?: number; close(): void } | null })._handle;
    if (engine === 'streams' || uv === undefined || listening === null) return;
    const sockets = engine === 'native' ? NATIVE.engine?.sockets : undefined;
    const address = server.address();
    if (sockets !== undefined && !cluster.isWorker && typeof listening.fd === 'number' && listening.fd >= 0 && address !== null && typeof address === 'object') {
      const slot = sockets.listen(listening.fd, target);
      if (slot >= 0) {
        // From now on the addon accepts; Node's handle goes (the duplicate keeps the socket listening).
        // No connection can have been accepted by Node yet: 'listening' comes before any poll phase.
        bound = address;
        nativeSlot = slot;
        acceptor.accepts = 'native';
        listening.close();
        (server as unknown as { _handle: unknown })._handle = null;
        return;
      }
    }
    listening.onconnection = (status: number, handle: StreamHandle | undefined): void => {
      if (status !== 0 || handle === undefined) {
        onError(errnoError(status, 'accept'));
        return;
      }
      handle.setNoDelay?.(true);
      onAccept(new HandleEndpoint(handle, uv));
    };
  });
  return acceptor;
}
