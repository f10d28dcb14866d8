// PROXY protocol header builders (HAProxy's proxy-protocol.txt §2.1, §2.2), for servers with `send_proxy`.
// The output always parses back with parseProxyHeader to the same addresses and TLVs (a property test holds
// this). Addresses come from sockets, so they are IP text; dual-stack sockets report IPv4 peers as
// IPv4-mapped IPv6 (::ffff:a.b.c.d), which we send as TCP4 when both ends are IPv4.
import { isIPv4, isIPv6 } from './ip-address.js';
import { TwinportError } from '../errors.js';
import {
  PP2_TYPE_CRC32C,
  PROXY_V2_FIXED_LENGTH,
  PROXY_V2_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  crc32c,
  formatIPv4,
  formatIPv6,
  type ProxyAddress,
  type ProxyTlv,
} from './proxy-header.js';

export interface ProxyV2BuildOptions {
  /** Default PROXY. LOCAL sends no addresses (spec §2.2: "it should not present any address"). */
  readonly command?: 'PROXY' | 'LOCAL';
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  readonly tlvs?: readonly ProxyTlv[];
  /** Append a PP2_TYPE_CRC32C TLV over the whole header (spec §2.2.3). */
  readonly crc32c?: boolean;
}

/** "PROXY TCP4|TCP6 src dst sport dport\r\n", or "PROXY UNKNOWN\r\n" when the ends are not one IP family. */
export function buildProxyV1(src: ProxyAddress, dst: ProxyAddress): Buffer {
  checkPort(src.port);
  checkPort(dst.port);
  const pair = ipPair(src.address, dst.address);
  if (pair === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const [s, d] = pair;
  const fmt = s.length === 4 ? formatIPv4 : formatIPv6;
  const proto = s.length === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${fmt(s)} ${fmt(d)} ${src.port} ${dst.port}\r\n`, 'latin1');
}

/**
 * Binary header. With PROXY and both addresses: TCP4 (0x11) or TCP6 (0x21) for IP pairs, UNIX (0x31) for
 * two socket paths; otherwise UNSPEC (0x00), which the spec reserves for "unsupported protocol families".
 */
export function buildProxyV2(opts: ProxyV2BuildOptions): Buffer {
  const command = opts.command ?? 'PROXY';
  const tlvs = opts.tlvs ?? [];
  if ((opts.source === undefined) !== (opts.destination === undefined)) {
    throw buildError('give both source and destination, or neither');
  }

  let fam = 0x00;
  let addresses = Buffer.alloc(0);
  if (command === 'PROXY' && opts.source !== undefined && opts.destination !== undefined) {
    checkPort(opts.source.port);
    checkPort(opts.destination.port);
    const pair = ipPair(opts.source.address, opts.destination.address);
    if (pair !== undefined) {
      const [s, d] = pair;
      fam = s.length === 4 ? 0x11 : 0x21;
      const ports = Buffer.alloc(4);
      ports.writeUInt16BE(opts.source.port, 0);
      ports.writeUInt16BE(opts.destination.port, 2);
      addresses = Buffer.concat([s, d, ports]);
    } else if (isUnixPath(opts.source.address) && isUnixPath(opts.destination.address)) {
      fam = 0x31;
      addresses = Buffer.concat([unixPath(opts.source.address), unixPath(opts.destination.address)]);
    }
  }

  const parts: Buffer[] = [addresses];
  for (const tlv of tlvs) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xff) throw buildError(`TLV type ${tlv.type} is not a byte`);
    if (opts.crc32c === true && tlv.type === PP2_TYPE_CRC32C) throw buildError('a CRC32C TLV is given and also requested');
    if (tlv.value.length > 0xffff) throw buildError(`TLV 0x${tlv.type.toString(16)} value is over 65535 bytes`);
    parts.push(tlvHead(tlv.type, tlv.value.length), tlv.value);
  }
  if (opts.crc32c === true) parts.push(tlvHead(PP2_TYPE_CRC32C, 4), Buffer.alloc(4));

  const body = Buffer.concat(parts);
  if (PROXY_V2_FIXED_LENGTH + body.length > PROXY_V2_MAX_LENGTH) {
    throw buildError(`header of ${PROXY_V2_FIXED_LENGTH + body.length} bytes is over ${PROXY_V2_MAX_LENGTH}`);
  }
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | (command === 'LOCAL' ? 0x0 : 0x1);
  fixed[1] = fam;
  fixed.writeUInt16BE(body.length, 2);
  const header = Buffer.concat([PROXY_V2_SIGNATURE, fixed, body]);
  // Spec §2.2.3: the checksum is computed with its own field zeroed, then written in network order.
  if (opts.crc32c === true) header.writeUInt32BE(crc32c(header), header.length - 4);
  return header;
}

function tlvHead(type: number, length: number): Buffer {
  const b = Buffer.alloc(3);
  b[0] = type;
  b.writeUInt16BE(length, 1);
  return b;
}

/** Both addresses as 4-byte (both IPv4 or IPv4-mapped) or 16-byte values; undefined when not one family. */
function ipPair(a: string, b: string): [Buffer, Buffer] | undefined {
  const x = ipBytes(a);
  const y = ipBytes(b);
  if (x === undefined || y === undefined) return undefined;
  const x4 = unmapped(x);
  const y4 = unmapped(y);
  if (x4 !== undefined && y4 !== undefined) return [x4, y4];
  if (x.length === 16 && y.length === 16) return [x, y];
  return undefined;
}

function unmapped(b: Buffer): Buffer | undefined {
  if (b.length === 4) return b;
  const mapped = b.subarray(0, 10).every((v) => v === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.subarray(12) : undefined;
}

/** IP text → network-order bytes (zone identifiers dropped: they mean nothing to the receiver). */
function ipBytes(text: string): Buffer | undefined {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text)) return undefined;
  let t = text.includes('%') ? text.slice(0, text.indexOf('%')) : text;
  const lastColon = t.lastIndexOf(':');
  const tail = t.slice(lastColon + 1);
  if (tail.includes('.')) {
    // A trailing dotted quad is the last two 16-bit groups.
    const q = tail.split('.').map(Number);
    t = `${t.slice(0, lastColon + 1)}${(((q[0] ?? 0) << 8) | (q[1] ?? 0)).toString(16)}:${(((q[2] ?? 0) << 8) | (q[3] ?? 0)).toString(16)}`;
  }
  const halves = t.split('::');
  const head = halves[0] === '' ? [] : halves[0]!.split(':');
  const tailGroups = halves.length === 2 && halves[1] !== '' ? halves[1]!.split(':') : [];
  const zeros = halves.length === 2 ? 8 - head.length - tailGroups.length : 0;
  const groups = [...head, ...Array<string>(zeros).fill('0'), ...tailGroups];
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function isUnixPath(a: string): boolean {
  return a.startsWith('/') || a.startsWith('@');
}

/** 108-byte sun_path, NUL-padded; "@name" is a Linux abstract socket (leading NUL). */
function unixPath(a: string): Buffer {
  const raw = a.startsWith('@') ? Buffer.concat([Buffer.from([0]), Buffer.from(a.slice(1), 'latin1')]) : Buffer.from(a, 'utf8');
  // Keep one NUL at the end so a path reads back unambiguously.
  if (raw.length > 107) throw buildError(`unix socket path "${a}" is over 107 bytes`);
  const out = Buffer.alloc(108);
  raw.copy(out);
  return out;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw buildError(`port ${port} is not 0-65535`);
}

function buildError(detail: string): TwinportError {
  return new TwinportError('TWP_ERR_PROXY_HEADER_BUILD', detail);
}
