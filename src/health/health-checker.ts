// Health of every server of the pools that ask for it (docs/health.md): active checks on a timer per
// server, passive health from the connections' own connect results, and the one up/down bit that
// PoolState.pick honours. State lives here, keyed by pool name + server address text, so a SIGHUP reload
// (which builds new PoolStates) keeps what was learned about the servers that stay.
//
// A server is up when both sources agree: the active checks say up (or there are none) and it is not
// inside a passive `down_for` window. Servers start up: a start or reload should not refuse all traffic
// until `rise` checks have passed, and a dead server is found within `fall` checks (HAProxy starts
// servers up too, unless told otherwise).
import type { Logger } from 'pino';
import type { HealthCheckConfig, PassiveHealthConfig, PoolConfig, ServerAddress } from '../config/types.js';
import { runHealthCheck, type CheckOutcome } from './health-probe.js';
import type { PoolState } from '../routing/pool-state.js';

/** What health needs of a pool (the proxy's PoolRuntime is one): its config and its state. */
export interface HealthPool {
  readonly config: PoolConfig;
  readonly state: PoolState;
}

export type HealthSource = 'active' | 'passive' | 'reload';

/** One server's health as the checker holds it (for tests, the admin API, logs). */
export interface ServerHealth {
  readonly pool: string;
  readonly server: string;
  readonly up: boolean;
  readonly activeUp: boolean;
  readonly passiveDown: boolean;
  /** Consecutive active successes / failures, and consecutive connect failures seen by connections. */
  readonly successes: number;
  readonly failures: number;
  readonly passiveFailures: number;
  readonly checking: boolean;
  /** The last active check's result and detail, when one ran. */
  readonly lastCheck?: { readonly ok: boolean; readonly detail: string; readonly at: string };
}

export interface HealthCheckerOptions {
  /** [0, 1): where in the first interval a new server's first check falls. */
  readonly random?: () => number;
  /** Runs one check; tests may replace it. */
  readonly check?: (address: ServerAddress, cfg: HealthCheckConfig, signal: AbortSignal) => Promise<CheckOutcome>;
}

interface Tracked {
  readonly pool: string;
  readonly address: ServerAddress;
  state: PoolState;
  index: number;
  health: HealthCheckConfig | undefined;
  /** JSON of `health`: a reload with the same text keeps the running timer (and its phase). */
  healthText: string;
  passive: PassiveHealthConfig | undefined;
  up: boolean;
  activeUp: boolean;
  successes: number;
  failures: number;
  passiveFailures: number;
  passiveDown: boolean;
  passiveTimer: NodeJS.Timeout | undefined;
  checkTimer: NodeJS.Timeout | undefined;
  inflight: AbortController | undefined;
  /** Bumped when the check schedule is replaced: results of an older schedule are dropped. */
  generation: number;
  lastCheck: { ok: boolean; detail: string; at: string } | undefined;
}

function keyOf(pool: string, address: string): string {
  return `${pool}\0${address}`;
}

export class HealthChecker {
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly check: NonNullable<HealthCheckerOptions['check']>;
  private readonly tracked = new Map<string, Tracked>();
  private stopped = false;
  /** Told when a server goes from up to down (the runtime closes its connections for `on_down: close`). */
  onServerDown: ((pool: string, server: string, reason: string) => void) | undefined;

  constructor(logger: Logger, opts: HealthCheckerOptions = {}) {
    this.logger = logger;
    this.random = opts.random ?? Math.random;
    this.check = opts.check ?? runHealthCheck;
  }

