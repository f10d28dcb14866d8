// One client connection through its whole life (design.md §1):
//   accept ─► peek ─► route ─► connect ─► splice ─► close
// Every exit goes through `finish(reason)`, which runs once: both sockets closed, one close log line,
// one outcome counter. Nothing here parses bytes (protocol/) or decides where to go (routing/).
import net, { type Socket } from 'node:net';
import type { ListenerConfig, RouteConfig } from '../config/types.js';
import { Detector, type Detection } from '../protocol/detector.js';
import type { ProxyHeader } from '../protocol/proxy-header.js';
import type { TlsFields } from '../protocol/tls-client-hello.js';
import { anyCidrContains } from '../routing/cidr.js';
import { matchRoute } from '../routing/route-match.js';
import type { AffinityChoice, PoolAffinity } from './affinity-pool.js';
import { watchServerFlight } from './affinity-watcher.js';
import { ChunkPool } from './chunk-pool.js';
import { factsFromMatch, type PeekFacts } from './facts.js';
import { PeekBuffer } from './peek-buffer.js';
import { buildServerProxyHeader } from './proxy-header-out.js';
import type { CloseReason } from './reasons.js';
import type { ListenerContext, PoolRuntime } from './listener-context.js';

type Phase = 'peek' | 'connect' | 'splice' | 'closed';
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

/** Where every upstream socket reads (see Connection.onServerRead); reads are never concurrent. */
const READ_SIZE = 64 * 1024;
const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(READ_SIZE);
/** Reads this big or bigger are copied into a reusable buffer; smaller ones into Node's 8 KiB pool. */
const POOLED_MIN = 4096;
/** 64 buffers: 4 MiB kept at most, enough for a few dozen bulk transfers at once. */
const CHUNKS = new ChunkPool(READ_SIZE, 64);

export class Connection {
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
  private upstream: Socket | undefined;
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
  private clientIp: string;
  private clientPort: number | undefined;
  /** The ClientHello, kept for `affinity: tls` pools only (docs/affinity.md). */
  private tlsHello: TlsFields | undefined;
  private affinity: { readonly pool: PoolAffinity; readonly choice: AffinityChoice } | undefined;
  /** `affinity: tls`: fed the server's bytes until its first flight is parsed. */
  private flightWatch: ((chunk: Buffer) => boolean) | undefined;
  /** ChunkPool buffers being written to the client, oldest first. */
  private pooled: Buffer[] | undefined;
  private closeReason: CloseReason | undefined;
  private closeDetail: string | undefined;

