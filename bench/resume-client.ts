// P1's resumption-heavy client: `clients` simulated TLS clients, each with a home source address on
// loopback (127.0.1.x) and the last session it received, open `connections` connections — each client
// once, then a random idle client each time — at most `concurrency` at a time. A client's first
// connection is a full handshake; each later one offers its saved session (TLS 1.3 PSK, or a TLS 1.2
// ticket with `maxVersion: TLSv1.2`) with probability `resumeShare`, else starts afresh (a client that
// lost its cache). With probability `roamShare` a connection comes from another client's address (NAT
// rebinding, a phone changing networks): the case only affinity, not a source-address hash, sends back
// to the server holding the session.
//
// Each connection sends one `Connection: close` request and reads the response: the backend names
// itself (`x-backend`) and says whether it resumed the session (`x-resumed: r`, nginx's
// $ssl_session_reused); the client's own `isSessionReused()` is counted too. Bounded in count and in
// time (`deadlineMs`). Prints one JSON line (ResumeResult).
//
//   node dist/bench/resume-client.js '{"port":…,"connections":2000,…}'
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../test/helpers/prng.js';

export interface ResumeSpec {
  readonly port: number;
  readonly servername: string;
  readonly connections: number;
  readonly concurrency: number;
  readonly clients: number;
  readonly resumeShare: number;
  readonly roamShare: number;
  readonly maxVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly deadlineMs: number;
  /** PRNG seed: the same seed makes the same sequence of clients, offers and roams. */
  readonly seed: number;
}

export interface ResumeResult {
  /** Connections that completed a request. */
  readonly completed: number;
  readonly failed: number;
  /** Connections not started because the deadline passed. */
  readonly notStarted: number;
  /** Completed connections that offered a saved session. */
  readonly offered: number;
  /** Of those, resumed according to the server (`x-resumed`) and to the client (`isSessionReused()`). */
  readonly resumedByServer: number;
  readonly resumedByClient: number;
  /** Completed offers that came from another client's address. */
  readonly roamed: number;
  readonly resumedRoamed: number;
  /** Completed connections per backend (`x-backend`). */
  readonly backends: Readonly<Record<string, number>>;
  readonly ms: number;
  readonly firstError?: string;
}


/** Client k's home address; 127.0.0.0/8 is all loopback on Linux, so each is a distinct source. */
export function homeAddress(k: number): string {
  return `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;
}

interface Outcome {
  readonly backend: string | undefined;
  readonly serverResumed: boolean;
  readonly clientResumed: boolean;
  readonly session: Buffer | undefined;
}

const HEADER_END = '\r\n\r\n';

function header(head: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:\\s*(\\S+)`, 'im').exec(head);
  return m?.[1];
}

function connectOnce(spec: ResumeSpec, localAddress: string, session: Buffer | undefined, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: spec.port, localAddress });
    const c = tls.connect({
      socket,
      servername: spec.servername,
      rejectUnauthorized: false, // the backends' certificates are self-signed
      maxVersion: spec.maxVersion,
      ...(session !== undefined && { session }),
    });
    let latest: Buffer | undefined;
    let clientResumed = false;
    let text = '';
    const timer = setTimeout(() => c.destroy(new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
    c.on('session', (s: Buffer) => (latest = s));
    c.once('secureConnect', () => {
      clientResumed = c.isSessionReused();
      c.write(`GET / HTTP/1.1\r\nHost: ${spec.servername}\r\nConnection: close\r\n\r\n`);
    });
    c.setEncoding('latin1');
    c.on('data', (d: string) => {
      if (!text.includes(HEADER_END)) text += d;
    });
    c.once('error', (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
    c.once('end', () => c.end());
    c.once('close', (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const head = text.slice(0, Math.max(0, text.indexOf(HEADER_END)));
      if (!/^HTTP\/1\.1 200 /.test(head)) {
        reject(new Error(`unexpected response: ${JSON.stringify(head.slice(0, 80))}`));
        return;
      }
      resolve({ backend: header(head, 'x-backend'), serverResumed: header(head, 'x-resumed') === 'r', clientResumed, session: latest ?? session });
    });
  });
}

export async function runResumeClient(spec: ResumeSpec): Promise<ResumeResult> {
  const random = mulberry32(spec.seed);
  const sessions: (Buffer | undefined)[] = new Array<Buffer | undefined>(spec.clients).fill(undefined);
  const busy = new Set<number>();
  const backends: Record<string, number> = {};
  let next = 0;
  let completed = 0;
  let failed = 0;
  let offered = 0;
  let resumedByServer = 0;
  let resumedByClient = 0;
  let roamed = 0;
  let resumedRoamed = 0;
  let firstError: string | undefined;
  const started = Date.now();
  const deadline = started + spec.deadlineMs;

  const worker = async (): Promise<void> => {
    while (next < spec.connections && Date.now() < deadline) {
      const j = next++;
      // A random client not connected now (so a connection never races its own client's previous one).
      // Random, not in turn: with clients taking turns, a client count that is a multiple of the pool
      // size would put every client back on the same round-robin server.
      let k = j < spec.clients ? j : Math.floor(random() * spec.clients);
      while (busy.has(k)) k = (k + 1) % spec.clients;
      busy.add(k);
      const saved = sessions[k];
      const offer = saved !== undefined && random() < spec.resumeShare;
      const roam = random() < spec.roamShare;
      const from = roam ? homeAddress(Math.floor(random() * spec.clients)) : homeAddress(k);
      try {
        const o = await connectOnce(spec, from, offer ? saved : undefined, Math.max(1000, deadline - Date.now()));
        completed++;
        sessions[k] = o.session;
        if (o.backend !== undefined) backends[o.backend] = (backends[o.backend] ?? 0) + 1;
        if (offer) {
          offered++;
          if (o.serverResumed) resumedByServer++;
          if (o.clientResumed) resumedByClient++;
          if (roam) {
            roamed++;
            if (o.serverResumed) resumedRoamed++;
          }
        }
      } catch (e) {
        failed++;
        firstError ??= (e as Error).message;
      } finally {
        busy.delete(k);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.clients) }, () => worker()));
  return {
    completed,
    failed,
    notStarted: spec.connections - next,
    offered,
    resumedByServer,
    resumedByClient,
    roamed,
    resumedRoamed,
    backends,
    ms: Date.now() - started,
    ...(firstError !== undefined && { firstError }),
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ResumeSpec;
  process.stdout.write(`${JSON.stringify(await runResumeClient(spec))}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
    process.exitCode = 1;
  });
}
