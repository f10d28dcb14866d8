// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, §3.4) and the stable hash it is keyed by.
//
// Why Maglev: every instance that knows the same backend list builds the same lookup table, so two
// twinport instances behind ECMP send a given client to the same server without talking to each other;
// the table is balanced to within one entry per server; and removing one of N backends moves only a
// little more than the 1/N of keys that must move (the tests measure it).
//
// Why FNV-1a 64 written out here: the table must be the same in every process, machine and version.
// Node's built-in hashes are either per-process seeded (V8 string hashes) or heavyweight (crypto). FNV-1a
// (http://www.isthe.com/chongo/tech/comp/fnv/, IETF draft-eastlake-fnv) is a few lines, has published
// test vectors, and is fast on the short keys we hash (IP addresses, host names). We reduce the full
// 64-bit value modulo a prime, so the weak low bits of FNV never decide a slot on their own.

import { TwinportError } from '../errors.js';

/** The paper's default: a prime well above 100 × the backend counts we expect. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Below this the table cannot spread keys; above MAX, rebuilding on a health change costs too much. */
const MIN_TABLE_SIZE = 7;
const MAX_TABLE_SIZE = 1_048_573; // a prime < 2^20, so (hi mod M) × (2^32 mod M) stays below 2^53

/** A 64-bit hash as two unsigned 32-bit halves (no BigInt on the per-connection path). */
export interface Hash64 {
  readonly hi: number;
  readonly lo: number;
}

const FNV64_OFFSET_HI = 0xcbf29ce4;
const FNV64_OFFSET_LO = 0x84222325;

/**
 * FNV-1a 64: for each byte, `h ^= byte; h *= 0x100000001b3` (mod 2^64). The multiply is done on four
 * 16-bit limbs: the prime is 2^40 + 0x1b3, so only the limb products below survive mod 2^64, and every
 * intermediate stays far below 2^53.
 */
export function fnv1a64(data: Uint8Array): Hash64 {
  let h0 = FNV64_OFFSET_LO & 0xffff;
  let h1 = FNV64_OFFSET_LO >>> 16;
  let h2 = FNV64_OFFSET_HI & 0xffff;
  let h3 = FNV64_OFFSET_HI >>> 16;
  for (let i = 0; i < data.length; i++) {
    h0 ^= data[i]!;
    // (h3·2^48 + h2·2^32 + h1·2^16 + h0) × (2^40 + 0x1b3); 2^40 = 2^32 · 2^8 lands on limbs 2 and 3.
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + (h0 << 8) + Math.floor(t1 / 0x10000);
    const t3 = h3 * 0x1b3 + (h1 << 8) + Math.floor(t2 / 0x10000);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return { hi: ((h3 << 16) | h2) >>> 0, lo: ((h1 << 16) | h0) >>> 0 };
}

/** The whole 64-bit value modulo m (m < 2^20): hi·2^32 + lo ≡ (hi mod m)·(2^32 mod m) + lo. */
export function hashMod(h: Hash64, m: number): number {
  return (((h.hi % m) * (0x100000000 % m)) % m + (h.lo % m)) % m;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

export function checkTableSize(size: number): number {
  if (!isPrime(size) || size < MIN_TABLE_SIZE || size > MAX_TABLE_SIZE) {
    throw new TwinportError(
      'TWP_ERR_POOL_MAGLEV_SIZE',
      `${size} (want a prime between ${MIN_TABLE_SIZE} and ${MAX_TABLE_SIZE}, e.g. ${DEFAULT_MAGLEV_TABLE_SIZE})`,
    );
  }
  return size;
}

export interface MaglevBackend {
  /** Stable identity, the same in every instance: the server address as written in the config. */
  readonly name: string;
  /** Relative share of table entries (> 0). */
  readonly weight: number;
  /** What the table stores for this backend (the pool's server index). */
  readonly id: number;
}

const encoder = new TextEncoder();
// The second hash of the paper (h2, for `skip`) is FNV-1a over a prefixed name: a different input, so
// offset and skip are not the same number, with one hash function to keep stable.
const SKIP_PREFIX = 0xff; // never the first byte of UTF-8 text, so no name collides with a prefixed one

function permutationOf(name: string, size: number): { offset: number; skip: number } {
  const bytes = encoder.encode(name);
  const prefixed = new Uint8Array(bytes.length + 1);
  prefixed[0] = SKIP_PREFIX;
  prefixed.set(bytes, 1);
  return { offset: hashMod(fnv1a64(bytes), size), skip: hashMod(fnv1a64(prefixed), size - 1) + 1 };
}

/**
 * The lookup table of §3.4 (Pseudocode 1): each backend walks its own permutation
 * `(offset + j·skip) mod M` and claims the first free entry on each of its turns. M prime and
 * 1 ≤ skip < M make every permutation visit every entry.
 *
 * Weights: a backend takes `weight / maxWeight` turns per round (credit carried over between rounds), so
 * its share of entries is proportional to its weight.
 *
 * Order independence: turns go in order of name (not config order), so the table, as a map
 * slot → name, is the same however the servers are listed. Entries hold `id`; -1 only for no backends.
 */
export function buildMaglevTable(backends: readonly MaglevBackend[], size = DEFAULT_MAGLEV_TABLE_SIZE): Int32Array {
  checkTableSize(size);
  const table = new Int32Array(size).fill(-1);
  const live = backends.filter((b) => b.weight > 0 && Number.isFinite(b.weight));
  if (live.length === 0) return table;
  const ordered = [...live].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id));
  // Two servers written with the same address must still differ: number repeated names.
  const seen = new Map<string, number>();
  const n = ordered.length;
  const pos = new Int32Array(n);
  const skip = new Int32Array(n);
  const share = new Float64Array(n);
  const credit = new Float64Array(n);
  const maxWeight = Math.max(...ordered.map((b) => b.weight));
  ordered.forEach((b, i) => {
    const k = seen.get(b.name) ?? 0;
    seen.set(b.name, k + 1);
    const p = permutationOf(k === 0 ? b.name : `${b.name}#${k}`, size);
    pos[i] = p.offset;
    skip[i] = p.skip;
    share[i] = b.weight / maxWeight;
  });
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      credit[i]! += share[i]!;
      while (credit[i]! >= 1) {
        credit[i]! -= 1;
        const step = skip[i]!;
        let c = pos[i]!;
        while (table[c] !== -1) {
          c += step;
          if (c >= size) c -= size;
        }
        table[c] = ordered[i]!.id;
        c += step;
        pos[i] = c >= size ? c - size : c;
        if (++filled === size) return table;
      }
    }
  }
}

/**
 * The entry for a key hash, or — when `accept` refuses it (a server this connection already tried) —
 * the next accepted entry walking forward. The walk is the retry order: deterministic per key, and
 * spread over the other servers because the table interleaves them.
 */
export function maglevLookup(table: Int32Array, keyHash: Hash64, accept?: (id: number) => boolean): number | undefined {
  const size = table.length;
  const start = hashMod(keyHash, size);
  for (let step = 0; step < size; step++) {
    const id = table[(start + step) % size]!;
    if (id < 0) return undefined;
    if (accept === undefined || accept(id)) return id;
  }
  return undefined;
}
