// CIDR blocks for `source` rules and `proxy_protocol.trusted`. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d,
// what a dual-stack listener reports) are compared as IPv4, client addresses and config blocks alike.
import { isIPv4, isIPv6 } from '../protocol/ip-address.js';
import type { Cidr } from '../config/types.js';

export function ipToBytes(ip: string): Buffer | undefined {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) return undefined;
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A trailing dotted quad is two 16-bit groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const q = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined ? [] : rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Unmaps ::ffff:a.b.c.d so an IPv4 rule matches a dual-stack socket's address. */
export function normaliseIp(bytes: Buffer): Buffer {
  if (bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return bytes.subarray(12);
  }
  return bytes;
}

/** ::ffff:0:0, the IPv4-mapped block (RFC 4291 §2.5.5.2), /96. */
const MAPPED_NETWORK = Buffer.from('00000000000000000000ffff00000000', 'hex');
const MAPPED_PREFIX = 96;

/** A copy of `bytes` with every bit from `prefix` on cleared. */
function networkOf(bytes: Buffer, prefix: number): Buffer {
  const network = Buffer.from(bytes);
  for (let bit = prefix; bit < network.length * 8; bit++) network[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return network;
}

/**
 * A block of the config, in the form client addresses are compared in. A block inside ::ffff:0:0/96 is
 * unmapped to IPv4 (prefix − 96): the client it is meant for, `::ffff:127.0.0.5` on a dual-stack
 * listener, is unmapped before the comparison (normaliseIp), so kept as IPv6 the block could never match
 * (security review F12: a deny route failed open, a `trusted` balancer was refused). `text` stays as
 * written, for logs. A wider IPv6 block holding all of ::ffff:0:0/96 is refused (docs/routing.md).
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const bytes = ipToBytes(addr);
  if (bytes === undefined) return `"${text}" is not an IP address or CIDR block`;
  const family = bytes.length === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `"${text}" has an invalid prefix length (0-${max})`;
    prefix = Number(p);
  }
  const network = networkOf(bytes, prefix);
  if (family === 4) return Object.freeze({ text, family, network, prefix });
  if (prefix >= MAPPED_PREFIX && networkOf(network, MAPPED_PREFIX).equals(MAPPED_NETWORK)) {
    return Object.freeze({ text, family: 4, network: Buffer.from(network.subarray(12)), prefix: prefix - MAPPED_PREFIX });
  }
  // A wider IPv6 block holding all of ::ffff:0:0/96 (`::/64`, `::ffff:0:0/80`) reads as if it covered IPv4
  // clients too, and it never does: they are compared as IPv4. `::/0` is the exception, the usual way to
  // say "every IPv6 client" next to 0.0.0.0/0.
  if (prefix > 0 && prefix < MAPPED_PREFIX && networkOf(MAPPED_NETWORK, prefix).equals(network)) {
    return (
      `"${text}" holds the IPv4-mapped block ::ffff:0:0/96, but an IPv6 block never matches an IPv4 client ` +
      `(a dual-stack listener's ::ffff:a.b.c.d is compared as a.b.c.d): write IPv4 clients as IPv4 blocks ` +
      `("0.0.0.0/0" for all), and all IPv6 clients as "::/0"`
    );
  }
  return Object.freeze({ text, family, network, prefix });
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const raw = ipToBytes(ip);
  if (raw === undefined) return false;
  const bytes = normaliseIp(raw);
  if (bytes.length !== cidr.network.length) return false;
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== cidr.network[i]) return false;
  const rem = cidr.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (bytes[full]! & mask) === cidr.network[full];
}

export function anyCidrContains(cidrs: readonly Cidr[], ip: string): boolean {
  return cidrs.some((c) => cidrContains(c, ip));
}
