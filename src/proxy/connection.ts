// One client connection through its whole life (docs/architecture.md):
//   accept ─► peek ─► route ─► connect ─► splice ─► close
// Every exit goes through `finish(reason)`, which runs once: both sockets closed, one close log line,
// one outcome counter. Nothing here parses bytes (protocol/) or decides where to go (routing/).
// On a listener with a `migration` block, plaintext may instead be answered by twinport itself, decided
// after the peek and before any backend is chosen (migration/phase.ts):
//   accept ─► peek ─► answer (write, FIN, read and discard) ─► close
import type { ListenerConfig, MigrationPhase, RouteConfig } from '../config/types.js';
import { decideMigration } from '../migration/phase.js';
import { offeredTlsVersion, type ClientOutcome } from '../migration/record.js';
import { h2cGoaway, redirectResponse, rejectResponse } from '../migration/response.js';
import type { HttpFields } from '../protocol/http-head.js';
import { Detector, type Detection } from '../protocol/detector.js';
import type { ProxyHeader } from '../protocol/proxy-header.js';
import type { TlsFields } from '../protocol/tls-client-hello.js';
import { anyCidrContains } from '../routing/cidr.js';
import { matchRoute } from '../routing/route-match.js';
import type { AffinityChoice, PoolAffinity } from '../affinity/affinity-pool.js';
import { watchServerFlight } from '../affinity/affinity-watcher.js';
import { CHUNKS, CLIENT, SERVER, type Endpoint, type EndpointSink, type Side } from '../io/endpoint.js';
import { factsFromMatch, type PeekFacts } from './facts.js';
import { connectEndpoint } from '../io/io-engine.js';
import { NativeSocketEndpoint } from '../io/native-socket.js';
import { NATIVE, type NativeCounts, type NativeOwner, type NativeReason } from '../io/native.js';
import { PeekBuffer } from './peek-buffer.js';
import type { PoolQueue, QueueWaiter } from './pool-queue.js';
import { buildServerProxyHeader } from './proxy-header-out.js';
import type { CloseReason } from './reasons.js';
import type { ListenerContext, PoolRuntime } from './listener-context.js';

type Phase = 'peek' | 'connect' | 'splice' | 'answer' | 'closed';

/** One connection as the admin API lists it (`GET /connections`). */
export interface ConnectionView {
  readonly id: number;
  readonly listener: string;
  readonly client: string | undefined;
  readonly state: Phase;
  readonly protocol?: string;
  readonly sni?: string;
  readonly host?: string;
  readonly pool?: string;
  readonly server?: string;
  readonly ageMs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/**
 * After twinport answered a client itself it sends FIN and keeps reading (and discarding) until the
 * client's FIN: closing with the rest of a request unread in the receive buffer would send a RST (RFC 9112
 * §9.6, "Tear-down"), which can make the client drop our response before reading it. Bounded: 2 s with
 * no byte from the client, 10 s in all (nginx's lingering_timeout / lingering_time are 5 s / 30 s).
 */
const LINGER_IDLE_MS = 2000;
/** See armIdleTimer: how finely the last activity of a splice is dated (idle/8: at most 12.5% late). */
const IDLE_CHECKS = 8;
const LINGER_MAX_MS = 10_000;
type PeekTrigger = 'eof' | 'deadline' | 'cap';

const PEEK_REASON: Record<PeekTrigger, CloseReason> = {
  eof: 'peek-eof',
  deadline: 'peek-timeout',
  cap: 'peek-too-large',
};

/** Errors on a socket that mean the peer went away abruptly rather than a bug of ours. */
function isReset(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT';
}

export function formatAddress(ip: string | undefined, port: number | undefined): string | undefined {
  if (ip === undefined) return undefined;
  const host = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === undefined ? shown : `${shown}:${port}`;
}

const OTHER_FACTS: PeekFacts = Object.freeze({ protocol: 'other' });

/** Reads this big or bigger are copied into a reusable buffer; smaller ones into Node's 8 KiB pool. */
const POOLED_MIN = 4096;

/** An unowned read copied out of the shared buffer: a CHUNKS buffer (`pooled`) for big reads. */
let copied: Buffer = Buffer.alloc(0);
let copiedPool: Buffer | undefined;
function copyOut(n: number, buf: Buffer): void {
  if (n < POOLED_MIN) {
    copied = Buffer.allocUnsafe(n);
    copiedPool = undefined;
  } else {
    copiedPool = CHUNKS.take();
    copied = copiedPool.subarray(0, n);
  }
  buf.copy(copied, 0, 0, n);
}

/** The close line shows at most this many ALPN names, each cut at LOG_ALPN_CHARS with a "…" marker. */
const LOG_ALPN_NAMES = 8;
const LOG_ALPN_CHARS = 32;

function boundedAlpn(names: readonly string[]): string[] {
  return names.slice(0, LOG_ALPN_NAMES).map((n) => (n.length <= LOG_ALPN_CHARS ? n : `${n.slice(0, LOG_ALPN_CHARS)}…`));
}

export class Connection implements EndpointSink, NativeOwner {
  readonly id: number;
  /** The listener handle that accepted it (opaque here; runtime.ts keeps per-listener counts). */
  owner: unknown;
  private phase: Phase = 'peek';
  private readonly started = performance.now();
  private readonly peek = new PeekBuffer();
  /** Dropped once the peek is over. */
  private detector: Detector | undefined;
  private readonly listener: ListenerConfig;
  private timer: NodeJS.Timeout | undefined;
  private upstream: Endpoint | undefined;
  private upstreamClosed = false;
  private clientClosed = false;
  private reason: CloseReason | undefined;
  private detail: string | undefined;
  private facts: PeekFacts | undefined;
  private proxyIn: ProxyHeader | undefined;
  private proxyInLength = 0;
  private route: RouteConfig | undefined;
  private pool: PoolRuntime | undefined;
  private serverIndex: number | undefined;
  private serverText: string | undefined;
  private proxyOutLength = 0;
  private lastActivity = 0;
  /** Client address as routing and logs know it: a trusted PROXY header's source replaces the socket's. */
  /**
   * Looked up (getpeername) only when something needs it: a `source` rule, `balance: hash`, a PROXY
   * header in or out, the close line. HAProxy gets it from accept(2); libuv does not keep it.
   */
  private clientAddress: { readonly ip: string; readonly port: number | undefined } | undefined;
  /** The ClientHello, kept for `affinity: tls` pools only (docs/affinity.md). */
  private tlsHello: TlsFields | undefined;
  private affinity: { readonly pool: PoolAffinity; readonly choice: AffinityChoice } | undefined;
  /** `affinity: tls`: fed the server's bytes until its first flight is parsed. */
  private flightWatch: ((chunk: Buffer) => boolean) | undefined;
  private closeReason: CloseReason | undefined;
  private closeDetail: string | undefined;
  /** The migration phase that applied to this connection's plaintext (close line `phase`). */
  private migrationPhase: MigrationPhase | undefined;
  /** Spliced although the phase would have answered: which exemption held (close line `exempt`). */
  private exempt: 'source' | 'user-agent' | undefined;
  /** When the answer was written (the linger's bound). */
  private answeredAt = 0;
  /** `native` engine: the addon's slot while it carries the pair (docs/native.md). */
  private nativeSlot: number | undefined;
  /** What the addon counted, once it is done; added to the endpoints' own counts in the close line. */
  private nativeCounts: NativeCounts | undefined;
  /** `affinity: tls` on `native`: the server's first flight is parsed, hand the pair over when clean. */
  private handOverDue = false;
  /** Milliseconds from accept to the routing decision, and from there to the server's connect (metrics). */
  private peekDoneMs: number | undefined;
  private connectedMs: number | undefined;
  /** Server connect attempts made (the first plus retries). */
  private attempts = 0;
  /** Bounds a half-closed pair (timeouts.client_fin / server_fin). */
  private finTimer: NodeJS.Timeout | undefined;
  /** Per-source limits that counted this connection: the runtime releases them at close. */
  limitHolds: { readonly scope: { release(ip: string): void }; readonly ip: string }[] | undefined;
  /** With reason `limit`: which one (`listener.max_connections`, `global.per_source.rate`…), a metric label. */
  limitName: string | undefined;
  /** Routed by `on_peek_timeout: route`: the parser's view at the deadline (close line `failOpen`). */
  private failOpen: string | undefined;
  /** The server slot held (pools with max_connections), from the pick to the close. */
  private slot: number | undefined;
  /** In the pool's queue, waiting for a slot. */
  private waiting: QueueWaiter | undefined;
  /** JA4 of the hello, computed at the verdict when `log.ja4` asks for it (close line `ja4`). */
  private ja4: string | undefined;

