// `random`: power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load
// Balancing", 2001; nginx `random two least_conn`). Draw two different servers at random, each with
// probability proportional to its weight, and keep the one with fewer active connections relative to
// its weight. Why: needs no shared state between twinport instances (unlike round-robin order), yet
// the maximum load is exponentially better than one random choice.
import type { Balancer, PickContext, ServerView } from './balancer.js';
import { lessLoaded, remaining } from './balancer.js';

export class RandomBalancer implements Balancer {
  constructor(private readonly view: ServerView) {}

  pick(eligible: readonly number[], ctx: PickContext, exclude: ReadonlySet<number>): number | undefined {
    const candidates = remaining(eligible, exclude);
    if (candidates.length <= 1) return candidates[0];
    const random = ctx.random ?? Math.random;
    const a = this.draw(candidates, random, undefined);
    const b = this.draw(candidates, random, a);
    // On equal load keep the first draw: both were drawn by weight, so that is still weighted.
    return lessLoaded(this.view, b, a) < 0 ? b : a;
  }

  /** A weighted draw from `candidates`, skipping `not`. */
  private draw(candidates: readonly number[], random: () => number, not: number | undefined): number {
    let total = 0;
    for (const i of candidates) if (i !== not) total += this.view.weight(i);
    // Clamp a misbehaving random() so the walk below always lands on a candidate.
    const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON) * total;
    let acc = 0;
    let last = candidates[0]!;
    for (const i of candidates) {
      if (i === not) continue;
      last = i;
      acc += this.view.weight(i);
      if (r < acc) return i;
    }
    return last;
  }
}
