// The embedded demo's two backends (README.md): a plaintext HTTP server (HTTP/1 and HTTP/2 with prior
// knowledge, h2c) and an HTTPS server with a self-signed certificate made at start. twinport sends them a PROXY v2 header, so each can answer which
// backend it is, who the client was and what twinport saw (protocol, SNI/Host) — the header is decoded
// with twinport's own parser, the same one a user's backend would meet.
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { TwinportError } from '../errors.js';
import { H2C_PREFACE } from '../protocol/h2c-preface.js';
import { parseProxyHeader, type ProxyHeader } from '../protocol/proxy-header.js';

export interface DemoBackends {
  readonly http: string; // "127.0.0.1:port"
  readonly https: string;
  close(): Promise<void>;
}

const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_TWINPORT_PROTOCOL = 0xe0;
const MAX_HEADER_WAIT = 232; // v2 header with the TLVs twinport sends stays far below this

/**
 * A Duplex over a raw socket that first yields `prefix` (the bytes read after the PROXY header). The
 * http/tls servers are handed this wrapper rather than the socket: given a net.Socket they read from its
 * handle directly and would never see bytes that were already read in JS.
 */
function resumeWith(socket: Socket, prefix: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  if (prefix.length > 0) d.push(prefix);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}

/** Whether `bytes` could still be, or are, the start of the h2c preface (RFC 9113 §3.4). */
function h2cSoFar(bytes: Buffer): 'yes' | 'maybe' | 'no' {
  const n = Math.min(bytes.length, H2C_PREFACE.length);
  if (bytes.compare(H2C_PREFACE, 0, n, 0, n) !== 0) return 'no';
  return n === H2C_PREFACE.length ? 'yes' : 'maybe';
}

/**
 * Accepts raw connections, strips a PROXY header when one comes first, and hands the rest to `serve`
 * (with whether it opens with the h2c preface, when `h2c` asks to know), remembering the header for the
 * request handler.
 */
function proxyAwareFront(
  serve: (d: Duplex, header: ProxyHeader | undefined, h2c: boolean) => void,
  seen: WeakMap<object, ProxyHeader>,
  key: (d: Duplex) => object,
  h2c = false,
): Server {
  return net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const v = parseProxyHeader(buf, { final: buf.length >= MAX_HEADER_WAIT });
      if (v.kind === 'need-more') return;
      const rest = v.kind === 'match' ? buf.subarray(v.consumed) : buf;
      // Which server speaks to it: wait until the bytes are, or cannot be, the h2c preface.
      const preface = h2c ? h2cSoFar(rest) : 'no';
      if (preface === 'maybe') return;
      socket.off('data', onData);
      socket.pause();
      const d = resumeWith(socket, rest);
      const k = key(d);
      const header = v.kind === 'match' ? v.header : undefined;
      if (header !== undefined) seen.set(k, header);
      serve(d, header, preface === 'yes');
    };
    socket.on('data', onData);
  });
}

function describe(which: string, header: ProxyHeader | undefined, tlsServername: string | false | null | undefined, spoken?: string): string {
  const lines = [`Hello from the twinport demo ${which} backend.`];
  if (spoken !== undefined) lines.push(`spoken: ${spoken}`);
  if (header === undefined) {
    lines.push('No PROXY header arrived: you reached this backend directly, not through twinport.');
  } else {
    const tlv = (t: number): string | undefined => header.tlvs.find((x) => x.type === t)?.value.toString('utf8');
    const src = header.source;
    lines.push(`client (from twinport's PROXY v2 header): ${src === undefined ? 'unknown' : `${src.address}:${src.port}`}`);
    lines.push(`twinport saw protocol: ${tlv(PP2_TYPE_TWINPORT_PROTOCOL) ?? 'unknown'}`);
    lines.push(`twinport saw ${which === 'HTTPS' ? 'SNI' : 'Host'}: ${tlv(PP2_TYPE_AUTHORITY) ?? '(none)'}`);
  }
  if (tlsServername !== undefined) lines.push(`TLS server name this backend negotiated: ${tlsServername || '(none)'}`);
  return lines.join('\n') + '\n';
}

async function listen(server: Server, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return `${host}:${a.port}`;
}

export async function startDemoBackends(host = '127.0.0.1'): Promise<DemoBackends> {
  try {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      extensions: [
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
      ],
    });
    const seen = new WeakMap<object, ProxyHeader>();
    const plain = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end(describe('HTTP', seen.get(req.socket), undefined));
    });
    const secureContext = tls.createSecureContext({ key: pems.private, cert: pems.cert });
    // TLS is terminated by hand so the TLSSocket (what the request handler sees) can carry the header.
    const secure = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      const t = req.socket as TLSSocket;
      res.end(describe('HTTPS', seen.get(t), t.servername));
    });
    // HTTP/2 with prior knowledge (what twinport routes as `protocol: h2c`): Node 20's plaintext HTTP/2
    // server cannot fall back to HTTP/1, so the front picks the server by the first bytes.
    const plain2 = http2.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end(describe('HTTP', seen.get(req.stream.session!), undefined, 'HTTP/2 (h2c, prior knowledge)'));
    });
    let opening: ProxyHeader | undefined;
    // The session is made synchronously inside emit('connection'): that is when it gets its header.
    plain2.on('session', (session) => {
      if (opening !== undefined) seen.set(session, opening);
    });
    const frontHttp = proxyAwareFront(
      (d, header, isH2c) => {
        if (!isH2c) {
          plain.emit('connection', d);
          return;
        }
        opening = header;
        plain2.emit('connection', d);
        opening = undefined;
      },
      seen,
      (d) => d,
      true,
    );
    const tlsKeys = new WeakMap<Duplex, TLSSocket>();
    const frontHttps = proxyAwareFront(
      (d) => {
        const t = tlsKeys.get(d)!;
        t.on('error', () => t.destroy());
        t.once('secure', () => secure.emit('connection', t));
      },
      seen,
      (d) => {
        const t = new tls.TLSSocket(d, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
        tlsKeys.set(d, t);
        return t;
      },
    );
    const httpAddr = await listen(frontHttp, host);
    const httpsAddr = await listen(frontHttps, host);
    return {
      http: httpAddr,
      https: httpsAddr,
      close: async () => {
        for (const s of [frontHttp, frontHttps]) s.close();
        plain.closeAllConnections();
        plain2.close();
        secure.closeAllConnections();
      },
    };
  } catch (e) {
    throw new TwinportError('TWP_ERR_DEMO_START', (e as Error).message, { cause: e });
  }
}
