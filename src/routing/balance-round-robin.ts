// `round-robin`: nginx's smooth weighted round-robin (ngx_http_upstream_round_robin.c,
// ngx_http_upstream_get_peer). Each pick, every candidate's `current` grows by its weight, the largest
// wins (first in config order on a tie) and pays back the sum of the weights. Why smooth: weights
// {5,1,1} give a a b a c a a rather than a a a a a b c, so a heavy server never gets a burst in a row,
// and over any window of Σw picks every server gets exactly its weight.
//
// nginx also lowers an "effective weight" after failures; we leave failure handling to health state
// (a failed server is marked down, see pool-state.ts), so effective weight is the configured weight.
import type { Balancer, PickContext, ServerView } from './balancer.js';
import { remaining } from './balancer.js';

export class SmoothWeightedRoundRobin {
  private readonly current: Float64Array;

  constructor(
    private readonly view: ServerView,
    size = view.servers.length,
  ) {
    this.current = new Float64Array(size);
  }

  /** Picks among `candidates` (pool indices, all with weight > 0); undefined only when empty. */
  next(candidates: readonly number[]): number | undefined {
    let best: number | undefined;
    let total = 0;
    for (const i of candidates) {
      const w = this.view.weight(i);
      this.current[i]! += w;
      total += w;
      if (best === undefined || this.current[i]! > this.current[best]!) best = i;
    }
    if (best !== undefined) this.current[best]! -= total;
    return best;
  }
}

export class RoundRobinBalancer implements Balancer {
  private readonly rr: SmoothWeightedRoundRobin;

  constructor(view: ServerView) {
    this.rr = new SmoothWeightedRoundRobin(view);
  }

  pick(eligible: readonly number[], _ctx: PickContext, exclude: ReadonlySet<number>): number | undefined {
    // Like nginx's `tried` bitmap: excluded servers neither gain nor count towards the total.
    return this.rr.next(remaining(eligible, exclude));
  }
}
