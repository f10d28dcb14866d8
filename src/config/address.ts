// Listener binds and server addresses as config text: "host:port", "[v6]:port", "unix:/path" (docs/config.md).
import { isIPv4, isIPv6 } from 'node:net';
import type { ServerAddress } from './types.js';

export interface HostPort {
  readonly host: string; // IPv6 without brackets, as net.listen / net.connect want it
  readonly port: number;
}

// RFC 1123 §2.1 host names: labels of letters, digits and inner hyphens, up to 63 characters, 253 in all.
const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL; a longer path fails only at
 * connect time with a confusing ENAMETOOLONG or a silently truncated name.
 */
const MAX_UNIX_PATH = 107;

/** A DNS host name (RFC 1123 §2.1), not an IP address: what an SNI HostName may hold (RFC 6066 §3). */
export function isHostName(text: string): boolean {
  return HOSTNAME.test(text) && !/^[0-9.]+$/.test(text);
}

function parsePort(text: string, allowZero: boolean): number | string {
  const lowest = allowZero ? 0 : 1;
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535 || Number(text) < lowest) {
    return `port "${text}" must be a number from ${lowest} to 65535`;
  }
  return Number(text);
}

export function parseHostPort(text: string, allowPortZero: boolean): HostPort | string {
  const example = allowPortZero ? '"127.0.0.1:5000" or "[::1]:5000"' : '"10.0.0.1:443" or "[2001:db8::1]:443"';
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracket !== null) {
    const host = bracket[1]!;
    if (!isIPv6(host)) return `"${host}" in brackets is not an IPv6 address`;
    if (bracket[2] === undefined) return `"${text}" has no port: write ${example}`;
    const port = parsePort(bracket[2], allowPortZero);
    return typeof port === 'string' ? port : { host, port };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) return `"${text}" has no port: write ${example}`;
  const host = text.slice(0, colon);
  if (host.includes(':')) return `"${text}": an IPv6 address needs brackets, as in "[::1]:5000"`;
  if (host === '') return `"${text}" has no host: write ${example} (0.0.0.0 or [::] for all addresses)`;
  // All-digit dotted names are never host names: "300.1.1.1" is a mistyped IPv4 address.
  if (/^[0-9.]+$/.test(host) ? !isIPv4(host) : !HOSTNAME.test(host)) return `"${host}" is not an IP address or host name`;
  const port = parsePort(text.slice(colon + 1), allowPortZero);
  return typeof port === 'string' ? port : { host, port };
}

/**
 * systemd's FileDescriptorName= (systemd.socket(5)): up to 255 printable ASCII characters, no colon
 * (LISTEN_FDNAMES separates names with colons).
 */
const FD_NAME = /^[\x21-\x39\x3b-\x7e]{1,255}$/;

/** A listener bind: "host:port" (port 0 asks the OS for a free port), or "fd:NAME", an inherited socket. */
export function parseBind(text: string): (HostPort & { readonly text: string; readonly fdName?: string }) | string {
  if (text.startsWith('fd:')) {
    const name = text.slice('fd:'.length);
    if (!FD_NAME.test(name)) return `"${text}": NAME must be 1-255 printable ASCII characters without ":" or spaces, as systemd's FileDescriptorName= allows`;
    return { text, host: '', port: 0, fdName: name };
  }
  const hp = parseHostPort(text, true);
  return typeof hp === 'string' ? hp : { text, host: hp.host, port: hp.port };
}

export function parseServerAddress(text: string): ServerAddress | string {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) return `"${text}": a unix socket path must be absolute ("unix:/run/app.sock")`;
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) return `"${text}": unix socket paths are limited to ${MAX_UNIX_PATH} bytes`;
    return { text, path };
  }
  const hp = parseHostPort(text, false);
  return typeof hp === 'string' ? hp : { text, host: hp.host, port: hp.port };
}
