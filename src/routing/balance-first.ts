// `first`: the first usable server in config order. With no per-server connection cap this is
// active/standby: everything goes to the first server that is up, the next one takes over when it is
// down or drained, and traffic returns when it comes back (HAProxy's `balance first` without maxconn).
import type { Balancer, PickContext } from './balancer.js';

export class FirstBalancer implements Balancer {
  pick(eligible: readonly number[], _ctx: PickContext, exclude: ReadonlySet<number>): number | undefined {
    return eligible.find((i) => !exclude.has(i));
  }
}
