// Listening sockets a process inherits instead of binding (sd_listen_fds(3)): from systemd socket
// activation, or from the twinport that spawned this one for a binary upgrade (same convention, so one
// code path serves both). LISTEN_PID names the process the descriptors are for, LISTEN_FDS how many there
// are from fd 3 on, LISTEN_FDNAMES their colon-separated names (FileDescriptorName=).
import { readFileSync, readlinkSync } from 'node:fs';
import type { ListenerConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { ipToBytes } from '../routing/cidr.js';

/** sd_listen_fds(3): the first passed descriptor. */
export const SD_LISTEN_FDS_START = 3;

export interface InheritedSocket {
  readonly fd: number;
  /** FileDescriptorName=, or "unknown" when none was given (what systemd itself reports then). */
  readonly name: string;
  /** The bound TCP address, when the descriptor is a listening TCP socket. */
  readonly address?: { readonly host: string; readonly port: number };
  /** The bind text it was opened for, when a cluster primary bound it for its workers. */
  readonly bind?: string;
}

/** Cluster workers read the primary's sockets from here (they do not hold the descriptors themselves). */
export const INHERITED_ENV = 'TWINPORT_INHERITED_SOCKETS';

/**
 * The descriptors passed to `pid`, or undefined when the environment passes none to it. Like
 * sd_listen_fds(unset_environment=1), the LISTEN_* variables are removed from `env` once read, so that
 * no child (a worker, a helper) takes them for its own.
 */
export function takeListenFds(env: NodeJS.ProcessEnv, pid: number): { fd: number; name: string }[] | undefined {
  const ownerText = env['LISTEN_PID'];
  const countText = env['LISTEN_FDS'];
  if (ownerText === undefined || countText === undefined) return undefined;
  const names = env['LISTEN_FDNAMES']?.split(':') ?? [];
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  if (Number(ownerText) !== pid) return undefined;
  const count = Number(countText);
  if (!Number.isInteger(count) || count < 1) return undefined;
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}

/** Adds each descriptor's bound address, read from /proc (Linux): no syscall Node exposes gives it. */
export function describeListenFds(fds: readonly { fd: number; name: string }[]): InheritedSocket[] {
  const listening = listeningTcpByInode();
  return fds.map(({ fd, name }) => {
    let inode: string | undefined;
    try {
      inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    } catch {
      // Not open: described without an address, and the match below names it.
    }
    const address = inode === undefined ? undefined : listening.get(inode);
    return address === undefined ? { fd, name } : { fd, name, address };
  });
}

/** inode → local address of every listening TCP socket in this network namespace. */
function listeningTcpByInode(): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; 0A is TCP_LISTEN.
      if (f.length < 10 || f[3] !== '0A') continue;
      const [hex, portHex] = f[1]!.split(':');
      if (hex === undefined || portHex === undefined) continue;
      out.set(f[9]!, { host: v6 ? ipv6FromProc(hex) : ipv4FromProc(hex), port: parseInt(portHex, 16) });
    }
  }
  return out;
}

/** /proc/net/tcp prints the address as the u32 in host byte order (little-endian here). */
function ipv4FromProc(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
}

function ipv6FromProc(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const n = parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    bytes.push(n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24);
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

function describe(s: InheritedSocket): string {
  const where = s.address === undefined ? 'not a listening TCP socket' : `${s.address.host.includes(':') ? `[${s.address.host}]` : s.address.host}:${s.address.port}`;
  return `fd ${s.fd} "${s.name}" (${where})`;
}

function sameAddress(bind: ListenerConfig['bind'], a: { host: string; port: number }): boolean {
  if (bind.port !== a.port || bind.port === 0) return false;
  const x = ipToBytes(bind.host);
  const y = ipToBytes(a.host);
  return x !== undefined && y !== undefined && x.equals(y);
}

/**
 * Which inherited socket each listener takes (by bind text): `fd:NAME` by name, `host:port` by address.
 * With `strict` (at start) every listener must take one and every socket must be taken, else one error
 * names both sides; otherwise (a reload adding a listener) a bind without a socket simply binds.
 */
export function matchListenFds(
  listeners: readonly ListenerConfig[],
  inherited: readonly InheritedSocket[],
  strict: boolean,
): Map<string, InheritedSocket> {
  const taken = new Map<string, InheritedSocket>();
  const used = new Set<number>();
  const problems: string[] = [];
  for (const l of listeners) {
    const free = inherited.filter((s) => !used.has(s.fd));
    const found =
      l.bind.fdName !== undefined
        ? free.filter((s) => s.name === l.bind.fdName)
        : free.some((s) => s.bind === l.bind.text)
          ? free.filter((s) => s.bind === l.bind.text)
          : free.filter((s) => s.address !== undefined && sameAddress(l.bind, s.address));
    if (found.length > 1) {
      problems.push(`listener "${l.name}" bind "${l.bind.text}" matches ${found.length} inherited sockets: ${found.map(describe).join(', ')}`);
    } else if (found.length === 1) {
      taken.set(l.bind.text, found[0]!);
      used.add(found[0]!.fd);
    } else if (l.bind.fdName !== undefined) {
      problems.push(`listener "${l.name}" bind "${l.bind.text}": no inherited socket is named "${l.bind.fdName}"`);
    } else if (strict) {
      problems.push(`listener "${l.name}" bind "${l.bind.text}": no inherited socket is bound to that address (an IP address and port, or fd:NAME, can match)`);
    }
  }
  if (strict) for (const s of inherited) if (!used.has(s.fd)) problems.push(`inherited ${describe(s)}: no listener binds it`);
  if (problems.length > 0) {
    const sockets = inherited.map(describe).join(', ');
    const binds = listeners.map((l) => `"${l.name}" ${l.bind.text}`).join(', ');
    throw new TwinportError('TWP_ERR_LISTEN_FDS', `${problems.join('; ')}. Inherited: ${sockets || 'none'}. Listeners: ${binds}`);
  }
  return taken;
}

/**
 * matchListenFds for listeners being opened: without inherited sockets, only an `fd:NAME` bind is wrong
 * (there is nothing to take it from).
 */
export function takeListenFdsFor(
  listeners: readonly ListenerConfig[],
  inherited: readonly InheritedSocket[] | undefined,
  strict: boolean,
): Map<string, InheritedSocket> {
  if (inherited !== undefined) return matchListenFds(listeners, inherited, strict);
  const wanting = listeners.filter((l) => l.bind.fdName !== undefined);
  if (wanting.length === 0) return new Map();
  throw new TwinportError(
    'TWP_ERR_LISTEN_FDS',
    `${wanting.map((l) => `listener "${l.name}" bind "${l.bind.text}"`).join(', ')}: no sockets were inherited (LISTEN_PID/LISTEN_FDS pass none to this process: start it from a systemd socket unit or systemd-socket-activate)`,
  );
}
