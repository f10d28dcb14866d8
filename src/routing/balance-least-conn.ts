// `least-conn`: the server with the fewest active connections relative to its weight (nginx least_conn:
// conns/weight, compared by cross-multiplying). Servers tied on that share the picks by smooth weighted
// round-robin, so an idle pool (all at zero) still spreads new connections by weight instead of sending
// every one to the first server. Suits long-lived, uneven connections (what a TCP splice usually is).
import type { Balancer, PickContext, ServerView } from './balancer.js';
import { lessLoaded, remaining } from './balancer.js';
import { SmoothWeightedRoundRobin } from './balance-round-robin.js';

export class LeastConnBalancer implements Balancer {
  private readonly rr: SmoothWeightedRoundRobin;

  constructor(private readonly view: ServerView) {
    this.rr = new SmoothWeightedRoundRobin(view);
  }

  pick(eligible: readonly number[], _ctx: PickContext, exclude: ReadonlySet<number>): number | undefined {
    let tied: number[] = [];
    for (const i of remaining(eligible, exclude)) {
      const first = tied[0];
      const cmp = first === undefined ? -1 : lessLoaded(this.view, i, first);
      if (cmp < 0) tied = [i];
      else if (cmp === 0) tied.push(i);
    }
    return tied.length <= 1 ? tied[0] : this.rr.next(tied);
  }
}