  constructor(
    private readonly client: Socket,
    private readonly ctx: ListenerContext,
  ) {
    this.id = ctx.nextConnectionId();
    this.listener = ctx.listener;
    this.clientIp = client.remoteAddress ?? '';
    this.clientPort = client.remotePort;
    this.detector = new Detector({ maxHelloBytes: this.listener.maxClientHello, maxHeadBytes: this.listener.maxClientHello });
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  get peeking(): boolean {
    return this.phase === 'peek' || this.phase === 'connect';
  }

  start(): void {
    const c = this.client;
    c.on('data', this.onPeekData);
    c.on('end', this.onPeekEnd);
    c.on('error', this.onClientError);
    c.on('close', this.onClientClose);
    if (this.client.remoteAddress === undefined) {
      // The peer vanished between accept and now: nothing to serve, but still one log line.
      this.finish('client-reset', 'socket closed before accept completed');
      return;
    }
    this.armPeekTimer();
  }

  /** Closes a connection that has not been spliced yet, or every connection at the end of a shutdown. */
  abort(reason: CloseReason, detail?: string): void {
    this.finish(reason, detail);
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
  };

  private readonly onPeekData = (chunk: Buffer): void => {
    if (this.phase !== 'peek') return;
    this.peek.append(chunk);
    if (this.ctx.rawBytes) {
      this.ctx.logger.debug({ conn: this.id, chunk: chunk.toString('hex') }, 'peek bytes');
    }
    this.evaluate(this.peek.length >= this.listener.maxClientHello ? 'cap' : undefined);
  };

  private readonly onPeekEnd = (): void => {
    if (this.phase !== 'peek') return;
    this.evaluate('eof');
  };

  private evaluate(trigger: PeekTrigger | undefined): void {
    const bytes = this.peek.view();
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
      case 'match':
        if (!this.acceptProxyHeader(d.proxy)) return;
        if (d.protocol === 'tls') this.tlsHello = d.fields;
        this.dispatch(factsFromMatch(d), () => this.finish('no-route'));
        return;
      case 'reject':
        if (!this.acceptProxyHeader(d.proxy)) return;
        if (d.incomplete || trigger === 'cap') {
          // Still a valid prefix when the input stopped, or cut by our own byte cap: the peek's fault
          // (deadline, EOF, cap), with the parser's view as detail.
          this.finish(PEEK_REASON[trigger ?? 'eof'], d.reason);
        } else if (d.protocol !== undefined || d.reason.startsWith('proxy.')) {
          this.finish('rejected', d.reason);
        } else {
          // Bytes no probe recognised go to a `protocol: other` route if there is one (sslh's anyprot);
          // without one they are rejected with the detector's reason, not reported as a routing gap.
          this.detail = d.reason;
          this.dispatch({ protocol: 'other' }, () => this.finish('rejected', d.reason));
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
   * (otherwise a trusted load balancer's own address would be mistaken for the client's).
   */
  private acceptProxyHeader(header: ProxyHeader | undefined): boolean {
    const trusted = this.listener.proxyProtocol?.trusted;
    const fromTrusted = trusted !== undefined && anyCidrContains(trusted, this.client.remoteAddress ?? '');
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
      this.clientIp = header.source.address;
      this.clientPort = header.source.port;
    }
    return true;
  }

  private onSilent(): void {
    this.dispatch({ protocol: 'silent' }, () => this.finish('no-route'));
  }

  // ── route ───────────────────────────────────────────────────────────────────────────────────────

  private dispatch(facts: PeekFacts, onNoRoute: () => void): void {
    this.facts = facts;
    const route = matchRoute(this.listener.routes, { ...facts, sourceIp: this.clientIp });
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
        this.affinity = { pool: affinity, choice };
        this.connectNext(new Set(), undefined);
      });
      return;
    }
    this.connectNext(new Set(), undefined);
  }

  private stopPeeking(): void {
    // Pause first: removing the 'data' listener alone leaves the socket flowing and would drop bytes.
    this.client.pause();
    this.client.off('data', this.onPeekData);
    this.client.off('end', this.onPeekEnd);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.detector = undefined;
  }

  // ── connect ─────────────────────────────────────────────────────────────────────────────────────

  private connectNext(tried: Set<number>, lastFailure: 'error' | 'timeout' | undefined): void {
    if (this.phase !== 'connect') return;
    const pool = this.pool!;
    const facts = this.facts!;
    const maxAttempts = pool.config.retries + 1;
    const learned = tried.size === 0 ? this.affinity?.choice.serverIndex : undefined;
    const index =
      tried.size >= maxAttempts
        ? undefined
        : learned ??
          pool.state.pick(
            {
              sourceIp: this.clientIp,
              ...(facts.sni !== undefined && { sni: facts.sni }),
              ...(facts.host !== undefined && { host: facts.host }),
            },
            tried,
          );
    if (index === undefined) {
      this.finish(lastFailure === 'timeout' ? 'connect-timeout' : 'connect-failed', tried.size === 0 ? 'no usable server' : undefined);
      return;
    }
    const server = pool.config.servers[index]!;
    this.serverIndex = index;
    this.serverText = server.address.text;
    const addr = server.address;
    // The server's bytes are read into one buffer shared by every connection (onread) instead of a new
    // 64 KiB allocation per read pushed through a Readable: see onServerRead.
    const onread = { buffer: SHARED_READ_BUFFER, callback: this.onServerRead };
    const sock =
      addr.path !== undefined
        ? net.connect({ path: addr.path, allowHalfOpen: true, onread })
        : net.connect({ host: addr.host!, port: addr.port!, allowHalfOpen: true, noDelay: true, onread });
    this.upstream = sock;
    let settled = false;
    const timer = (this.timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      sock.destroy();
      this.ctx.onServerFailure(pool, index, 'timeout');
      tried.add(index);
      this.connectNext(tried, 'timeout');
    }, this.listener.timeouts.connect));
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.ctx.onServerFailure(pool, index, err.code ?? 'error');
      tried.add(index);
      this.connectNext(tried, 'error');
    });
    sock.once('connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (this.phase !== 'connect') {
        sock.destroy();
        return;
      }
      this.ctx.onServerSuccess(pool, index);
      this.splice(sock);
    });
  }

  // ── splice ──────────────────────────────────────────────────────────────────────────────────────

  private splice(server: Socket): void {
    this.phase = 'splice';
    const pool = this.pool!;
    pool.state.onConnect(this.serverIndex!);
    server.on('error', this.onServerError);
    server.on('close', this.onServerClose);
    const affinity = this.affinity;
    if (affinity !== undefined) {
      const serverText = this.serverText!;
      this.flightWatch = watchServerFlight((flight) => affinity.pool.observe(affinity.choice, flight, serverText));
    }

    const serverConfig = pool.config.servers[this.serverIndex!]!;
    if (serverConfig.sendProxy !== undefined) {
      const header = buildServerProxyHeader(serverConfig.sendProxy, {
        clientIp: this.clientIp,
        clientPort: this.clientPort ?? 0,
        ...this.localEnd(),
        facts: this.facts!,
      });
      this.proxyOutLength = header.length;
      server.write(header);
    }
    const peeked = this.peek.view().subarray(this.proxyInLength);
    if (peeked.length > 0) server.write(peeked);
    // From here on only the splice runs: what the peek kept is garbage for the rest of a possibly long
    // life (M1 holds 10 000 such connections).
    this.peek.release();
    this.tlsHello = undefined;

    // Each direction: write what arrives, pause the reader while the writer's buffer is full, resume on
    // 'drain', pass FIN on (`end`) separately; allowHalfOpen on both sockets keeps the other half open.
    // The same as pipe() does, minus the dozen listeners and bookkeeping pipe() sets up per connection.
    const client = this.client;
    client.on('data', this.onClientData);
    client.on('end', this.onClientEnd);
    client.on('drain', this.onClientDrain);
    server.on('end', this.onServerEnd);
    server.on('drain', this.onServerDrain);
    // A client that sent its request and FIN at once has had its 'end' already, during the peek.
    if (client.readableEnded) server.end();
    else client.resume(); // paused since the peek ended; a new 'data' listener does not undo an explicit pause()
    this.lastActivity = this.activity();
    this.armIdleTimer(this.listener.timeouts.idle);
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (!this.upstream!.write(chunk)) this.client.pause();
  };

  /**
   * The server's bytes, read into SHARED_READ_BUFFER, which the next read of any connection reuses: they
   * are copied out before returning. Small reads go to Node's pooled allocator; big ones into a ChunkPool
   * buffer that returns to the pool when its write completes (writes complete in order, so `pooled` is a
   * FIFO). A write that fails keeps its buffer: libuv may still have held it. Returning false stops
   * reading until the client drains.
   */
  private readonly onServerRead = (n: number, buf: Buffer): boolean => {
    if (this.phase !== 'splice') return true;
    let chunk: Buffer;
    let ok: boolean;
    if (n < POOLED_MIN) {
      chunk = Buffer.allocUnsafe(n);
      buf.copy(chunk, 0, 0, n);
      if (this.flightWatch !== undefined && this.flightWatch(chunk)) this.flightWatch = undefined;
      ok = this.client.write(chunk);
    } else {
      const pooled = CHUNKS.take();
      buf.copy(pooled, 0, 0, n);
      chunk = pooled.subarray(0, n);
      if (this.flightWatch !== undefined && this.flightWatch(chunk)) this.flightWatch = undefined;
      (this.pooled ??= []).push(pooled);
      ok = this.client.write(chunk, this.onPooledWritten);
    }
    return ok;
  };

  private readonly onPooledWritten = (err?: Error | null): void => {
    const done = this.pooled?.shift();
    if (done !== undefined && err == null) CHUNKS.give(done);
  };

  private readonly onServerDrain = (): void => {
    this.client.resume();
  };

  private readonly onClientDrain = (): void => {
    this.upstream!.resume();
  };

  private readonly onClientEnd = (): void => {
    this.upstream!.end();
  };

  private readonly onServerEnd = (): void => {
    this.client.end();
  };

  /** The address the client connected to (or, behind a trusted PROXY header, the one it names). */
  private localEnd(): { localIp: string; localPort: number } {
    const d = this.proxyIn?.destination;
    if (d !== undefined && this.proxyIn?.command === 'PROXY') return { localIp: d.address, localPort: d.port };
    return { localIp: this.client.localAddress ?? '0.0.0.0', localPort: this.client.localPort ?? 0 };
  }

  private activity(): number {
    return this.client.bytesRead + (this.upstream?.bytesRead ?? 0);
  }

  /**
   * One timer per connection, re-armed lazily: it only compares byte counters when it fires, so the
   * splice path pays nothing per chunk for idle tracking.
   */
  private armIdleTimer(ms: number): void {
    this.timer = setTimeout(this.onIdleTimer, ms);
  }

  private readonly onIdleTimer = (): void => {
    this.timer = undefined;
    if (this.phase !== 'splice') return;
    const now = this.activity();
    if (now === this.lastActivity) {
      this.finish('idle-timeout');
      return;
    }
    this.lastActivity = now;
    this.armIdleTimer(this.listener.timeouts.idle);
  };

  // ── close ───────────────────────────────────────────────────────────────────────────────────────

  private readonly onClientError = (err: NodeJS.ErrnoException): void => {
    this.reason ??= 'client-reset';
    this.detail ??= err.code ?? err.message;
    if (this.phase === 'splice' && this.upstream !== undefined && isReset(err)) this.upstream.resetAndDestroy();
    this.maybeFinish();
  };

  private readonly onServerError = (err: NodeJS.ErrnoException): void => {
    this.reason ??= 'server-reset';
    this.detail ??= err.code ?? err.message;
    if (isReset(err) && !this.client.destroyed) this.client.resetAndDestroy();
    this.maybeFinish();
  };

  private readonly onClientClose = (): void => {
    this.clientClosed = true;
    if (this.phase === 'peek' || this.phase === 'connect') {
      // Gone before we spliced: a reset if it errored, otherwise the peek ended without a verdict.
      this.finish(this.reason ?? (this.phase === 'peek' ? 'peek-eof' : 'client-reset'), this.detail);
      return;
    }
    this.maybeFinish();
  };

  private readonly onServerClose = (): void => {
    this.upstreamClosed = true;
    this.maybeFinish();
  };

  private maybeFinish(): void {
    if (this.phase !== 'splice') return;
    if (this.reason !== undefined) {
      // An error on one side ends the pair: the other side gets no further bytes.
      this.finish(this.reason, this.detail);
      return;
    }
    if (this.clientClosed && this.upstreamClosed) this.finish('done');
  }

  private finish(reason: CloseReason, detail?: string): void {
    if (this.phase === 'closed') return;
    const wasSplicing = this.phase === 'splice';
    this.phase = 'closed';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.client.destroyed) this.client.destroy();
    if (this.upstream !== undefined && !this.upstream.destroyed) this.upstream.destroy();
    if (wasSplicing) this.pool!.state.onDisconnect(this.serverIndex!);
    this.closeReason = reason;
    this.closeDetail = detail ?? (reason === this.reason ? this.detail : undefined);
    this.ctx.onClose(this, reason);
  }

  /** The close line (design.md §4), built only when it is going to be logged. */
  closeLogFields(): Record<string, unknown> {
    const reason = this.closeReason;
    const detail = this.closeDetail;
    const f = this.facts;
    const out: Record<string, unknown> = {
      conn: this.id,
      listener: this.listener.name,
      client: formatAddress(this.clientIp, this.clientPort),
    };
    if (this.proxyIn !== undefined) out['peer'] = formatAddress(this.client.remoteAddress, this.client.remotePort);
    if (f !== undefined) {
      out['protocol'] = f.protocol;
      if (f.sni !== undefined) out['sni'] = f.sni;
      if (f.alpn !== undefined) out['alpn'] = f.alpn;
      if (f.hostHeader !== undefined) out['host'] = f.hostHeader;
    }
    if (this.route !== undefined) out['route'] = this.route.name ?? this.route.index;
    if (this.pool !== undefined) out['pool'] = this.pool.config.name;
    if (this.serverText !== undefined) out['server'] = this.serverText;
    const choice = this.affinity?.choice;
    if (choice?.routedBy !== undefined && choice.serverIndex === this.serverIndex) out['affinity'] = choice.routedBy.kind;
    out['reason'] = reason;
    if (detail !== undefined) out['detail'] = detail;
    out['bytesIn'] = this.client.bytesRead;
    out['bytesOut'] = this.client.bytesWritten;
    out['durationMs'] = Math.round((performance.now() - this.started) * 1000) / 1000;
    return out;
  }
}
