// The runtime of one pool, held by the proxy: which servers are up, their current weights, how many
// connections each has, and the pool's balancer. Pure state: the proxy (and, later, health checks and
// the admin API) tell it what happened; it never opens a socket or reads the clock.
//
// Who may be picked for a new connection:
//  - a server that is up and has weight > 0 (weight 0 drains: open connections stay, no new ones);
//  - backups only when no primary qualifies — for this connection: once every usable primary has been
//    tried, the connection's retries move on to the backups rather than fail the client. All usable
//    backups share the load, balanced by the pool's policy (like HAProxy's `option allbackups`);
//  - never a server the connection already tried (`exclude`).
import type { PoolConfig, ServerConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import type { Balancer, PickContext, ServerView } from './balancer.js';
import { createBalancer } from './balancer.js';

const NONE: ReadonlySet<number> = new Set();

/**
 * An operator's say over a server (the admin API, HAProxy's `set server state`): `ready` takes new
 * connections, `drain` takes none (affinity and hash included) and lets open ones finish, `maint` takes
 * none and the admin layer closes the open ones after a deadline.
 */
export const ADMIN_STATES = ['ready', 'drain', 'maint'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

export interface PoolStateOptions {
  /** Maglev table size for `balance: hash` (a prime; default 65537). */
  readonly maglevTableSize?: number;
}

export class PoolState implements ServerView {
  readonly name: string;
  readonly servers: readonly ServerConfig[];
  private readonly up: boolean[];
  private readonly weights: number[];
  private readonly active: number[];
  private readonly admin: AdminState[];
  /** Connections ever spliced to each server (the admin API's totals). */
  private readonly total: number[];
  /** Connections holding a slot of each server, from the pick to the close (max_connections). */
  private readonly reserved: number[];
  /** Some server has max_connections: only then are slots counted against picks. */
  private readonly limited: boolean;
  // One balancer per tier: round-robin positions and Maglev tables of primaries and backups are separate.
  private readonly primaryBalancer: Balancer;
  private readonly backupBalancer: Balancer;
  private eligibleCache: { primaries: readonly number[]; backups: readonly number[] } | undefined;

  constructor(pool: PoolConfig, opts: PoolStateOptions = {}) {
    this.name = pool.name;
    this.servers = pool.servers;
    this.up = pool.servers.map(() => true);
    this.weights = pool.servers.map((s) => s.weight);
    this.active = pool.servers.map(() => 0);
    this.admin = pool.servers.map(() => 'ready');
    this.total = pool.servers.map(() => 0);
    this.reserved = pool.servers.map(() => 0);
    this.limited = pool.servers.some((s) => s.maxConnections !== undefined);
    const balancerOpts = {
      ...(pool.hashKey === undefined ? {} : { hashKey: pool.hashKey }),
      ...(opts.maglevTableSize === undefined ? {} : { maglevTableSize: opts.maglevTableSize }),
    };
    this.primaryBalancer = createBalancer(pool.balance, this, balancerOpts);
    this.backupBalancer = createBalancer(pool.balance, this, balancerOpts);
    // Build the primaries' Maglev table now (a few ms at M = 65537) rather than on the first connection.
    // A hash pick has no other side effect.
    if (pool.balance === 'hash') this.pick({ sourceIp: '0.0.0.0' });
  }

  /**
   * The server for the next attempt of one connection: call with no `exclude` for the first attempt,
   * then with every index already tried. Undefined when no usable server is left. Each call of a
   * stateful policy (round-robin, least-conn ties) advances it, so call it once per attempt.
   */
  pick(ctx: PickContext, exclude: ReadonlySet<number> = NONE): number | undefined {
    const { primaries, backups } = this.eligible();
    for (const [tier, balancer] of [
      [primaries, this.primaryBalancer],
      [backups, this.backupBalancer],
    ] as const) {
      if (!tier.some((i) => !exclude.has(i))) continue;
      if (!this.limited) return balancer.pick(tier, ctx, exclude);
      // A tier whose usable servers are all at max_connections is still the tier in play: the connection
      // waits for one of them (the pool's queue) rather than spilling over to the backups.
      const full = tier.filter((i) => !exclude.has(i) && this.isFull(i));
      if (full.length === 0) return balancer.pick(tier, ctx, exclude);
      if (tier.every((i) => exclude.has(i) || this.isFull(i))) return undefined;
      return balancer.pick(tier, ctx, new Set([...exclude, ...full]));
    }
    return undefined;
  }

  /** A connection takes a slot of server i at its pick (max_connections), until release. */
  reserve(i: number): void {
    this.check(i);
    this.reserved[i]! += 1;
  }

  release(i: number): void {
    this.check(i);
    if (this.reserved[i]! > 0) this.reserved[i]! -= 1;
  }

  isFull(i: number): boolean {
    this.check(i);
    const max = this.servers[i]!.maxConnections;
    return max !== undefined && this.reserved[i]! >= max;
  }

  /** Connections holding a slot of server i (connecting or spliced). */
  slotsTaken(i: number): number {
    this.check(i);
    return this.reserved[i]!;
  }

  /** Some usable server outside `exclude` has a free slot: a waiting connection may try now. */
  hasFreeSlot(exclude: ReadonlySet<number> = NONE): boolean {
    const { primaries, backups } = this.eligible();
    const tier = primaries.some((i) => !exclude.has(i)) ? primaries : backups;
    return tier.some((i) => !exclude.has(i) && !this.isFull(i));
  }

  /**
   * No pick now only because servers are full: some usable server outside `exclude` is at its
   * max_connections, so a connection may wait for a slot. False when nothing usable is left at all.
   */
  waitable(exclude: ReadonlySet<number> = NONE): boolean {
    if (!this.limited) return false;
    const { primaries, backups } = this.eligible();
    const tier = primaries.some((i) => !exclude.has(i)) ? primaries : backups;
    return tier.some((i) => !exclude.has(i) && this.isFull(i));
  }

  /** Call when an attempt to server i starts (counts towards least-conn / random while connecting). */
  onConnect(i: number): void {
    this.check(i);
    this.active[i]! += 1;
    this.total[i]! += 1;
  }

  /** A reload's new state takes over the count of a server that stays. */
  carryTotal(i: number, n: number): void {
    this.check(i);
    this.total[i]! += n;
  }

  totalConnections(i: number): number {
    this.check(i);
    return this.total[i]!;
  }

  setAdminState(i: number, state: AdminState): void {
    this.check(i);
    if (this.admin[i] === state) return;
    this.admin[i] = state;
    this.eligibleCache = undefined;
  }

  adminState(i: number): AdminState {
    this.check(i);
    return this.admin[i]!;
  }

  /** Call when that attempt fails or the spliced connection closes: exactly once per onConnect. */
  onDisconnect(i: number): void {
    this.check(i);
    if (this.active[i]! > 0) this.active[i]! -= 1;
  }

  activeConnections(i: number): number {
    this.check(i);
    return this.active[i]!;
  }

  setUp(i: number, up: boolean): void {
    this.check(i);
    if (this.up[i] === up) return;
    this.up[i] = up;
    this.eligibleCache = undefined;
  }

  isUp(i: number): boolean {
    this.check(i);
    return this.up[i]!;
  }

  /** Runtime weight change; 0 drains the server (the config's `weight: 0` starts drained). */
  setWeight(i: number, weight: number): void {
    this.check(i);
    if (!Number.isFinite(weight) || weight < 0) {
      throw new TwinportError('TWP_ERR_POOL_WEIGHT', `weight ${weight} for server ${i} of pool ${this.name}`);
    }
    if (this.weights[i] === weight) return;
    this.weights[i] = weight;
    this.eligibleCache = undefined;
  }

  /**
   * The weight picks use: 0 while the server is drained or in maintenance, so every policy, the hash
   * tables and learned affinity (which treats weight 0 as drained) skip it alike.
   */
  weight(i: number): number {
    this.check(i);
    return this.admin[i] === 'ready' ? this.weights[i]! : 0;
  }

  /** The weight set by the config or at run time, whatever the admin state. */
  baseWeight(i: number): number {
    this.check(i);
    return this.weights[i]!;
  }

  /** Usable servers per tier, ascending; rebuilt only after a health or weight change. */
  private eligible(): { primaries: readonly number[]; backups: readonly number[] } {
    if (this.eligibleCache === undefined) {
      const primaries: number[] = [];
      const backups: number[] = [];
      this.servers.forEach((s, i) => {
        if (this.up[i] && this.weights[i]! > 0 && this.admin[i] === 'ready') (s.backup ? backups : primaries).push(i);
      });
      this.eligibleCache = { primaries, backups };
    }
    return this.eligibleCache;
  }

  private check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.servers.length) {
      throw new TwinportError('TWP_ERR_POOL_INDEX', `server ${i} of pool ${this.name} (${this.servers.length} servers)`);
    }
  }
}
