// The listening sockets of a `--workers` cluster, held by the primary: inherited ones (systemd, or the
// process this one upgraded from), and those the primary binds itself for the other listeners. Workers
// take them all by descriptor (`listen({ fd })`, which node:cluster sends to the primary: it opens its own
// descriptor and hands connections out), so the primary always knows the descriptors a binary upgrade
// must pass on, and a new worker set (rolling restart) finds the same sockets.
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { ListenerConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { describeListenFds, INHERITED_ENV, takeListenFdsFor, type InheritedSocket } from '../proxy/listen-fds.js';

/**
 * net's own server-handle factory (what node:cluster uses): it creates and binds a TCP socket without
 * listening on it or watching it, so the one libuv handle that will accept on the descriptor is the one
 * node:cluster opens when a worker listens. Bound but not yet listening, the port is refused for the
 * instant before the first worker listens, as it was when the first worker bound it.
 */
type ServerHandleFactory = (
  address: string | null,
  port: number,
  addressType: 4 | 6 | -1,
  fd: number | undefined,
  flags: number,
) => { fd: number; close(): void } | number;
const createServerHandle = (net as unknown as { _createServerHandle: ServerHandleFactory })._createServerHandle;

export class PrimarySockets {
  private readonly sockets: InheritedSocket[];
  /** The handles behind the descriptors the primary bound: kept (never closed) so nothing closes them. */
  private readonly held = new Map<number, { close(): void }>();

  constructor(inherited: readonly InheritedSocket[] | undefined) {
    this.sockets = [...(inherited ?? [])];
  }

  /** Binds every listener that has no socket yet; the list then goes to the workers' environment. */
  async ensure(listeners: readonly ListenerConfig[], strict: boolean): Promise<void> {
    const taken = takeListenFdsFor(listeners, this.sockets.length === 0 ? undefined : this.sockets, strict && this.sockets.length > 0);
    for (const l of listeners) {
      if (taken.has(l.bind.text) || this.sockets.some((s) => s.bind === l.bind.text)) continue;
      const { address, family } = await lookup(l.bind.host).catch((e: Error) => {
        throw new TwinportError('TWP_ERR_LISTEN', `${l.name} (${l.bind.text}): ${e.message}`, { cause: e });
      });
      const handle = createServerHandle(address, l.bind.port, family === 6 ? 6 : 4, undefined, 0);
      if (typeof handle === 'number') {
        const err = new Error(`bind ${l.bind.text}: ${errnoName(handle)}`);
        throw new TwinportError('TWP_ERR_LISTEN', `${l.name} (${l.bind.text}): ${err.message}`, { cause: err });
      }
      this.held.set(handle.fd, handle);
      const [described] = describeListenFds([{ fd: handle.fd, name: fdName(l.name) }]);
      // Not listening yet, so /proc does not list it among listening sockets: the address is the bind's.
      this.sockets.push({ ...described!, bind: l.bind.text, address: described?.address ?? { host: address, port: l.bind.port } });
    }
    process.env[INHERITED_ENV] = JSON.stringify(this.sockets);
  }

  list(): readonly InheritedSocket[] {
    return this.sockets;
  }

  /**
   * After a binary upgrade, before the workers are retired (`--scheduling rr`): node:cluster's handle in
   * this process accepts on each socket and queues connections for the workers, and closes whatever is
   * still queued when the last worker leaves, which the clients see as a reset. Closing the primary's own
   * handle on the same descriptor takes the descriptor out of this process's epoll set (libuv removes it
   * on close, so that a description shared with another process sends no stray events), so no more
   * connections are accepted here and the new process takes them all; what was queued is handed out to
   * the workers, which still accept. node:cluster closes its handle later, when the last worker leaves:
   * by then the number may be reused, which is why this is done only in a primary that is exiting.
   */
  stopAcceptingHere(): void {
    for (const s of this.sockets) {
      let h = this.held.get(s.fd);
      if (h === undefined) {
        const opened = createServerHandle(null, -1, -1, s.fd, 0);
        if (typeof opened === 'number') continue;
        h = opened;
      }
      this.held.delete(s.fd);
      h.close();
    }
  }

  /**
   * Forgets the sockets no listener of `listeners` takes (a reload removed them), so that the next
   * workers are not refused for a socket nobody binds. The descriptors are not closed here: node:cluster
   * closes its own once the last worker listening on it is gone.
   */
  retain(listeners: readonly ListenerConfig[]): InheritedSocket[] {
    const kept = takeListenFdsFor(listeners, this.sockets, false);
    const fds = new Set([...kept.values()].map((s) => s.fd));
    const dropped = this.sockets.filter((s) => !fds.has(s.fd));
    this.sockets.splice(0, this.sockets.length, ...this.sockets.filter((s) => fds.has(s.fd)));
    process.env[INHERITED_ENV] = JSON.stringify(this.sockets);
    return dropped;
  }
}

function errnoName(code: number): string {
  try {
    return getSystemErrorName(code);
  } catch {
    return `errno ${-code}`;
  }
}

/** A LISTEN_FDNAMES entry: systemd's FileDescriptorName= characters only (a bind text has colons). */
export function fdName(text: string): string {
  return text.replace(/[^\x21-\x39\x3b-\x7e]/g, '_').slice(0, 255) || 'unknown';
}
