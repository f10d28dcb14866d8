// A child process of test/native/splice-native.test.ts: twinport in-process on the native engine, with
// an echo backend, so the parent can hold more idle pairs than one process's descriptor limit allows
// (each pair costs the addon's process two descriptors and the backend one). It answers the parent's
// messages with the addon's live count, its own open descriptors and the close lines logged so far.
import { readdirSync } from 'node:fs';
import net, { type AddressInfo, type Socket } from 'node:net';
import { NATIVE } from '../../src/io/native.js';
import { startProxy } from '../helpers/proxy-harness.js';

export interface HolderStats {
  readonly port: number;
  readonly live: number;
  readonly fds: number;
  /** Descriptors once the proxy and the backend were listening, before any connection. */
  readonly fdsAtStart: number;
  readonly closes: number;
  /** `reason detail` of every close line that is not `done`. */
  readonly notDone: readonly string[];
  readonly activeConnections: number;
  /** Connections the echo backend accepted so far. */
  readonly accepted: number;
}

export type HolderMessage = { readonly ready: HolderStats } | { readonly stats: HolderStats } | { readonly error: string };

const send = (m: HolderMessage): void => {
  process.send!(m);
};

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function main(): Promise<void> {
  const engine = NATIVE.engine;
  if (engine === undefined) {
    send({ error: `native engine unavailable: ${NATIVE.why}` });
    return;
  }
  const sockets = new Set<Socket>();
  let accepted = 0;
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    // The request head is read and dropped; a single byte is the parent's probe, echoed.
    s.on('data', (d: Buffer) => {
      if (d.length === 1) s.write(d);
    });
    s.on('end', () => s.end());
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', 4096, () => r()));
  const proxy = await startProxy(`
io_engine: native
listeners:
  - name: main
    bind: "127.0.0.1:0"
    timeouts: { peek: 30s, connect: 10s, idle: 120s }
    routes: [{ match: { protocol: http }, to: web }]
pools:
  web: { servers: ["127.0.0.1:${(backend.address() as AddressInfo).port}"] }
`);
  const fdsAtStart = openFds();
  const stats = (): HolderStats => {
    const closes = proxy.logs.closes();
    return {
      port: proxy.port(),
      live: engine.live(),
      fds: openFds(),
      fdsAtStart,
      closes: closes.length,
      notDone: closes.filter((l) => l['reason'] !== 'done').map((l) => `${String(l['reason'])} ${String(l['detail'])}`),
      activeConnections: proxy.runtime.activeConnections,
      accepted,
    };
  };
  process.on('message', (m: unknown) => {
    if (m === 'stats') send({ stats: stats() });
    else if (m === 'stop') {
      for (const s of sockets) s.destroy();
      void proxy.stop().then(() => backend.close(() => process.disconnect()));
    }
  });
  send({ ready: stats() });
}

main().catch((e: unknown) => send({ error: (e as Error).stack ?? String(e) }));