  constructor(
    private readonly client: Endpoint,
    private readonly ctx: ListenerContext,
  ) {
    this.id = ctx.nextConnectionId();
    this.listener = ctx.listener;
    this.detector = new Detector({
      maxHelloBytes: this.listener.maxClientHello,
      maxHeadBytes: this.listener.maxClientHello,
      // Only a trusted source's header is parsed; anyone else's is refused at its signature.
      ...(!this.fromTrustedSource() && { proxyRefusal: 'proxy.untrusted' }),
    });
  }

  /** The socket's peer is in `proxy_protocol.trusted` (no lookup when the listener trusts nobody). */
  private fromTrustedSource(): boolean {
    const trusted = this.listener.proxyProtocol?.trusted;
    return trusted !== undefined && anyCidrContains(trusted, this.client.remote()?.address ?? '');
  }

  private get clientIp(): string {
    return (this.clientAddress ??= this.peerAddress()).ip;
  }

  private get clientPort(): number | undefined {
    return (this.clientAddress ??= this.peerAddress()).port;
  }

  private peerAddress(): { ip: string; port: number | undefined } {
    const peer = this.client.remote();
    return { ip: peer?.address ?? '', port: peer?.port };
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  get peeking(): boolean {
    return this.phase === 'peek' || this.phase === 'connect';
  }

  start(): void {
    try {
      this.begin();
    } catch (e) {
      this.fault(e);
    }
  }

  private begin(): void {
    this.client.attach(this, CLIENT);
    // The close line names the client even after a reset, when getpeername no longer can.
    if (this.ctx.logger.isLevelEnabled('info')) this.clientAddress ??= this.peerAddress();
    if (this.client.checksPeerAtAccept && this.client.remote() === undefined) {
      // The peer vanished between accept and now: nothing to serve, but still one log line.
      this.finish('client-reset', 'socket closed before accept completed');
      return;
    }
    this.client.resume();
    // An endpoint may give the bytes it already holds during resume (the native accept reads at once):
    // a peek decided by then needs no timer.
    if (this.phase === 'peek' && this.timer === undefined) this.armPeekTimer();
  }

  /** Closes a connection that has not been spliced yet, or every connection at the end of a shutdown. */
  abort(reason: CloseReason, detail?: string): void {
    try {
      this.finish(reason, detail);
    } catch (e) {
      this.fault(e);
    }
  }

  /**
   * A throw from our own handling of this connection: a bug, since parsers never throw on input. It
   * closes this connection only (`internal-error`, the stack logged by the runtime), never the process:
   * every entry point of a connection (endpoint events, timers, connect and affinity callbacks) lands
   * here instead of unwinding into libuv, where an uncaught exception ends every other connection too.
   */
  private fault(e: unknown): void {
    this.ctx.onFault(this, e);
    if (this.phase === 'closed') return; // the outcome was already counted
    const err = e as { code?: unknown; name?: unknown } | undefined;
    const detail = typeof err?.code === 'string' ? err.code : typeof err?.name === 'string' ? err.name : 'throw';
    try {
      this.finish('internal-error', detail.slice(0, 64));
    } catch (again) {
      this.ctx.onFault(this, again);
    }
  }

  // ── peek ────────────────────────────────────────────────────────────────────────────────────────

  private armPeekTimer(): void {
    const t = this.listener.timeouts;
    const silentRoute = this.ctx.hasSilentRoute && this.peek.length === 0;
    const wait = silentRoute ? Math.min(t.silent, t.peek) : t.peek;
    const elapsed = performance.now() - this.started;
    this.timer = setTimeout(this.onPeekTimer, Math.max(0, wait - elapsed));
  }

  private readonly onPeekTimer = (): void => {
    try {
      this.peekTimerFired();
    } catch (e) {
      this.fault(e);
    }
  };

  private peekTimerFired(): void {
    this.timer = undefined;
    if (this.phase !== 'peek') return;
    const t = this.listener.timeouts;
    const elapsed = performance.now() - this.started;
    if (this.peek.length === 0 && this.ctx.hasSilentRoute && elapsed + 1 >= t.silent) {
      this.onSilent();
      return;
    }
    if (elapsed + 1 >= t.peek) {
      this.evaluate('deadline');
      return;
    }
    this.armPeekTimer();
  }

  private onPeekData(chunk: Buffer): void {
    this.peek.append(chunk);
    if (this.ctx.rawBytes) {
      this.ctx.logger.debug({ conn: this.id, chunk: chunk.toString('hex') }, 'peek bytes');
    }
    this.evaluate(this.peek.length >= this.listener.maxClientHello ? 'cap' : undefined);
  }

  private evaluate(trigger: PeekTrigger | undefined): void {
    // The verdict is taken on the first max_client_hello bytes only, however they were split into reads: a
    // read that crosses the cap must not let the detector see more than bytes arriving one by one would.
    const cap = this.listener.maxClientHello;
    const seen = this.peek.view();
    const bytes = seen.length > cap ? seen.subarray(0, cap) : seen;
    if (bytes.length === 0 && trigger !== undefined) {
      // Nothing at all arrived: no parser has anything to say.
      this.finish(PEEK_REASON[trigger], trigger === 'deadline' ? 'silent' : undefined);
      return;
    }
    const detector = this.detector;
    if (detector === undefined) return;
    const d: Detection = detector.detect(bytes, { final: trigger !== undefined });
    switch (d.kind) {
      case 'need-more':
        return;
      case 'match': {
        if (!this.acceptProxyHeader(d.proxy)) return;
        if (d.protocol === 'tls') this.tlsHello = d.fields;
        const facts = factsFromMatch(d);
        if (d.protocol === 'tls') {
          if (this.ctx.record !== undefined) this.recordTls(facts, d.fields);
          if (this.ctx.logJa4) this.ja4 = d.fields.ja4;
        }
        // TLS is never touched by a phase: its hot path pays one comparison.
        if (d.protocol !== 'tls' && this.listener.migration !== undefined && this.migrate(facts, d.protocol === 'http' ? d.fields : undefined)) return;
        this.dispatch(facts, () => this.finish('no-route'));
        return;
      }
      case 'reject':
        // A broken or refused PROXY header is its own answer (from a trusted source too: not proxy.missing).
        if (d.proxy === undefined && !d.incomplete && d.reason.startsWith('proxy.')) {
          this.finish('rejected', d.reason);
          return;
        }
        if (!this.acceptProxyHeader(d.proxy)) return;
        // A stream a probe claimed is that protocol, broken: the close line says which.
        if (d.protocol !== undefined) this.facts = { protocol: d.protocol };
        if (d.incomplete && trigger === 'deadline' && this.listener.onPeekTimeout === 'route' && !d.reason.startsWith('proxy.')) {
          // Fail-open (sslh's on_timeout): what arrived by the deadline goes to the `protocol: other`
          // route, bytes unchanged; without one it is the peek timeout after all.
          this.failOpen = d.reason;
          if (this.listener.migration !== undefined && this.migrate(OTHER_FACTS, undefined)) return;
          this.dispatch(OTHER_FACTS, () => this.finish('peek-timeout', d.reason));
        } else if (d.incomplete) {
          // Still a valid prefix of something when the input stopped (deadline, EOF, the byte cap): the
          // peek's outcome, with the parser's view as detail. Input that every probe refused, or that one
          // claimed and refused, gets the same answer below whether or not the cap was reached, so the
          // verdict never depends on how TCP split the bytes.
          this.finish(PEEK_REASON[trigger ?? 'eof'], d.reason);
        } else if (d.protocol !== undefined || d.reason.startsWith('proxy.')) {
          this.finish('rejected', d.reason);
        } else {
          // Bytes no probe recognised go to a `protocol: other` route if there is one (sslh's anyprot);
          // without one they are rejected with the detector's reason, not reported as a routing gap.
          this.detail = d.reason;
          if (this.listener.migration !== undefined && this.migrate(OTHER_FACTS, undefined)) return;
          this.dispatch(OTHER_FACTS, () => this.finish('rejected', d.reason));
        }
        return;
      default: {
        const never: never = d;
        throw new Error(`unknown verdict ${String(never)}`);
      }
    }
  }

  /**
   * A PROXY header is honoured only from `proxy_protocol.trusted` sources, and required from them
   * (otherwise a trusted load balancer's own address would be mistaken for the client's). An untrusted
   * source's header never gets here: the detector refuses it at its signature.
   */
  private acceptProxyHeader(header: ProxyHeader | undefined): boolean {
    const fromTrusted = this.fromTrustedSource();
    if (header === undefined) {
      if (fromTrusted) {
        this.finish('rejected', 'proxy.missing');
        return false;
      }
      return true;
    }
    if (!fromTrusted) {
      this.finish('rejected', 'proxy.untrusted');
      return false;
    }
    this.proxyIn = header;
    this.proxyInLength = header.length;
    if (header.command === 'PROXY' && header.source !== undefined && header.family !== 'UNKNOWN') {
      this.clientAddress = { ip: header.source.address, port: header.source.port };
    }
    return true;
  }

  private onSilent(): void {
    this.dispatch({ protocol: 'silent' }, () => this.finish('no-route'));
  }

  // ── migration ───────────────────────────────────────────────────────────────────────────────────

  /**
   * Applies the listener's migration phase (docs/migration.md). True when twinport answers the client
   * itself: nothing of this connection ever reaches a backend. False: routed and spliced as usual.
   */
  private migrate(facts: PeekFacts, http: HttpFields | undefined): boolean {
    const m = this.listener.migration!;
    const d = decideMigration(m, {
      protocol: facts.protocol,
      ...(http !== undefined && { http }),
      clientIp: () => this.clientIp,
      localPort: () => this.localEnd().localPort,
    });
    if (d.phase !== undefined) this.migrationPhase = d.phase;
    const record = this.ctx.record;
    if (record !== undefined && facts.protocol !== 'tls' && facts.protocol !== 'silent') {
      const outcome: ClientOutcome = d.kind === 'redirect' ? 'redirected' : d.kind === 'reject' ? 'rejected' : d.exempt !== undefined ? 'exempt' : 'spliced';
      record.notePlaintext(this.listener.name, http?.host, facts.protocol, this.clientIp, http?.userAgent, http?.method, http?.target, outcome, d.phase);
    }
    switch (d.kind) {
      case 'splice':
        if (d.exempt !== undefined) this.exempt = d.exempt;
        return false;
      case 'redirect':
        this.facts = facts;
        this.answer('redirected', undefined, redirectResponse(m.redirectStatus, d.location, http!.method, new Date()));
        return true;
      case 'reject': {
        this.facts = facts;
        const bytes =
          d.why === 'not-http' ? undefined : d.why === 'h2c' ? h2cGoaway() : rejectResponse(m.rejectStatus, d.url, http!.method, new Date());
        this.answer('migration-reject', d.why, bytes);
        return true;
      }
    }
  }

  /**
   * Writes twinport's own answer, half-closes, and reads and discards until the client closes (LINGER_*):
   * the outcome is decided here and the close line keeps it whatever the client does next. Without an
   * answer (non-HTTP plaintext) the connection is closed at once.
   */
  private answer(reason: CloseReason, detail: string | undefined, bytes: Buffer | undefined): void {
    this.stopPeeking();
    this.peek.release();
    this.tlsHello = undefined;
    this.phase = 'answer';
    this.reason = reason;
    this.detail = detail;
    if (bytes === undefined) {
      this.finish(reason, detail);
      return;
    }
    this.client.write(bytes);
    this.client.end();
    this.client.resume();
    this.answeredAt = performance.now();
    this.lastActivity = this.client.bytesRead;
    this.timer = setTimeout(this.onLingerTimer, LINGER_IDLE_MS);
  }

  private readonly onLingerTimer = (): void => {
    this.timer = undefined;
    if (this.phase !== 'answer') return;
    try {
      const read = this.client.bytesRead;
      const elapsed = performance.now() - this.answeredAt;
      if (read === this.lastActivity || elapsed >= LINGER_MAX_MS) {
        this.finish(this.reason!, this.detail);
        return;
      }
      this.lastActivity = read;
      this.timer = setTimeout(this.onLingerTimer, Math.min(LINGER_IDLE_MS, LINGER_MAX_MS - elapsed));
    } catch (e) {
      this.fault(e);
    }
  };

  /** The record's TLS side: the name routed on (a valid SNI), the version and ALPN offered, JA4. */
  private recordTls(facts: PeekFacts, hello: TlsFields): void {
    this.ctx.record!.noteTls(
      this.listener.name,
      facts.sni,
      () => offeredTlsVersion(hello.legacyVersion, hello.supportedVersions),
      hello.alpn,
      () => hello.ja4,
    );
  }

  // ── route ───────────────────────────────────────────────────────────────────────────────────────

  private dispatch(facts: PeekFacts, onNoRoute: () => void): void {
    this.facts = facts;
    this.peekDoneMs = performance.now() - this.started;
    // Behind a trusted PROXY header the source is known only now: its limits are checked before any
    // server is chosen, so an over-limit client never takes a server connection.
    if (this.ctx.admitSource !== undefined && this.proxyIn !== undefined) {
      const refused = this.ctx.admitSource(this, this.clientIp);
      if (refused !== undefined) {
        this.limitName = refused.limit;
        this.finish('limit', refused.detail);
        return;
      }
    }
    const route = matchRoute(this.listener.routes, { ...facts, sourceIp: this.ctx.routesUseSource ? this.clientIp : '' });
    if (route === undefined) {
      onNoRoute();
      return;
    }
    this.route = route;
    const pool = this.ctx.pools.get(route.to);
    if (pool === undefined) {
      // The validator guarantees every `to` names a pool; reaching this is a bug, not a config error.
      this.finish('no-route', `pool ${route.to} missing`);
      return;
    }
    this.pool = pool;
    this.stopPeeking();
    this.phase = 'connect';
    const affinity = pool.config.affinity === 'tls' && this.tlsHello !== undefined ? pool.affinity : undefined;
    if (affinity !== undefined) {
      // The learned server, if any, takes the first attempt; the lookup may wait for the shared store
      // (bounded by its timeout) while the client's later bytes wait in its paused socket.
      affinity.choose(this.tlsHello!, pool, (choice) => {
        try {
          this.affinity = { pool: affinity, choice };
          this.connectNext(new Set(), undefined);
        } catch (e) {
          this.fault(e);
        }
      });
      return;
    }
    this.connectNext(new Set(), undefined);
  }

  private stopPeeking(): void {
    // The client keeps being read while the server connects (onRead keeps the bytes, up to the peek's
    // cap): a reset or FIN in that time is seen at once, not when the splice starts.
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.detector = undefined;
  }

  // ── connect ─────────────────────────────────────────────────────────────────────────────────────

  private connectNext(tried: Set<number>, lastFailure: 'error' | 'timeout' | undefined, woken = false): void {
    if (this.phase !== 'connect') return;
    const pool = this.pool!;
    const facts = this.facts!;
    const maxAttempts = pool.config.retries + 1;
    const queue = pool.queue;
    // Connections already waiting for a slot go first: a newcomer does not overtake them.
    if (queue !== undefined && !woken && tried.size === 0 && queue.length > 0) {
      this.waitForSlot(queue, tried, lastFailure);
      return;
    }
    const learnedIndex = tried.size === 0 ? this.affinity?.choice.serverIndex : undefined;
    // A learned server at its max_connections is passed over like a drained one.
    const learned = learnedIndex !== undefined && pool.state.isFull(learnedIndex) ? undefined : learnedIndex;
    const index =
      tried.size >= maxAttempts
        ? undefined
        : learned ??
          pool.state.pick(
            {
              sourceIp: pool.config.balance === 'hash' ? this.clientIp : '',
              ...(facts.sni !== undefined && { sni: facts.sni }),
              ...(facts.host !== undefined && { host: facts.host }),
            },
            tried,
          );
    if (index === undefined) {
      if (queue !== undefined && tried.size < maxAttempts && pool.state.waitable(tried)) {
        this.waitForSlot(queue, tried, lastFailure);
        return;
      }
      this.finish(lastFailure === 'timeout' ? 'connect-timeout' : 'connect-failed', tried.size === 0 ? 'no usable server' : undefined);
      return;
    }
    const server = pool.config.servers[index]!;
    if (queue !== undefined) {
      pool.state.reserve(index);
      this.slot = index;
    }
    this.attempts++;
    this.serverIndex = index;
    this.serverText = server.address.text;
    let settled = false;
    const sock = connectEndpoint(this.ctx.engine, server.address, (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        if (err !== undefined) {
          this.ctx.onServerFailure(pool, index, err.code ?? 'error');
          tried.add(index);
          this.releaseSlot();
          this.connectNext(tried, 'error');
          return;
        }
        if (this.phase !== 'connect') {
          sock.destroy();
          return;
        }
        this.ctx.onServerSuccess(pool, index);
        this.splice(sock);
      } catch (e) {
        this.fault(e);
      }
    });
    this.upstream = sock;
    const giveUp = (): void => {
      if (settled || this.phase !== 'connect') return;
      settled = true;
      try {
        sock.destroy();
        this.ctx.onServerFailure(pool, index, 'timeout');
        tried.add(index);
        this.releaseSlot();
        this.connectNext(tried, 'timeout');
      } catch (e) {
        this.fault(e);
      }
    };
    // The timer yields once to the poll phase before giving up (as the active health check does): after
    // the event loop was blocked past the deadline, timers run before the poll phase that would deliver
    // connects which completed meanwhile, and counting those as timeouts took healthy servers down.
    const timer = (this.timer = setTimeout(() => setImmediate(giveUp), this.listener.timeouts.connect));
  }

