// Independent decoders for captured first flights: the expected values our parsers are checked against.
// Neither shares a line of code with src/protocol/:
//  - Wireshark (tshark), the main oracle: the bytes become one TCP segment in a pcap we write (one TCP
//    stream per input, so a whole batch costs two tshark runs) and tshark's TLS / HTTP / HTTP2 / PROXY
//    dissectors report the fields. It reassembles a hello spread over several records, so it covers every
//    fixture.
//  - read-tls-client-hello (devDependency), a second opinion where it applies: it reads the first record
//    only, so it needs the whole hello in one record. It also computes the JA4 fingerprint, which
//    Wireshark 4.0 does not.
// Both answer in the same shape (OracleHello) so a test can hold them against each other and against ours.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { calculateJa4, getExtensionData, readTlsClientHello } from 'read-tls-client-hello';

const run = promisify(execFile);

/** Extension code points (IANA TLS ExtensionType registry). */
export const EXT = {
  serverName: 0, // RFC 6066 §3
  supportedGroups: 10,
  alpn: 16, // RFC 7301 §3.1
  sessionTicket: 35, // RFC 5077 §3.2
  preSharedKey: 41, // RFC 8446 §4.2.11
  earlyData: 42, // RFC 8446 §4.2.10
  supportedVersions: 43, // RFC 8446 §4.2.1
  keyShare: 51, // RFC 8446 §4.2.8
  ech: 0xfe0d, // draft-ietf-tls-esni (encrypted_client_hello)
} as const;

/** What a decoder saw in a ClientHello (RFC 8446 §4.1.2), as sent: no GREASE filtering, no case folding. */
export interface OracleHello {
  legacyVersion: number;
  /** Hex, '' when empty. */
  sessionId: string;
  cipherSuites: number[];
  /** In wire order. */
  extensionTypes: number[];
  sni?: string;
  alpn?: string[];
  supportedVersions?: number[];
  /** Length of the session_ticket extension data (0 = "I support tickets", > 0 = a ticket offered). */
  ticketLength?: number;
  /** Length of each PSK identity offered in pre_shared_key. */
  pskIdentityLengths?: number[];
  earlyData: boolean;
  ech: boolean;
  keyShareGroups?: number[];
}

export interface TsharkTls extends OracleHello {
  /** Body length of the ClientHello handshake message (the uint24 after msg_type). */
  helloLength: number;
  /** Handshake records that carry the hello (the leading run of content type 22). */
  records: number;
  recordLengths: number[];
  /** Bytes after the hello's records (e.g. TLS 1.3 early data, RFC 8446 §4.2.10). */
  trailingBytes: number;
  /** Records tshark saw after the hello's records. */
  trailingRecords: number;
}

export interface TsharkHttp {
  method: string;
  target: string;
  version: string;
  /** The Host header value as sent (with a port when there is one). */
  host?: string;
}

export interface TsharkH2 {
  /** The 24-octet client connection preface was seen (RFC 9113 §3.4). */
  preface: boolean;
  /** Types of the frames after the preface, in order. */
  frameTypes: number[];
  method?: string;
  path?: string;
  authority?: string;
}

export interface TsharkProxy {
  version: 1 | 2;
  /** v1: TCP4/TCP6/UNKNOWN */
  protocol?: string;
  /** v2 command (0 LOCAL, 1 PROXY), address family (1 INET, 2 INET6, 3 UNIX), transport (1 STREAM, 2 DGRAM). */
  command?: number;
  family?: number;
  transport?: number;
  source?: { address: string; port: number };
  destination?: { address: string; port: number };
  /** Bytes of the header: the payload starts here. */
  length: number;
}

export interface TsharkResult {
  proxy?: TsharkProxy;
  tls?: TsharkTls;
  http?: TsharkHttp;
  h2?: TsharkH2;
}

/** Which Wireshark dissector reads what follows an optional PROXY header. */
export type DecodeAs = 'tls' | 'http' | 'http2';

/** The server port of each stream tells tshark which dissector to use (`-d tcp.port==…`). */
const SERVER_PORTS: Record<DecodeAs, number> = { tls: 14433, http: 18080, http2: 18082 };
const FIRST_CLIENT_PORT = 40000;
/** Ethernet + IPv4 + TCP headers in front of each payload in our pcap. */
const TCP_PAYLOAD_START = 14 + 20 + 20;
/** An IPv4 packet's total length is 16 bits; each input goes in one segment. */
const MAX_BYTES = 65_535 - 20 - 20;

