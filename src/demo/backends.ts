// The embedded demo's two backends (README.md): a plaintext HTTP server and an HTTPS server with a
// self-signed certificate made at start. twinport sends them a PROXY v2 header, so each can answer which
// backend it is, who the client was and what twinport saw (protocol, SNI/Host) — the header is decoded
// with twinport's own parser, the same one a user's backend would meet.
import http from 'node:http';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { TwinportError } from '../errors.js';
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

/**
 * Accepts raw connections, strips a PROXY header when one comes first, and hands the rest to `serve`,
 * remembering the header for the request handler.
 */
function proxyAwareFront(serve: (d: Duplex) => void, seen: WeakMap<object, ProxyHeader>, key: (d: Duplex) => object): Server {
  return net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const v = parseProxyHeader(buf, { final: buf.length >= MAX_HEADER_WAIT });
      if (v.kind === 'need-more') return;
      socket.off('data', onData);
      socket.pause();
      const rest = v.kind === 'match' ? buf.subarray(v.consumed) : buf;
      const d = resumeWith(socket, rest);
      const k = key(d);
      if (v.kind === 'match') seen.set(k, v.header);
      serve(d);
    };
    socket.on('data', onData);
  });
}

function describe(which: string, header: ProxyHeader | undefined, tlsServername: string | false | null | undefined): string {
  const lines = [`Hello from the twinport demo ${which} backend.`];
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
    const frontHttp = proxyAwareFront((d) => plain.emit('connection', d), seen, (d) => d);
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
        secure.closeAllConnections();
      },
    };
  } catch (e) {
    throw new TwinportError('TWP_ERR_DEMO_START', (e as Error).message, { cause: e });
  }
}
