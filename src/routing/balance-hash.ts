// `hash`: Maglev consistent hashing (maglev.ts) keyed by `hash_key`. The same key reaches the same
// server from every twinport instance that sees the same healthy servers, with no shared state.
//
// Health changes rebuild the table over the servers still usable (the paper's own answer to a backend
// change, §3.4): the result is exactly the table a fresh instance would build for that server list, so
// instances that learned of a failure at different times converge, and balance stays within one entry
// per server. The cost is Maglev's small extra disruption beyond the 1/N keys that must move (measured
// in test/routing/maglev.test.ts). Servers one connection already tried are skipped by walking the
// table forward from the key's slot instead, so a retry neither rebuilds nor moves anyone else's keys.
import type { HashKey } from '../config/types.js';
import type { Balancer, PickContext, ServerView } from './balancer.js';
import { ipToBytes, normaliseIp } from './cidr.js';
import { buildMaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, fnv1a64, maglevLookup, checkTableSize } from './maglev.js';
import { canonicalName } from './name-pattern.js';

const encoder = new TextEncoder();

/** The client address as 4 or 16 bytes (IPv4-mapped IPv6 as IPv4), so one client has one key. */
function sourceBytes(ip: string): Uint8Array {
  const raw = ipToBytes(ip);
  return raw === undefined ? encoder.encode(ip) : normaliseIp(raw);
}

/**
 * The bytes hashed for one connection. Names are case-folded and lose their trailing dot, as in route
 * matching, so `Example.COM.` and `example.com` stick to the same server. A missing SNI or Host falls
 * back to the source address (a client without SNI still sticks somewhere stable).
 */
export function hashKeyBytes(key: HashKey, ctx: PickContext): Uint8Array {
  switch (key) {
    case 'source-ip':
      return sourceBytes(ctx.sourceIp);
    case 'sni':
      return ctx.sni === undefined ? sourceBytes(ctx.sourceIp) : encoder.encode(canonicalName(ctx.sni));
    case 'host':
      return ctx.host === undefined ? sourceBytes(ctx.sourceIp) : encoder.encode(canonicalName(ctx.host));
    case 'sni+source-ip': {
      const ip = sourceBytes(ctx.sourceIp);
      if (ctx.sni === undefined) return ip;
      const name = encoder.encode(canonicalName(ctx.sni));
      // NUL cannot occur in a host name, so the pair (name, address) is read back unambiguously.
      const out = new Uint8Array(name.length + 1 + ip.length);
      out.set(name, 0);
      out.set(ip, name.length + 1);
      return out;
    }
  }
}

export class HashBalancer implements Balancer {
  private readonly tableSize: number;
  private builtFor: string | undefined;
  private builtFrom: readonly number[] | undefined;
  private table: Int32Array | undefined;

  constructor(
    private readonly view: ServerView,
    private readonly key: HashKey,
    tableSize = DEFAULT_MAGLEV_TABLE_SIZE,
  ) {
    this.tableSize = checkTableSize(tableSize);
  }

  pick(eligible: readonly number[], ctx: PickContext, exclude: ReadonlySet<number>): number | undefined {
    const table = this.tableFor(eligible);
    const h = fnv1a64(hashKeyBytes(this.key, ctx));
    return maglevLookup(table, h, exclude.size === 0 ? undefined : (i) => !exclude.has(i));
  }

  private tableFor(eligible: readonly number[]): Int32Array {
    // PoolState hands out the same array until health or a weight changes: then, and only then, is the
    // server list compared (a string over every server: ~50 µs per pick with 1 000 servers otherwise).
    if (this.table !== undefined && eligible === this.builtFrom) return this.table;
    this.builtFrom = eligible;
    const id = eligible.map((i) => `${i}:${this.view.weight(i)}`).join(',');
    if (this.table === undefined || id !== this.builtFor) {
      const backends = eligible.map((i) => ({
        name: this.view.servers[i]!.address.text,
        weight: this.view.weight(i),
        id: i,
      }));
      this.table = buildMaglevTable(backends, this.tableSize);
      this.builtFor = id;
    }
    return this.table;
  }
}
