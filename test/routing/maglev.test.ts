import test from 'ava';
import fc from 'fast-check';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  buildMaglevTable,
  DEFAULT_MAGLEV_TABLE_SIZE,
  fnv1a64,
  hashMod,
  isPrime,
  type MaglevBackend,
  maglevLookup,
} from '../../src/routing/maglev.js';

const run = promisify(execFile);
const enc = new TextEncoder();

/** Reference FNV-1a 64 in BigInt, straight from the definition: an independent check of the limb maths. */
function fnvReference(data: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of data) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

const asBig = (h: { hi: number; lo: number }): bigint => (BigInt(h.hi) << 32n) | BigInt(h.lo);

test('fnv1a64 gives the published test vectors', (t) => {
  // From the FNV reference code's test suite (Landon Curt Noll, test_fnv.c, FNV-1a 64).
  t.is(asBig(fnv1a64(enc.encode(''))), 0xcbf29ce484222325n);
  t.is(asBig(fnv1a64(enc.encode('a'))), 0xaf63dc4c8601ec8cn);
  t.is(asBig(fnv1a64(enc.encode('foobar'))), 0x85944171f73967e8n);
});

test('property: fnv1a64 equals the BigInt definition and hashMod the BigInt remainder', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 2, max: 1_048_573 }), (bytes, m) => {
      const h = fnv1a64(bytes);
      const ref = fnvReference(bytes);
      return asBig(h) === ref && hashMod(h, m) === Number(ref % BigInt(m));
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

const backends = (n: number, weight = (_i: number) => 1): MaglevBackend[] =>
  Array.from({ length: n }, (_, i) => ({ name: `10.1.${i >> 8}.${i & 255}:443`, weight: weight(i), id: i }));

/** Keys as a real pool sees them: client addresses, here consecutive from a per-run base. */
function keys(count: number, base: number): Uint8Array[] {
  return Array.from({ length: count }, (_, k) => {
    const v = (base + k) >>> 0;
    return new Uint8Array([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
  });
}

function assign(table: Int32Array, ks: readonly Uint8Array[]): number[] {
  return ks.map((k) => maglevLookup(table, fnv1a64(k))!);
}

test('the default table size is prime, and every entry of a built table names a backend', (t) => {
  t.true(isPrime(DEFAULT_MAGLEV_TABLE_SIZE));
  const table = buildMaglevTable(backends(5));
  t.is(table.length, DEFAULT_MAGLEV_TABLE_SIZE);
  t.true(table.every((id) => id >= 0 && id < 5));
  t.true(buildMaglevTable([]).every((id) => id === -1));
  t.is(maglevLookup(buildMaglevTable([]), fnv1a64(enc.encode('x'))), undefined);
});

test('property: with equal weights each backend owns ⌊M/N⌋ or ⌈M/N⌉ entries', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.constantFrom(251, 4099, 65537), (n, m) => {
      fc.pre(n <= m);
      const counts = new Array<number>(n).fill(0);
      for (const id of buildMaglevTable(backends(n), m)) counts[id]! += 1;
      return counts.every((c) => c === Math.floor(m / n) || c === Math.ceil(m / n));
    }),
    { numRuns: 40 },
  );
  t.pass();
});

// The table fills up part-way through a round of turns, so a backend's count is off from its exact share
// by less than 1 + share + n·w/W (share = w/max w ≤ 1; the round count is known to within one round).
test('property: weighted backends own entries in proportion to their weights (within one round of turns)', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 10 }), (weights) => {
      const m = DEFAULT_MAGLEV_TABLE_SIZE;
      const total = weights.reduce((a, b) => a + b, 0);
      const counts = weights.map(() => 0);
      for (const id of buildMaglevTable(backends(weights.length, (i) => weights[i]!), m)) counts[id]! += 1;
      const n = weights.length;
      return counts.every((c, i) => Math.abs(c - (m * weights[i]!) / total) < 2 + (n * weights[i]!) / total);
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test('property: 100k keys spread within a few percent of even over N servers', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 12 }), fc.nat(), (n, base) => {
      const count = 100_000;
      const got = new Array<number>(n).fill(0);
      for (const id of assign(buildMaglevTable(backends(n)), keys(count, base))) got[id]! += 1;
      const even = count / n;
      // 6% of an even share is ≥ 5 standard deviations of a binomial count at n = 12.
      return got.every((c) => Math.abs(c - even) / even <= 0.06);
    }),
    { numRuns: 15 },
  );
  t.pass();
});