  /**
   * Every usable server is at its max_connections: wait in the pool's queue for a slot, at most
   * queue.timeout (reason queue-timeout); a full queue is a `limit`. The client keeps being read meanwhile
   * (up to the peek cap), so a reset or FIN while waiting is seen at once.
   */
  private waitForSlot(queue: PoolQueue, tried: Set<number>, lastFailure: 'error' | 'timeout' | undefined): void {
    const pool = this.pool!;
    const waiter: QueueWaiter = {
      retry: () => {
        if (this.phase !== 'connect' || this.waiting !== waiter) {
          queue.leave(waiter);
          return true;
        }
        if (!pool.state.hasFreeSlot(tried)) return false;
        queue.leave(waiter);
        this.waiting = undefined;
        if (this.timer !== undefined) clearTimeout(this.timer);
        this.timer = undefined;
        try {
          this.connectNext(tried, lastFailure, true);
        } catch (e) {
          this.fault(e);
        }
        return true;
      },
    };
    if (!queue.enter(waiter)) {
      this.finish('limit', `pool ${pool.config.name}: every server at max_connections and ${queue.size} connections already waiting`);
      return;
    }
    this.waiting = waiter;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.waiting !== waiter) return;
      queue.leave(waiter);
      this.waiting = undefined;
      try {
        this.finish('queue-timeout', `pool ${pool.config.name}: no server slot in ${queue.timeout}ms`);
      } catch (e) {
        this.fault(e);
      }
    }, queue.timeout);
  }

  /** Gives back the server slot this connection holds (max_connections), and lets a waiter have it. */
  private releaseSlot(): void {
    const i = this.slot;
    if (i === undefined) return;
    this.slot = undefined;
    const pool = this.pool!;
    pool.state.release(i);
    pool.queue?.wake();
  }

  // ── splice ──────────────────────────────────────────────────────────────────────────────────────

  private splice(server: Endpoint): void {
    this.phase = 'splice';
    this.connectedMs = performance.now() - this.started - (this.peekDoneMs ?? 0);
    const pool = this.pool!;
    pool.state.onConnect(this.serverIndex!);
    server.attach(this, SERVER);
    const affinity = this.affinity;
    if (affinity !== undefined) {
      const serverText = this.serverText!;
      this.flightWatch = watchServerFlight((flight) => affinity.pool.observe(affinity.choice, flight, serverText));
    }

    const serverConfig = pool.config.servers[this.serverIndex!]!;
    let header: Buffer | undefined;
    if (serverConfig.sendProxy !== undefined) {
      header = buildServerProxyHeader(serverConfig.sendProxy, {
        clientIp: this.clientIp,
        clientPort: this.clientPort ?? 0,
        ...this.localEnd(),
        facts: this.facts!,
      });
      this.proxyOutLength = header.length;
    }
    const peeked = this.peek.view().subarray(this.proxyInLength);
    // `native` carries the pair from here, with the header and the peeked bytes as its first bytes to the
    // server; an `affinity: tls` pool's pair only once the server's first flight was seen (read below).
    const native = this.ctx.engine === 'native' && affinity === undefined && this.handOver(server, header, peeked);
    if (!native) {
      if (header !== undefined) server.write(header);
      if (peeked.length > 0) server.write(peeked);
    }
    // From here on only the splice runs: what the peek kept is garbage for the rest of a possibly long
    // life (M1 holds 10 000 such connections).
    this.peek.release();
    this.tlsHello = undefined;
    if (native) return;

    // Each direction: write what arrives, stop reading while the writer's buffer is full, resume on its
    // drain, pass FIN on (`end`) separately so the other half stays open (onRead, onDrain, onEnd).
    // A client that sent its request and FIN at once has had its EOF already, during the peek.
    if (this.client.readEnded) {
      server.end();
      this.armFinTimer(CLIENT);
    }
    else this.client.resume(); // in case the connect took long enough for the cap to pause it
    server.resume();
    this.lastActivity = this.activity();
    this.lastActiveAt = performance.now();
    this.armIdleTimer(Math.max(1, Math.ceil(this.listener.timeouts.idle / IDLE_CHECKS)));
  }

  /**
   * Gives both descriptors to the native engine when neither has anything of ours in flight. False when
   * it cannot take them (an endpoint busy, or the addon could not duplicate a descriptor: EMFILE): the
   * pair stays on the JavaScript splice, which serves it the same.
   */
  private handOver(server: Endpoint, header: Buffer | undefined, peeked: Buffer): boolean {
    const engine = NATIVE.engine;
    if (engine === undefined) return false;
    const initial = header === undefined ? peeked : peeked.length === 0 ? header : Buffer.concat([header, peeked]);
    const client = this.client;
    const t = this.listener.timeouts;
    // The FIN bounds go with the pair: a FIN read already (readEnded) arms its bound in the addon, as
    // armFinTimer does at the splice.
    let slot: number;
    if (client instanceof NativeSocketEndpoint && server instanceof NativeSocketEndpoint && client.adoptable && server.adoptable) {
      // Both sockets are the addon's already (stage 2): paired by slot, their epoll registrations reused.
      slot = engine.adopt(this, client, server, initial.length > 0 ? initial : undefined, t.idle, t);
      if (slot >= 0) {
        this.adoptedPair(slot);
        return true;
      }
    } else {
      const clientFd = client.descriptor();
      const serverFd = server.descriptor();
      if (clientFd === undefined || serverFd === undefined) return false;
      client.pause();
      server.pause();
      slot = engine.start(this, clientFd, serverFd, initial.length > 0 ? initial : undefined, client.readEnded, server.readEnded, t.idle, t);
    }
    if (slot < 0) {
      this.ctx.logger.debug({ conn: this.id, errno: slot }, 'native engine refused the pair: spliced in JavaScript');
      return false;
    }
    this.adoptedPair(slot);
    client.release();
    server.release();
    return true;
  }

  private adoptedPair(slot: number): void {
    this.nativeSlot = slot;
    this.handOverDue = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The native engine ended the pair by itself (NativeOwner). */
  nativeDone(reason: NativeReason, detail: string | undefined, counts: NativeCounts): void {
    try {
      this.nativeSlot = undefined;
      this.nativeCounts = counts;
      this.finish(reason, detail);
    } catch (e) {
      this.fault(e);
    }
  }

  /** `affinity: tls` pools on `native`: after the first flight, once both sides are clean. */
  private tryHandOver(): void {
    if (this.phase !== 'splice' || this.nativeSlot !== undefined) return;
    // A FIN passed on already leaves a shutdown in flight: such a pair ends in JavaScript.
    if (this.client.readEnded || this.upstream!.readEnded) {
      this.handOverDue = false;
      return;
    }
    this.handOver(this.upstream!, undefined, Buffer.alloc(0));
  }

  // ── endpoint events (EndpointSink) ──────────────────────────────────────────────────────────────

  /**
   * Bytes from either side. Unowned bytes sit in the buffer every endpoint reads into: they are copied
   * out before returning, small reads into Node's pooled allocator, big ones into a CHUNKS buffer that
   * the writer gives back when its write completes. False stops reading until the other side drains.
   */
  onRead(side: Side, n: number, buf: Buffer, owned: boolean): boolean {
    try {
      return this.read(side, n, buf, owned);
    } catch (e) {
      this.fault(e);
      return false;
    }
  }

  private read(side: Side, n: number, buf: Buffer, owned: boolean): boolean {
    const phase = this.phase;
    if (phase === 'closed') return false;
    // Answered by twinport: the rest of the request is read only so that closing sends no RST.
    if (phase === 'answer') return true;
    const own = owned ? (n === buf.length ? buf : buf.subarray(0, n)) : undefined;
    if (side === CLIENT && phase !== 'splice') {
      // The peek keeps these bytes until the splice: a copy of their own, never a recycled buffer.
      const chunk = own ?? Buffer.from(buf.subarray(0, n));
      if (phase === 'peek') {
        this.onPeekData(chunk);
        return true;
      }
      // Connecting: kept for the server, after what the peek saw, up to the same cap as the peek.
      this.peek.append(chunk);
      return this.peek.length < this.listener.maxClientHello;
    }
    let chunk: Buffer;
    let pooled: Buffer | undefined;
    if (own !== undefined) chunk = own;
    else {
      copyOut(n, buf);
      chunk = copied;
      pooled = copiedPool;
    }
    if (side === SERVER) {
      if (this.flightWatch !== undefined && this.flightWatch(chunk)) {
        this.flightWatch = undefined;
        this.handOverDue = this.ctx.engine === 'native';
      }
      const more = this.client.write(chunk, pooled);
      if (this.handOverDue) this.tryHandOver();
      return more && this.nativeSlot === undefined;
    }
    return this.upstream!.write(chunk, pooled);
  }

  onEnd(side: Side): void {
    try {
      this.ended(side);
    } catch (e) {
      this.fault(e);
    }
  }

  private ended(side: Side): void {
    switch (this.phase) {
      case 'peek':
        if (side === CLIENT) this.evaluate('eof');
        return;
      case 'splice':
        if (side === CLIENT) this.upstream!.end();
        else this.client.end();
        this.armFinTimer(side);
        return;
      case 'answer':
        // Our FIN went with the answer: with the client's, the socket closes (onClose ends it).
        return;
      default:
        // Connecting: the EOF is remembered by the endpoint (readEnded) and passed on at the splice.
        return;
    }
  }

  onDrain(side: Side): void {
    if (this.phase !== 'splice') return;
    try {
      if (side === CLIENT) this.upstream!.resume();
      else this.client.resume();
      if (this.handOverDue) this.tryHandOver();
    } catch (e) {
      this.fault(e);
    }
  }

  onError(side: Side, err: NodeJS.ErrnoException): void {
    try {
      this.errored(side, err);
    } catch (e) {
      this.fault(e);
    }
  }

  private errored(side: Side, err: NodeJS.ErrnoException): void {
    if (this.phase === 'answer') {
      // The answer's outcome stands: a client that resets after reading it (or without reading it) changes
      // what it saw, not what twinport did.
      this.finish(this.reason!, this.detail);
      return;
    }
    if (side === CLIENT) {
      this.reason ??= 'client-reset';
      this.detail ??= err.code ?? err.message;
      if (this.phase === 'splice' && isReset(err)) this.upstream!.reset();
    } else {
      if (this.phase !== 'splice') return; // a connect attempt's failure is its callback's business
      this.reason ??= 'server-reset';
      this.detail ??= err.code ?? err.message;
      if (isReset(err)) this.client.reset();
    }
    this.maybeFinish();
  }

  onClose(side: Side): void {
    try {
      this.sideClosed(side);
    } catch (e) {
      this.fault(e);
    }
  }

  private sideClosed(side: Side): void {
    if (side === SERVER) {
      this.upstreamClosed = true;
      this.maybeFinish();
      return;
    }
    this.clientClosed = true;
    if (this.phase === 'answer') {
      this.finish(this.reason!, this.detail);
      return;
    }
    if (this.phase === 'peek' || this.phase === 'connect') {
      // Gone before we spliced: a reset if it errored, otherwise the peek ended without a verdict.
      this.finish(this.reason ?? (this.phase === 'peek' ? 'peek-eof' : 'client-reset'), this.detail);
      return;
    }
    this.maybeFinish();
  }

  /** The address the client connected to (or, behind a trusted PROXY header, the one it names). */
  private localEnd(): { localIp: string; localPort: number } {
    const d = this.proxyIn?.destination;
    if (d !== undefined && this.proxyIn?.command === 'PROXY') return { localIp: d.address, localPort: d.port };
    const here = this.client.local();
    return { localIp: here?.address ?? '0.0.0.0', localPort: here?.port ?? 0 };
  }

  private activity(): number {
    return this.client.bytesRead + (this.upstream?.bytesRead ?? 0);
  }

  /**
   * One timer per connection that only compares byte counters when it fires, so the splice path pays
   * nothing per chunk for idle tracking. It wakes every idle/IDLE_CHECKS while bytes flow, which dates the
   * last activity to within that step; once quiet it sleeps exactly the rest of the idle time. So the
   * timeout fires between `idle` and `idle + idle/IDLE_CHECKS` after the last byte (re-arming a full `idle`
   * on activity, as before, let `idle: 2s` close at up to 4 s).
   */
  private armIdleTimer(ms: number): void {
    if (this.phase !== 'splice') return; // an error may have ended the pair during the splice's setup
    this.timer = setTimeout(this.onIdleTimer, ms);
  }

  /** When the byte counters were last seen to move (performance.now()). */
  private lastActiveAt = 0;

  private readonly onIdleTimer = (): void => {
    this.timer = undefined;
    if (this.phase !== 'splice') return;
    try {
      const idle = this.listener.timeouts.idle;
      const step = Math.max(1, Math.ceil(idle / IDLE_CHECKS));
      const bytes = this.activity();
      const now = performance.now();
      if (bytes !== this.lastActivity) {
        this.lastActivity = bytes;
        this.lastActiveAt = now;
        this.armIdleTimer(step);
        return;
      }
      const quiet = now - this.lastActiveAt;
      if (quiet >= idle - 1) {
        this.finish('idle-timeout');
        return;
      }
      this.armIdleTimer(Math.min(step, Math.ceil(idle - quiet)));
    } catch (e) {
      this.fault(e);
    }
  };

  // ── close ───────────────────────────────────────────────────────────────────────────────────────

  private maybeFinish(): void {
    if (this.phase !== 'splice') return;
    if (this.reason !== undefined) {
      // An error on one side ends the pair: the other side gets no further bytes.
      this.finish(this.reason, this.detail);
      return;
    }
    if (this.clientClosed && this.upstreamClosed) this.finish('done');
  }

  /**
   * HAProxy's `timeout client-fin` / `server-fin`: once one side has sent its FIN, the half-closed pair
   * lives at most that long (a peer that never answers a FIN must not hold the pair for `idle`). Armed
   * once, by the first FIN; only on a FIN, so the splice path pays nothing for it.
   */
  private armFinTimer(side: Side): void {
    if (this.finTimer !== undefined || this.phase !== 'splice') return;
    const t = this.listener.timeouts;
    const ms = side === CLIENT ? t.clientFin : t.serverFin;
    if (ms === undefined) return;
    const detail = side === CLIENT ? 'client_fin' : 'server_fin';
    this.finTimer = setTimeout(() => {
      this.finTimer = undefined;
      try {
        this.finish('fin-timeout', detail);
      } catch (e) {
        this.fault(e);
      }
    }, ms);
  }

  private finish(reason: CloseReason, detail?: string): void {
    if (this.phase === 'closed') return;
    if (this.finTimer !== undefined) {
      clearTimeout(this.finTimer);
      this.finTimer = undefined;
    }
    const wasSplicing = this.phase === 'splice';
    this.phase = 'closed';
    this.closeReason = reason;
    this.closeDetail = detail ?? (reason === this.reason ? this.detail : undefined);
    try {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      // After destroy getpeername has nothing to ask: a connection closed at accept (a limit) would log
      // `"client":""`.
      if (this.clientAddress === undefined && this.ctx.logger.isLevelEnabled('info')) this.clientAddress = this.peerAddress();
      if (this.nativeSlot !== undefined) {
        this.nativeCounts = NATIVE.engine!.close(this.nativeSlot);
        this.nativeSlot = undefined;
      }
      this.client.destroy();
      this.upstream?.destroy();
      if (wasSplicing) this.pool!.state.onDisconnect(this.serverIndex!);
      if (this.waiting !== undefined) {
        this.pool!.queue?.leave(this.waiting);
        this.waiting = undefined;
      }
      this.releaseSlot();
    } finally {
      // Counted and logged whatever the teardown did: one outcome per connection.
      this.ctx.onClose(this, reason);
    }
  }

  /** An operator closes it (admin API): reason `admin`, one close line like any other outcome. */
  adminClose(detail: string): void {
    this.abort('admin', detail);
  }

  /** What the admin API and the metrics read of a live or closing connection. */
  get view(): ConnectionView {
    const f = this.facts;
    return {
      id: this.id,
      listener: this.listener.name,
      client: this.clientAddress === undefined && this.phase === 'closed' ? undefined : formatAddress(this.clientIp, this.clientPort),
      state: this.phase,
      ...(f !== undefined && { protocol: f.protocol }),
      ...(f?.sni !== undefined && { sni: f.sni }),
      ...(f?.hostHeader !== undefined && { host: f.hostHeader }),
      ...(this.pool !== undefined && { pool: this.pool.config.name }),
      ...(this.serverText !== undefined && { server: this.serverText }),
      ageMs: Math.round(performance.now() - this.started),
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    };
  }

  /** Spliced to its server (not peeking, connecting, answering or closed). */
  get spliced(): boolean {
    return this.phase === 'splice';
  }

  get listenerName(): string {
    return this.listener.name;
  }

  get closeReasonCode(): CloseReason | undefined {
    return this.closeReason;
  }

  get closeDetailText(): string | undefined {
    return this.closeDetail;
  }

  get protocol(): string | undefined {
    return this.facts?.protocol;
  }

  get poolName(): string | undefined {
    return this.pool?.config.name;
  }

  get server(): string | undefined {
    return this.serverText;
  }

  get bytesIn(): number {
    return this.client.bytesRead + (this.nativeBytes()?.clientRead ?? 0);
  }

  get bytesOut(): number {
    return this.client.bytesWritten + (this.nativeBytes()?.clientWritten ?? 0);
  }

  /** What the native engine counted: so far while it carries the pair, in all once it is done. */
  private nativeBytes(): NativeCounts | undefined {
    return this.nativeSlot !== undefined ? NATIVE.engine!.countsOf(this.nativeSlot) : this.nativeCounts;
  }

  /** Seconds from accept to the routing decision; undefined when it never got there. */
  get peekSeconds(): number | undefined {
    return this.peekDoneMs === undefined ? undefined : this.peekDoneMs / 1000;
  }

  /** Seconds from the routing decision to the connect that was spliced. */
  get connectSeconds(): number | undefined {
    return this.connectedMs === undefined ? undefined : this.connectedMs / 1000;
  }

  /** Attempts after the first. */
  get retries(): number {
    return Math.max(0, this.attempts - 1);
  }

  /** The close line (docs/reasons.md), built only when it is going to be logged. */
  closeLogFields(): Record<string, unknown> {
    const reason = this.closeReason;
    const detail = this.closeDetail;
    const f = this.facts;
    const out: Record<string, unknown> = {
      conn: this.id,
      listener: this.listener.name,
      client: formatAddress(this.clientIp, this.clientPort),
    };
    if (this.proxyIn !== undefined) {
      const peer = this.client.remote();
      out['peer'] = formatAddress(peer?.address, peer?.port);
    }
    if (f !== undefined) {
      out['protocol'] = f.protocol;
      if (f.sni !== undefined) out['sni'] = f.sni;
      if (f.sniInvalid !== undefined) out['sniInvalid'] = f.sniInvalid;
      if (f.alpn !== undefined) {
        // Bounded (docs/security.md): a 64 KiB hello of ALPN names once wrote 383 KB of log per connection.
        out['alpn'] = f.alpn.length <= LOG_ALPN_NAMES && f.alpn.every((n) => n.length <= LOG_ALPN_CHARS) ? f.alpn : boundedAlpn(f.alpn);
        if (f.alpn.length > LOG_ALPN_NAMES) out['alpnCount'] = f.alpn.length;
      }
      if (f.hostHeader !== undefined) out['host'] = f.hostHeader;
      if (f.other !== undefined) out['other'] = f.other;
      if (f.ech === true) out['ech'] = true;
    }
    if (this.ja4 !== undefined) out['ja4'] = this.ja4;
    if (this.failOpen !== undefined) out['failOpen'] = this.failOpen;
    if (this.migrationPhase !== undefined) out['phase'] = this.migrationPhase;
    if (this.exempt !== undefined) out['exempt'] = this.exempt;
    if (this.route !== undefined) out['route'] = this.route.name ?? this.route.index;
    if (this.pool !== undefined) out['pool'] = this.pool.config.name;
    if (this.serverText !== undefined) out['server'] = this.serverText;
    const choice = this.affinity?.choice;
    if (choice?.routedBy !== undefined && choice.serverIndex === this.serverIndex) out['affinity'] = choice.routedBy.kind;
    out['reason'] = reason;
    if (detail !== undefined) out['detail'] = detail;
    out['bytesIn'] = this.bytesIn;
    out['bytesOut'] = this.bytesOut;
    out['durationMs'] = Math.round((performance.now() - this.started) * 1000) / 1000;
    return out;
  }
}