const TLS_FIELDS = [
  'tls.record.content_type',
  'tls.record.length',
  'tls.handshake.type',
  'tls.handshake.length',
  'tls.handshake.version',
  'tls.handshake.session_id',
  'tls.handshake.ciphersuite',
  'tls.handshake.extension.type',
  'tls.handshake.extension.len',
  'tls.handshake.extensions_server_name',
  'tls.handshake.extensions_alpn_str',
  'tls.handshake.extensions.supported_version',
  'tls.handshake.extensions.psk.identity.identity_length',
  'tls.handshake.extensions_key_share_group',
];
const HTTP_FIELDS = ['http.request.method', 'http.request.uri', 'http.request.version', 'http.host'];
const H2_FIELDS = [
  'http2.magic',
  'http2.type',
  'http2.headers.method',
  'http2.headers.path',
  'http2.headers.authority',
];

export interface OracleInput {
  bytes: Buffer;
  as: DecodeAs;
}

/** Decodes one client's first flight with tshark. */
export async function decodeWithTshark(bytes: Buffer, as: DecodeAs): Promise<TsharkResult> {
  const [result] = await decodeAllWithTshark([{ bytes, as }]);
  return result!;
}

/**
 * Decodes each input as its own TCP stream of one pcap: a PDML pass finds PROXY headers, then a JSON pass
 * reads what follows them. Results are in input order. Needs `tshark` (Debian package tshark).
 */