test('property: removing 1 of N servers moves about 1/N of the keys (≤ 1/N + 2%)', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 20 }), fc.nat(), fc.nat(), (n, pick, base) => {
      const removed = pick % n;
      const all = backends(n);
      const ks = keys(20_000, base);
      const before = assign(buildMaglevTable(all), ks);
      const after = assign(buildMaglevTable(all.filter((b) => b.id !== removed)), ks);
      let moved = 0;
      for (let k = 0; k < ks.length; k++) {
        if (after[k] === removed) return false;
        if (after[k] !== before[k]) moved++;
      }
      return moved / ks.length <= 1 / n + 0.02;
    }),
    { numRuns: 25 },
  );
  t.pass();
});

test('property: the table is a pure function of the server list, whatever its order', (t) => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })), { minLength: 1, maxLength: 12, selector: (x) => x.join(':') }),
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 12, maxLength: 12 }),
      fc.nat(),
      (addrs, weights, shuffleSeed) => {
        const list: MaglevBackend[] = addrs.map(([ip, port], i) => ({ name: `${ip}:${port}`, weight: weights[i]!, id: i }));
        const a = buildMaglevTable(list, 4099);
        const b = buildMaglevTable(list.map((x) => ({ ...x })), 4099);
        if (!a.every((v, i) => v === b[i])) return false;
        // Same servers listed in another order (so with other ids): the same name in every slot.
        const shuffled = [...list].sort((x, y) => ((x.id * 7919 + shuffleSeed) % 101) - ((y.id * 7919 + shuffleSeed) % 101));
        const relisted = shuffled.map((x, i) => ({ ...x, id: i }));
        const c = buildMaglevTable(relisted, 4099);
        return a.every((id, slot) => list[id]!.name === relisted[c[slot]!]!.name);
      },
    ),
    { numRuns: 100 },
  );
  t.pass();
});

test('lookup walks past refused entries to the next accepted one, and gives undefined when none is', (t) => {
  const table = buildMaglevTable(backends(4), 251);
  for (const k of keys(200, 77)) {
    const h = fnv1a64(k);
    const first = maglevLookup(table, h)!;
    const next = maglevLookup(table, h, (id) => id !== first);
    t.true(next !== undefined && next !== first);
    const start = hashMod(h, table.length);
    let slot = start;
    while (table[slot] === first) slot = (slot + 1) % table.length;
    t.is(next, table[slot]);
    t.is(maglevLookup(table, h, () => false), undefined);
  }
});

test('two separate node processes pick the same server for the same key', async (t) => {
  const moduleUrl = new URL('../../src/routing/maglev.js', import.meta.url).href;
  const servers = ['10.0.0.1:443', '10.0.0.2:443', '10.0.0.3:8443', '[2001:db8::7]:443', 'unix:/run/backend.sock'];
  const weights = [1, 2, 1, 3, 1];
  const names = Array.from({ length: 500 }, (_, k) => `client-${k}.example.com`);
  const script = `
    const { buildMaglevTable, fnv1a64, maglevLookup } = await import(${JSON.stringify(moduleUrl)});
    const servers = ${JSON.stringify(servers)}, weights = ${JSON.stringify(weights)}, names = ${JSON.stringify(names)};
    const table = buildMaglevTable(servers.map((name, id) => ({ name, weight: weights[id], id })));
    const enc = new TextEncoder();
    process.stdout.write(JSON.stringify(names.map((n) => maglevLookup(table, fnv1a64(enc.encode(n))))));
  `;
  const child = () => run(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  const [one, two] = await Promise.all([child(), child()]);
  const a = JSON.parse(one.stdout) as number[];
  const b = JSON.parse(two.stdout) as number[];
  t.is(a.length, names.length);
  t.deepEqual(a, b);
  const here = buildMaglevTable(servers.map((name, id) => ({ name, weight: weights[id]!, id })));
  t.deepEqual(a, names.map((n) => maglevLookup(here, fnv1a64(enc.encode(n)))!));
  t.is(new Set(a).size, servers.length);
});
