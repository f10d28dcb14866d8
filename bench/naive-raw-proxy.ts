// An experiment, not the product: the naive proxy (first byte + splice) on raw libuv handles through
// process.binding (deprecated internals, DEP0111), with no net.Socket and no streams. It measures how
// much of Node's per-request and per-connection cost is the net/stream layer, i.e. what a raw-handle
// splice in twinport could save. No timeouts, no limits, no logs.
//
//   node --no-deprecation dist/bench/naive-raw-proxy.js LISTEN_PORT HTTP_PORT HTTPS_PORT

interface Handle {
  onread: (ab: ArrayBuffer) => void;
  onconnection: (err: number, h: Handle) => void;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: Req, buf: Buffer): number;
  shutdown(req: Req): number;
  connect(req: Req, ip: string, port: number): number;
  setNoDelay(on: boolean): number;
  bind(ip: string, port: number): number;
  listen(backlog: number): number;
  close(cb?: () => void): void;
}
interface Req {
  handle?: Handle;
  async?: boolean;
  oncomplete: (status: number) => void;
}
type Ctor<T> = new (...args: unknown[]) => T;

const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
const tcp = binding('tcp_wrap') as { TCP: Ctor<Handle>; TCPConnectWrap: Ctor<Req>; constants: { SOCKET: number; SERVER: number } };
const stream = binding('stream_wrap') as {
  WriteWrap: Ctor<Req>;
  ShutdownWrap: Ctor<Req>;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
};
const state = stream.streamBaseState;
const [listen, httpPort, httpsPort] = process.argv.slice(2).map(Number);

function pair(client: Handle): void {
  let upstream: Handle | undefined;
  let closed = false;
  let ends = 0;
  const close = (): void => {
    if (closed) return;
    closed = true;
    client.close();
    upstream?.close();
  };
  const forward = (from: Handle, to: Handle): void => {
    from.onread = (ab) => {
      const n = state[stream.kReadBytesOrError]!;
      if (n < 0) {
        from.readStop();
        const s = new stream.ShutdownWrap();
        s.handle = to;
        s.oncomplete = () => {
          if (++ends === 2) close();
        };
        if (to.shutdown(s) !== 0) close();
        return;
      }
      if (n === 0) return;
      const req = new stream.WriteWrap();
      req.handle = to;
      req.async = false;
      req.oncomplete = (status) => {
        if (status < 0) close();
        else from.readStart();
      };
      if (to.writeBuffer(req, Buffer.from(ab, state[stream.kArrayBufferOffset]!, n)) !== 0) close();
      else if (state[stream.kLastWriteWasAsync]) from.readStop(); // backpressure until the write completes
    };
  };
  client.onread = (ab) => {
    const n = state[stream.kReadBytesOrError]!;
    if (n <= 0) {
      if (n < 0) close();
      return;
    }
    const first = Buffer.from(ab, state[stream.kArrayBufferOffset]!, n);
    client.readStop();
    const up = (upstream = new tcp.TCP(tcp.constants.SOCKET));
    const req = new tcp.TCPConnectWrap();
    req.oncomplete = (status) => {
      if (status < 0) return close();
      up.setNoDelay(true);
      const w = new stream.WriteWrap();
      w.handle = up;
      w.async = false;
      w.oncomplete = () => {};
      up.writeBuffer(w, first);
      forward(client, up);
      forward(up, client);
      client.readStart();
      up.readStart();
    };
    if (up.connect(req, '127.0.0.1', first[0] === 0x16 ? httpsPort! : httpPort!) !== 0) close();
  };
  client.setNoDelay(true);
  client.readStart();
}

const server = new tcp.TCP(tcp.constants.SERVER);
server.bind('127.0.0.1', listen!);
server.onconnection = (err, h) => {
  if (err === 0) pair(h);
};
server.listen(1024);
process.on('SIGTERM', () => process.exit(0));