export async function decodeAllWithTshark(inputs: readonly OracleInput[]): Promise<TsharkResult[]> {
  if (inputs.length === 0) return [];
  const dir = await mkdtemp(join(tmpdir(), 'twinport-tshark-'));
  try {
    const proxies = await decodeProxies(dir, inputs);
    const payloads = inputs.map((input, i) => ({ ...input, bytes: input.bytes.subarray(proxies[i]?.length ?? 0) }));
    const packets = await tsharkFields(dir, payloads);
    return payloads.map((input, i) => {
      const layers = packets[i] ?? {};
      const result: TsharkResult = {};
      const proxy = proxies[i];
      if (proxy !== undefined) result.proxy = proxy;
      switch (input.as) {
        case 'tls': {
          const tls = tlsFromLayers(layers, input.bytes.length);
          if (tls !== undefined) result.tls = tls;
          break;
        }
        case 'http': {
          const http = httpFromLayers(layers);
          if (http !== undefined) result.http = http;
          break;
        }
        case 'http2': {
          const h2 = h2FromLayers(layers);
          if (h2 !== undefined) result.h2 = h2;
          break;
        }
      }
      return result;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A classic libpcap file (Ethernet link type): one IPv4/TCP segment per input, 127.0.0.1:(40000+i) →
 * 127.0.0.2:(port of its decoder), PSH|ACK, seq 1. Wireshark follows a stream without seeing its SYN.
 */
async function writePcap(dir: string, name: string, inputs: readonly OracleInput[]): Promise<string> {
  const parts: Buffer[] = [];
  const global = Buffer.alloc(24);
  global.writeUInt32LE(0xa1b2c3d4, 0); // magic: microsecond timestamps, our byte order
  global.writeUInt16LE(2, 4);
  global.writeUInt16LE(4, 6);
  global.writeUInt32LE(262_144, 16); // snaplen
  global.writeUInt32LE(1, 20); // LINKTYPE_ETHERNET
  parts.push(global);
  inputs.forEach(({ bytes, as }, i) => {
    if (bytes.length === 0 || bytes.length > MAX_BYTES) {
      throw new Error(`tshark oracle: ${bytes.length} bytes do not fit one TCP segment`);
    }
    const frame = Buffer.alloc(TCP_PAYLOAD_START + bytes.length);
    // Ethernet II: locally administered MACs, EtherType IPv4.
    Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]).copy(frame, 0);
    const ip = frame.subarray(14, 34);
    ip[0] = 0x45; // version 4, 5 words
    ip.writeUInt16BE(20 + 20 + bytes.length, 2);
    ip.writeUInt16BE(i + 1, 4); // identification
    ip.writeUInt16BE(0x4000, 6); // DF
    ip[8] = 64; // TTL
    ip[9] = 6; // TCP
    Buffer.from([127, 0, 0, 1, 127, 0, 0, 2]).copy(ip, 12);
    ip.writeUInt16BE(ipChecksum(ip), 10);
    const tcp = frame.subarray(34, 54);
    tcp.writeUInt16BE(FIRST_CLIENT_PORT + i, 0);
    tcp.writeUInt16BE(SERVER_PORTS[as], 2);
    tcp.writeUInt32BE(1, 4); // seq
    tcp.writeUInt32BE(1, 8); // ack
    tcp[12] = 5 << 4; // data offset: 5 words
    tcp[13] = 0x18; // PSH | ACK
    tcp.writeUInt16BE(65_535, 14); // window
    bytes.copy(frame, TCP_PAYLOAD_START);
    const record = Buffer.alloc(16);
    record.writeUInt32LE(i, 0); // one second apart, so the frames stay in order
    record.writeUInt32LE(frame.length, 8);
    record.writeUInt32LE(frame.length, 12);
    parts.push(record, frame);
  });
  const pcap = join(dir, `${name}.pcap`);
  await writeFile(pcap, Buffer.concat(parts));
  return pcap;
}

/** RFC 791 header checksum: ones' complement of the ones' complement sum of the 16-bit words. */
function ipChecksum(header: Buffer): number {
  let sum = 0;
  for (let at = 0; at < header.length; at += 2) sum += header.readUInt16BE(at);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function tsharkEnv(dir: string): NodeJS.ProcessEnv {
  // Our own empty profile directory: the user's Wireshark preferences must not change what the oracle says.
  return { ...process.env, WIRESHARK_CONFIG_DIR: dir };
}

type Layers = Record<string, string[]>;

async function tsharkFields(dir: string, inputs: readonly OracleInput[]): Promise<Layers[]> {
  const pcap = await writePcap(dir, 'payload', inputs);
  const args = [
    '-n',
    '-r', pcap,
    ...(Object.entries(SERVER_PORTS) as Array<[DecodeAs, number]>).flatMap(([as, port]) => [
      '-d', `tcp.port==${port},${as}`,
    ]),
    '-o', 'tcp.desegment_tcp_streams:TRUE',
    '-o', 'tls.desegment_ssl_records:TRUE',
    '-o', 'http.desegment_headers:TRUE',
    '-T', 'json',
    ...[...TLS_FIELDS, ...HTTP_FIELDS, ...H2_FIELDS].flatMap((f) => ['-e', f]),
  ];
  const { stdout } = await run('tshark', args, { env: tsharkEnv(dir), maxBuffer: 256 << 20 });
  const packets = JSON.parse(stdout) as Array<{ _source?: { layers?: Layers } }>;
  if (packets.length !== inputs.length) {
    throw new Error(`tshark oracle: ${inputs.length} streams in, ${packets.length} packets out`);
  }
  return packets.map((p) => p._source?.layers ?? {});
}

function all(layers: Layers, field: string): string[] {
  return layers[field] ?? [];
}

function first(layers: Layers, field: string): string | undefined {
  return layers[field]?.[0];
}

/** tshark prints integers in decimal or 0x-hex depending on the field's display base; Number reads both. */
function num(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n)) throw new Error(`tshark oracle: not an integer: ${s}`);
  return n;
}

function tlsFromLayers(layers: Layers, total: number): TsharkTls | undefined {
  if (first(layers, 'tls.handshake.type') !== '1') return undefined;
  const contentTypes = all(layers, 'tls.record.content_type').map(num);
  const recordLengths = all(layers, 'tls.record.length').map(num);
  // Records whose content type tshark could not name (encrypted early data) have no content_type entry but
  // do have a length; they come after the hello's records, so the leading entries line up.
  let records = 0;
  while (contentTypes[records] === 22) records += 1;
  const helloRecordBytes = recordLengths.slice(0, records).reduce((sum, n) => sum + 5 + n, 0);

  const types = all(layers, 'tls.handshake.extension.type').map(num);
  const lens = all(layers, 'tls.handshake.extension.len').map(num);
  const has = (t: number) => types.includes(t);
  const lenOf = (t: number) => lens[types.indexOf(t)];

  const hello: TsharkTls = {
    legacyVersion: num(first(layers, 'tls.handshake.version') ?? 'NaN'),
    sessionId: (first(layers, 'tls.handshake.session_id') ?? '').replaceAll(':', ''),
    cipherSuites: all(layers, 'tls.handshake.ciphersuite').map(num),
    extensionTypes: types,
    earlyData: has(EXT.earlyData),
    ech: has(EXT.ech),
    helloLength: num(first(layers, 'tls.handshake.length') ?? 'NaN'),
    records,
    recordLengths: recordLengths.slice(0, records),
    trailingBytes: total - helloRecordBytes,
    trailingRecords: recordLengths.length - records,
  };
  const sni = first(layers, 'tls.handshake.extensions_server_name');
  if (sni !== undefined) hello.sni = sni;
  if (has(EXT.alpn)) hello.alpn = all(layers, 'tls.handshake.extensions_alpn_str');
  if (has(EXT.supportedVersions)) {
    hello.supportedVersions = all(layers, 'tls.handshake.extensions.supported_version').map(num);
  }
  const ticketLength = has(EXT.sessionTicket) ? lenOf(EXT.sessionTicket) : undefined;
  if (ticketLength !== undefined) hello.ticketLength = ticketLength;
  if (has(EXT.preSharedKey)) {
    hello.pskIdentityLengths = all(layers, 'tls.handshake.extensions.psk.identity.identity_length').map(num);
  }
  if (has(EXT.keyShare)) hello.keyShareGroups = all(layers, 'tls.handshake.extensions_key_share_group').map(num);
  return hello;
}

function httpFromLayers(layers: Layers): TsharkHttp | undefined {
  const method = first(layers, 'http.request.method');
  const target = first(layers, 'http.request.uri');
  const version = first(layers, 'http.request.version');
  if (method === undefined || target === undefined || version === undefined) return undefined;
  const http: TsharkHttp = { method, target, version };
  const host = first(layers, 'http.host');
  if (host !== undefined) http.host = host;
  return http;
}

function h2FromLayers(layers: Layers): TsharkH2 | undefined {
  const preface = first(layers, 'http2.magic') !== undefined;
  const frameTypes = all(layers, 'http2.type').map(num);
  if (!preface && frameTypes.length === 0) return undefined;
  const h2: TsharkH2 = { preface, frameTypes };
  const method = first(layers, 'http2.headers.method');
  const path = first(layers, 'http2.headers.path');
  const authority = first(layers, 'http2.headers.authority');
  if (method !== undefined) h2.method = method;
  if (path !== undefined) h2.path = path;
  if (authority !== undefined) h2.authority = authority;
  return h2;
}

// --- PROXY protocol ---------------------------------------------------------------------------------------
// Wireshark's PROXY dissector is a heuristic one, so it runs only when heuristics go first; and it does not
// hand the rest of the segment on to TLS. So it gets a pass of its own (PDML, which carries each
// protocol's position and size), and the bytes after the header are decoded in a second pass.

interface PdmlElement {
  tag: 'proto' | 'field';
  attrs: Record<string, string>;
}

function pdmlElements(xml: string): PdmlElement[] {
  const out: PdmlElement[] = [];
  for (const m of xml.matchAll(/<(proto|field)\s([^>]*?)\/?>/g)) {
    const attrs: Record<string, string> = {};
    for (const a of (m[2] ?? '').matchAll(/([\w.]+)="([^"]*)"/g)) attrs[a[1]!] = unescapeXml(a[2]!);
    out.push({ tag: m[1] as 'proto' | 'field', attrs });
  }
  return out;
}

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|quot|apos|lt|gt|amp);/gi, (_, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ({ quot: '"', apos: "'", lt: '<', gt: '>', amp: '&' } as Record<string, string>)[e.toLowerCase()] ?? '';
  });
}

