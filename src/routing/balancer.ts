// One balancing policy per file (balance-*.ts); this file holds what they share and picks one by name.
// A balancer only chooses: which servers may be chosen (health, drain, backup tier) is pool-state.ts's
// business, and the proxy owns the sockets. Balancers hold their own small state (round-robin weights,
// a Maglev table) and never look at the clock.
import type { BalanceKind, HashKey, ServerConfig } from '../config/types.js';
import { FirstBalancer } from './balance-first.js';
import { HashBalancer } from './balance-hash.js';
import { LeastConnBalancer } from './balance-least-conn.js';
import { RandomBalancer } from './balance-random.js';
import { RoundRobinBalancer } from './balance-round-robin.js';

/** What the proxy knows when it picks a server for one connection. */
export interface PickContext {
  readonly sourceIp: string;
  readonly sni?: string;
  readonly host?: string;
  /** Uniform in [0, 1); defaults to Math.random. Tests pass a seeded one. */
  readonly random?: () => number;
}

/** The live numbers a balancer reads about each server, by pool index. */
export interface ServerView {
  readonly servers: readonly ServerConfig[];
  /** Current weight (> 0 for every eligible server; the config weight unless changed at runtime). */
  weight(i: number): number;
  /** Connections currently open or being opened to server i. */
  activeConnections(i: number): number;
}

export interface Balancer {
  /**
   * Chooses one of `eligible` that is not in `exclude`, or undefined when none is left.
   * `eligible` is ascending by pool index, never empty, and only changes with health or weights;
   * `exclude` holds the servers this connection already tried.
   */
  pick(eligible: readonly number[], ctx: PickContext, exclude: ReadonlySet<number>): number | undefined;
}

export interface BalancerOptions {
  readonly hashKey?: HashKey;
  readonly maglevTableSize?: number;
}

export function createBalancer(kind: BalanceKind, view: ServerView, opts: BalancerOptions = {}): Balancer {
  switch (kind) {
    case 'round-robin':
      return new RoundRobinBalancer(view);
    case 'least-conn':
      return new LeastConnBalancer(view);
    case 'random':
      return new RandomBalancer(view);
    case 'first':
      return new FirstBalancer();
    case 'hash':
      return new HashBalancer(view, opts.hashKey ?? 'source-ip', opts.maglevTableSize);
  }
}

/** `eligible` minus `exclude`, keeping order. */
export function remaining(eligible: readonly number[], exclude: ReadonlySet<number>): readonly number[] {
  return exclude.size === 0 ? eligible : eligible.filter((i) => !exclude.has(i));
}

/**
 * a/wa < b/wb without division (nginx's least_conn comparison): load scaled by weight, so a server of
 * weight 2 is "as busy" as one of weight 1 when it holds twice the connections.
 */
export function lessLoaded(view: ServerView, a: number, b: number): number {
  return view.activeConnections(a) * view.weight(b) - view.activeConnections(b) * view.weight(a);
}
