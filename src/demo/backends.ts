// The embedded demo's two backends (design.md §2): a plaintext HTTP server and an HTTPS server with a
// self-signed certificate made at start. twinport sends them a PROXY v2 header, so each can answer which
// backend it is, who the client was and what twinport saw (protocol, SNI/Host) — the header is decoded
// with twinport's own parser, the same one a user's backend would meet.
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo, type Server } from 'node:net';
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
 * Accepts raw connections, strips a PROXY header when one comes first, and hands the socket to `inner`
 * (an http or https server). Headers are remembered by the backend-side port of the connection, which
 * the request handler sees as `req.socket.remotePort`.
 */
function proxyAwareFront(inner: http.Server | https.Server, seen: Map<number, ProxyHeader>): Server {
  return net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const v = parseProxyHeader(buf, { final: buf.length >= MAX_HEADER_WAIT });
      if (v.kind === 'need-more') return;
      socket.off('data', onData);
      socket.pause();
      let rest = buf;
      if (v.kind === 'match') {
        const port = socket.remotePort;
        if (port !== undefined) {
          seen.set(port, v.header);
          socket.once('close', () => seen.delete(port));
        }
        rest = buf.subarray(v.consumed);
      }
      if (rest.length > 0) socket.unshift(rest);
      inner.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
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
    const seenHttp = new Map<number, ProxyHeader>();
    const seenHttps = new Map<number, ProxyHeader>();
    const plain = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.end(describe('HTTP', seenHttp.get(req.socket.remotePort ?? -1), undefined));
    });
    const secure = https.createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      const servername = (req.socket as import('node:tls').TLSSocket).servername;
      res.end(describe('HTTPS', seenHttps.get(req.socket.remotePort ?? -1), servername));
    });
    const frontHttp = proxyAwareFront(plain, seenHttp);
    const frontHttps = proxyAwareFront(secure, seenHttps);
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