  /**
   * Takes over a (new) set of pools: at start, and on every reload before new connections can see them.
   * Servers that stay (same pool name, same address text) keep their state and their check timer; the
   * new PoolStates are told at once which of them are down. Removed servers' timers stop; new servers
   * start up and get their first check at a random point of the first interval, so neither a start nor a
   * reload fires every check at the same moment.
   */
  apply(pools: ReadonlyMap<string, HealthPool>): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const p of pools.values()) {
      const { health, passiveHealth } = p.config;
      if (health === undefined && passiveHealth === undefined) continue;
      p.config.servers.forEach((server, index) => {
        const key = keyOf(p.config.name, server.address.text);
        seen.add(key);
        let r = this.tracked.get(key);
        if (r === undefined) {
          r = {
            pool: p.config.name,
            address: server.address,
            state: p.state,
            index,
            health: undefined,
            healthText: 'null',
            passive: undefined,
            up: true,
            activeUp: true,
            successes: 0,
            failures: 0,
            passiveFailures: 0,
            passiveDown: false,
            passiveTimer: undefined,
            checkTimer: undefined,
            inflight: undefined,
            generation: 0,
            lastCheck: undefined,
          };
          this.tracked.set(key, r);
        }
        r.state = p.state;
        r.index = index;
        p.state.setUp(index, r.up);
        this.reconfigure(r, health, passiveHealth);
      });
    }
    for (const [key, r] of this.tracked) {
      if (seen.has(key)) continue;
      this.forget(r);
      this.tracked.delete(key);
    }
  }

  /** A connection's connect attempt to this server failed (ctx.onServerFailure). */
  onConnectFailure(pool: HealthPool, index: number, why: string): void {
    const r = this.find(pool, index);
    if (r?.passive === undefined || r.passiveDown) return;
    r.passiveFailures++;
    if (r.passiveFailures < r.passive.fall) return;
    const downFor = r.passive.downFor;
    r.passiveFailures = 0;
    r.passiveDown = true;
    r.passiveTimer = setTimeout(() => {
      r.passiveTimer = undefined;
      r.passiveDown = false;
      this.update(r, 'passive', `down_for ${downFor}ms elapsed`);
    }, downFor);
    r.passiveTimer.unref();
    this.update(r, 'passive', `${r.passive.fall} connect failures in a row (last: ${why})`);
  }

  /** A connection's connect attempt to this server succeeded (ctx.onServerSuccess). */
  onConnectSuccess(pool: HealthPool, index: number): void {
    const r = this.find(pool, index);
    if (r !== undefined) r.passiveFailures = 0;
  }

  status(): ServerHealth[] {
    return [...this.tracked.values()].map((r) => ({
      pool: r.pool,
      server: r.address.text,
      up: r.up,
      activeUp: r.activeUp,
      passiveDown: r.passiveDown,
      successes: r.successes,
      failures: r.failures,
      passiveFailures: r.passiveFailures,
      checking: r.checkTimer !== undefined || r.inflight !== undefined,
      ...(r.lastCheck !== undefined && { lastCheck: { ...r.lastCheck } }),
    }));
  }

  /** Shutdown: every timer cleared and every running check aborted, so nothing holds the process. */
  stop(): void {
    this.stopped = true;
    for (const r of this.tracked.values()) this.forget(r);
    this.tracked.clear();
  }

  /** A connection's pool snapshot may predate a reload: look the server up by name, not by index. */
  private find(pool: HealthPool, index: number): Tracked | undefined {
    const server = pool.config.servers[index];
    return server === undefined ? undefined : this.tracked.get(keyOf(pool.config.name, server.address.text));
  }

  private reconfigure(r: Tracked, health: HealthCheckConfig | undefined, passive: PassiveHealthConfig | undefined): void {
    r.passive = passive;
    if (passive === undefined && r.passiveDown) {
      clearTimeout(r.passiveTimer);
      r.passiveTimer = undefined;
      r.passiveDown = false;
    }
    if (passive === undefined) r.passiveFailures = 0;
    const text = JSON.stringify(health ?? null);
    if (text !== r.healthText) {
      this.stopChecks(r);
      r.health = health;
      r.healthText = text;
      if (health === undefined) {
        // Nothing checks it any more: the last verdict of a check that is gone must not keep it out.
        r.activeUp = true;
        r.successes = 0;
        r.failures = 0;
      } else {
        this.schedule(r, Math.floor(this.random() * health.interval));
      }
    }
    this.update(r, 'reload', 'configuration changed');
  }

  private schedule(r: Tracked, delay: number): void {
    const generation = r.generation;
    r.checkTimer = setTimeout(() => {
      r.checkTimer = undefined;
      void this.runOnce(r, generation);
    }, delay);
    r.checkTimer.unref();
  }

  private async runOnce(r: Tracked, generation: number): Promise<void> {
    const health = r.health;
    if (health === undefined || this.stopped) return;
    const started = Date.now();
    const inflight = new AbortController();
    r.inflight = inflight;
    const outcome = await this.check(r.address, health, inflight.signal);
    if (r.inflight === inflight) r.inflight = undefined;
    if (this.stopped || generation !== r.generation) return;
    this.record(r, health, outcome);
    // Fixed cadence: the next check is due `interval` after this one began (timeout < interval).
    this.schedule(r, Math.max(0, health.interval - (Date.now() - started)));
  }

  private record(r: Tracked, health: HealthCheckConfig, outcome: CheckOutcome): void {
    r.lastCheck = { ok: outcome.ok, detail: outcome.detail, at: new Date().toISOString() };
    if (outcome.ok) {
      r.failures = 0;
      r.successes = Math.min(r.successes + 1, health.rise);
      if (!r.activeUp && r.successes >= health.rise) {
        r.activeUp = true;
        this.update(r, 'active', `${health.type} check passed ${health.rise} in a row (${outcome.detail})`);
      }
    } else {
      r.successes = 0;
      r.failures = Math.min(r.failures + 1, health.fall);
      if (r.activeUp && r.failures >= health.fall) {
        r.activeUp = false;
        this.update(r, 'active', `${health.type} check failed ${health.fall} in a row (${outcome.detail})`);
      }
    }
  }

  /** Recomputes the one bit, tells the PoolState, and logs the transition (once: only when it changes). */
  private update(r: Tracked, source: HealthSource, reason: string): void {
    const up = r.activeUp && !r.passiveDown;
    if (up === r.up) return;
    const from = r.up ? 'up' : 'down';
    r.up = up;
    r.state.setUp(r.index, up);
    const fields = { pool: r.pool, server: r.address.text, from, to: up ? 'up' : 'down', reason, source };
    if (up) this.logger.info(fields, 'health');
    else {
      this.logger.warn(fields, 'health');
      this.onServerDown?.(r.pool, r.address.text, reason);
    }
  }

  private stopChecks(r: Tracked): void {
    r.generation++;
    clearTimeout(r.checkTimer);
    r.checkTimer = undefined;
    r.inflight?.abort();
    r.inflight = undefined;
  }

  private forget(r: Tracked): void {
    this.stopChecks(r);
    clearTimeout(r.passiveTimer);
    r.passiveTimer = undefined;
  }
}
