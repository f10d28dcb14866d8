// Interop with a real HAProxy, both ways:
//  - HAProxy as receiver (`bind … accept-proxy`): our builders' v1/v2 headers must make it log the client
//    address we put in them (and the AUTHORITY / UNIQUE_ID TLVs), and a header with a wrong CRC32C must
//    make it drop the connection;
//  - HAProxy as sender (`server … send-proxy` / `send-proxy-v2 proxy-v2-options crc32c,unique-id`): our
//    parser must read its headers back to the addresses of the connection we made.
// Listening sockets are created here on port 0 and handed to HAProxy as inherited descriptors (`bind fd@N`),
// so there is no port race and no readiness wait: the kernel queues our connections until HAProxy accepts.
import test from 'ava';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { buildProxyV1, buildProxyV2 } from '../../src/protocol/proxy-header-build.js';
import { PP2_TYPE_AUTHORITY, PP2_TYPE_UNIQUE_ID, parseProxyHeader, type ProxyHeader } from '../../src/protocol/proxy-header.js';
import { hasTool, testWithTools } from '../helpers/tools.js';

interface Haproxy {
  readonly child: ChildProcess;
  readonly ports: { accept: number; sendV2: number; sendV1: number };
  readonly capture: { v2: Capture; v1: Capture };
  log: string;
  readonly logWaiters: Array<() => void>;
  readonly dir: string;
}

interface Capture {
  readonly server: net.Server;
  readonly port: number;
  /** Resolves with the first connection's bytes once a PROXY header and `payload` arrived. */
  next(payload: string): Promise<{ header: ProxyHeader; rest: Buffer }>;
}

async function listen(): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

/** The listening socket's descriptor (libuv handle; POSIX only). */
function fdOf(server: net.Server): number {
  return (server as unknown as { _handle: { fd: number } })._handle.fd;
}

async function startCapture(): Promise<Capture> {
  const server = await listen();
  const pending: Array<{ payload: string; resolve: (v: { header: ProxyHeader; rest: Buffer }) => void; reject: (e: Error) => void }> = [];
  server.on('connection', (sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const v = parseProxyHeader(buf, { final: false });
      if (v.kind === 'need-more') return;
      const waiter = pending.find((p) => v.kind === 'match' && buf.subarray(v.consumed).toString('latin1') === p.payload);
      if (v.kind === 'reject') {
        pending.shift()?.reject(new Error(`parse rejected: ${v.reason}`));
        sock.destroy();
      } else if (waiter !== undefined) {
        pending.splice(pending.indexOf(waiter), 1);
        waiter.resolve({ header: v.header, rest: buf.subarray(v.consumed) });
        sock.destroy();
      }
    });
  });
  return {
    server,
    port: portOf(server),
    next: (payload) => new Promise((resolve, reject) => pending.push({ payload, resolve, reject })),
  };
}

let hap: Haproxy | undefined;

test.before(async () => {
  if (!hasTool('haproxy')) return;
  const accept = await listen();
  const sendV2 = await listen();
  const sendV1 = await listen();
  const v2 = await startCapture();
  const v1 = await startCapture();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinport-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  log stdout format raw local0',
      'defaults',
      '  log global',
      '  timeout connect 5s',
      '  timeout client 5s',
      '  timeout server 5s',
      'frontend accept',
      '  mode http',
      '  bind fd@3 accept-proxy',
      '  log-format "CLIENT %ci:%cp DST %fi:%fp AUTH %[fc_pp_authority] UID %[fc_pp_unique_id]"',
      '  http-request return status 200 content-type text/plain string ok',
      'frontend send_v2',
      '  mode tcp',
      '  bind fd@4',
      '  unique-id-format "uid-%cp"',
      '  default_backend be_v2',
      'backend be_v2',
      '  mode tcp',
      `  server s1 127.0.0.1:${v2.port} send-proxy-v2 proxy-v2-options crc32c,unique-id`,
      'frontend send_v1',
      '  mode tcp',
      '  bind fd@5',
      '  default_backend be_v1',
      'backend be_v1',
      '  mode tcp',
      `  server s1 127.0.0.1:${v1.port} send-proxy`,
      '',
    ].join('\n'),
  );
  const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe', fdOf(accept), fdOf(sendV2), fdOf(sendV1)] });
  const h: Haproxy = {
    child,
    ports: { accept: portOf(accept), sendV2: portOf(sendV2), sendV1: portOf(sendV1) },
    capture: { v2, v1 },
    log: '',
    logWaiters: [],
    dir,
  };
  child.stdout!.on('data', (d: Buffer) => {
    h.log += d.toString();
    for (const w of h.logWaiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => {
    h.log += d.toString();
  });
  // HAProxy holds its own copies of the listening sockets now.
  for (const s of [accept, sendV2, sendV1]) s.close();
  hap = h;
});