async function decodeProxies(dir: string, inputs: readonly OracleInput[]): Promise<Array<TsharkProxy | undefined>> {
  const pcap = await writePcap(dir, 'proxy', inputs);
  const { stdout } = await run(
    'tshark',
    ['-n', '-r', pcap, '-o', 'tcp.try_heuristic_first:TRUE', '-T', 'pdml'],
    { env: tsharkEnv(dir), maxBuffer: 256 << 20 },
  );
  const packets = stdout.split('<packet>').slice(1);
  if (packets.length !== inputs.length) {
    throw new Error(`tshark oracle: ${inputs.length} streams in, ${packets.length} PDML packets out`);
  }
  return packets.map((xml) => proxyFromPdml(pdmlElements(xml)));
}

function proxyFromPdml(elements: PdmlElement[]): TsharkProxy | undefined {
  const proto = elements.find((e) => e.tag === 'proto' && e.attrs['name'] === 'proxy');
  if (proto === undefined) return undefined;
  if (num(proto.attrs['pos'] ?? 'NaN') !== TCP_PAYLOAD_START) {
    throw new Error('tshark oracle: PROXY header not at the start of the stream');
  }
  const show = (name: string) => elements.find((e) => e.tag === 'field' && e.attrs['name'] === name)?.attrs['show'];
  const version = num(show('proxy.version') ?? (show('proxy.v1.proto') !== undefined ? '1' : 'NaN'));
  if (version !== 1 && version !== 2) throw new Error(`tshark oracle: PROXY version ${version}`);
  // v1 is one CRLF-terminated line: the dissector's size is the header. v2 is a 16-byte fixed part plus the
  // length it declares (PROXY protocol spec §2.2); the dissector's size there covers the whole segment.
  const length = version === 1 ? num(proto.attrs['size'] ?? 'NaN') : 16 + num(show('proxy.v2.length') ?? 'NaN');
  const proxy: TsharkProxy = { version, length };
  const protocol = show('proxy.v1.proto');
  if (protocol !== undefined) proxy.protocol = protocol;
  const command = show('proxy.v2.cmd');
  if (command !== undefined) proxy.command = num(command);
  const family = show('proxy.v2.addr_family');
  if (family !== undefined) proxy.family = num(family);
  const transport = show('proxy.v2.protocol');
  if (transport !== undefined) proxy.transport = num(transport);
  const src = show('proxy.src.ipv4') ?? show('proxy.src.ipv6');
  const srcPort = show('proxy.srcport');
  if (src !== undefined && srcPort !== undefined) proxy.source = { address: src, port: num(srcPort) };
  const dst = show('proxy.dst.ipv4') ?? show('proxy.dst.ipv6');
  const dstPort = show('proxy.dstport');
  if (dst !== undefined && dstPort !== undefined) proxy.destination = { address: dst, port: num(dstPort) };
  return proxy;
}

