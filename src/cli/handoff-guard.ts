// Under `--workers` with round-robin scheduling, node:cluster's primary accepts each connection and sends
// its handle to a worker ({ act: 'newconn' }); it closes its own copy only when the worker acknowledges
// (lib/internal/cluster/round_robin_handle.js). A worker that dies between the two never acknowledges, and
// the primary keeps that descriptor for good: the client hangs until its own timeout, and the socket sits
// in CLOSE_WAIT in the primary (issue: "a worker crash hangs one client and leaks its socket").
//
// node:cluster offers no hook for it, so the primary watches its own IPC traffic: a hand-off is noted when
// it is sent and forgotten when its ack arrives; when the worker exits, the hand-offs it never acknowledged
// are closed. The client then sees its connection end at once, as the dead worker's other connections do;
// a hand-off is never sent again to another worker, since the dead one may have read from it already.
//
// It reads node:cluster's internal message shape ({ cmd: 'NODE_CLUSTER', act: 'newconn', seq } out,
// { cmd: 'NODE_CLUSTER', ack: seq } back, Node 20 lib/internal/cluster/utils.js); where that shape is not
// met nothing is tracked and node's own behaviour is unchanged.
import type { Worker } from 'node:cluster';

interface ClusterMessage {
  readonly cmd?: unknown;
  readonly act?: unknown;
  readonly seq?: unknown;
  readonly ack?: unknown;
}

interface Closable {
  close(cb?: () => void): void;
}

/** Starts watching one worker's hand-offs; returns how many were closed when it exited (for logs/tests). */
export function guardHandoffs(worker: Worker, onClosed: (count: number) => void): void {
  const pending = new Map<number, Closable>();
  const proc = worker.process;
  const send = proc.send.bind(proc) as (...args: unknown[]) => boolean;
  (proc as unknown as { send: (...args: unknown[]) => boolean }).send = (...args: unknown[]): boolean => {
    const [message, handle] = args as [ClusterMessage | undefined, Closable | undefined];
    if (message?.cmd === 'NODE_CLUSTER' && message.act === 'newconn' && typeof message.seq === 'number' && typeof handle?.close === 'function') {
      pending.set(message.seq, handle);
    }
    return send(...args);
  };
  proc.on('internalMessage', (message: ClusterMessage) => {
    if (message?.cmd === 'NODE_CLUSTER' && typeof message.ack === 'number') pending.delete(message.ack);
  });
  worker.once('exit', () => {
    const count = pending.size;
    for (const handle of pending.values()) {
      try {
        handle.close();
      } catch {
        // Already closed by node itself: nothing held.
      }
    }
    pending.clear();
    if (count > 0) onClosed(count);
  });
}