test.after.always(() => {
  if (hap === undefined) return;
  hap.child.kill();
  hap.capture.v1.server.close();
  hap.capture.v2.server.close();
  fs.rmSync(hap.dir, { recursive: true, force: true });
});

function waitForLog(h: Haproxy, needle: string): Promise<string> {
  return new Promise((resolve) => {
    const check = () => {
      const line = h.log.split('\n').find((l) => l.includes(needle));
      if (line !== undefined) resolve(line);
      else h.logWaiters.push(check);
    };
    check();
  });
}

/** Sends bytes to a port and collects everything until the server closes. */
function exchange(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('data', (d) => {
      chunks.push(d);
      if (Buffer.concat(chunks).includes('\r\n\r\nok')) s.end();
    });
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks)) : reject(e)));
  });
}

const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: backend.example\r\nConnection: close\r\n\r\n');
const needs = { haproxy: 'haproxy' };

testWithTools(needs, 'HAProxy accept-proxy logs the client address of our v1 header', async (t) => {
  const h = hap!;
  const header = buildProxyV1({ address: '198.51.100.7', port: 40001 }, { address: '203.0.113.9', port: 8443 });
  const response = await exchange(h.ports.accept, Buffer.concat([header, REQUEST]));
  t.true(response.toString().startsWith('HTTP/1.1 200'), response.toString());
  const line = await waitForLog(h, 'CLIENT 198.51.100.7:40001');
  t.true(line.includes('DST 203.0.113.9:8443'), line);
});

testWithTools(needs, 'HAProxy accept-proxy reads our v2 header: IPv6 addresses, AUTHORITY, UNIQUE_ID, CRC32C', async (t) => {
  const h = hap!;
  const header = buildProxyV2({
    source: { address: '2001:db8::7', port: 40002 },
    destination: { address: '2001:db8::80', port: 443 },
    tlvs: [
      { type: PP2_TYPE_AUTHORITY, value: Buffer.from('routed.example') },
      { type: PP2_TYPE_UNIQUE_ID, value: Buffer.from('conn-40002') },
    ],
    crc32c: true,
  });
  const response = await exchange(h.ports.accept, Buffer.concat([header, REQUEST]));
  t.true(response.toString().startsWith('HTTP/1.1 200'), response.toString());
  const line = await waitForLog(h, 'CLIENT 2001:db8::7:40002');
  t.true(line.includes('AUTH routed.example'), line);
  t.true(line.includes('UID conn-40002'), line);
});

testWithTools(needs, 'HAProxy accept-proxy drops a v2 header whose CRC32C is wrong', async (t) => {
  const h = hap!;
  const header = buildProxyV2({ source: { address: '192.0.2.66', port: 40003 }, destination: { address: '192.0.2.1', port: 80 }, crc32c: true });
  header[header.length - 1] = header[header.length - 1]! ^ 0xff;
  const response = await exchange(h.ports.accept, Buffer.concat([header, REQUEST]));
  t.false(response.toString().startsWith('HTTP/1.1 200'), response.toString());
  // The same header with a correct checksum is accepted, so the rejection above is about the CRC.
  header[header.length - 1] = header[header.length - 1]! ^ 0xff;
  const ok = await exchange(h.ports.accept, Buffer.concat([header, REQUEST]));
  t.true(ok.toString().startsWith('HTTP/1.1 200'), ok.toString());
});

async function throughHaproxy(port: number, capture: Capture, payload: string) {
  const got = capture.next(payload);
  const client = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  const local = { address: client.localAddress!, port: client.localPort! };
  client.write(payload);
  try {
    return { ...(await got), local };
  } finally {
    client.destroy();
  }
}

testWithTools(needs, 'HAProxy send-proxy-v2 (crc32c, unique-id): our parser reads its header', async (t) => {
  const h = hap!;
  const { header, rest, local } = await throughHaproxy(h.ports.sendV2, h.capture.v2, 'hello v2\n');
  t.like(header, {
    version: 2,
    command: 'PROXY',
    family: 'TCP4',
    source: { address: local.address, port: local.port },
    destination: { address: '127.0.0.1', port: h.ports.sendV2 },
    crc32cVerified: true,
  });
  t.is(header.uniqueId?.toString(), `uid-${local.port}`);
  t.is(rest.toString(), 'hello v2\n');
});

testWithTools(needs, 'HAProxy send-proxy (v1): our parser reads its header', async (t) => {
  const h = hap!;
  const { header, rest, local } = await throughHaproxy(h.ports.sendV1, h.capture.v1, 'hello v1\n');
  t.like(header, {
    version: 1,
    family: 'TCP4',
    source: { address: local.address, port: local.port },
    destination: { address: '127.0.0.1', port: h.ports.sendV1 },
  });
  t.is(rest.toString(), 'hello v1\n');
});