// --- Second oracle: read-tls-client-hello ----------------------------------------------------------------

export interface RtchHello extends OracleHello {
  ja4: string;
}

/**
 * Decodes a ClientHello that sits whole in the first record of `bytes`; undefined when the library cannot
 * (the hello spans records, or the bytes are not a hello).
 */
export async function decodeWithReadTlsClientHello(bytes: Buffer): Promise<RtchHello | undefined> {
  let hello;
  try {
    hello = await readTlsClientHello(Readable.from([bytes], { objectMode: false }));
  } catch {
    return undefined;
  }
  const types = hello.extensions.map((e) => e.id);
  const out: RtchHello = {
    legacyVersion: hello.version,
    sessionId: hello.sessionId.toString('hex'),
    cipherSuites: hello.cipherSuites,
    extensionTypes: types,
    earlyData: types.includes(EXT.earlyData),
    ech: types.includes(EXT.ech),
    ja4: calculateJa4(hello),
  };
  const sni = getExtensionData(hello, EXT.serverName)?.serverName;
  if (sni !== undefined) out.sni = sni;
  const alpn = getExtensionData(hello, EXT.alpn)?.protocols;
  if (alpn !== undefined) out.alpn = alpn;
  const versions = getExtensionData(hello, EXT.supportedVersions)?.versions;
  if (versions !== undefined) out.supportedVersions = versions;
  const ticket = getExtensionData(hello, EXT.sessionTicket)?.ticketLength;
  if (ticket !== undefined) out.ticketLength = ticket;
  const psk = getExtensionData(hello, EXT.preSharedKey)?.identities;
  if (psk !== undefined) out.pskIdentityLengths = psk.map((i) => i.identityLength);
  const shares = getExtensionData(hello, EXT.keyShare)?.entries;
  if (shares !== undefined) out.keyShareGroups = shares.map((e) => e.group);
  return out;
}
