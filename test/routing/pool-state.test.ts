import test from 'ava';
import fc from 'fast-check';
import type { BalanceKind, HashKey, PoolConfig, ServerConfig } from '../../src/config/types.js';
import type { PickContext } from '../../src/routing/balancer.js';
import { PoolState } from '../../src/routing/pool-state.js';
import { mulberry32 } from '../helpers/prng.js';

interface ServerSpec {
  weight?: number;
  backup?: boolean;
}

function server(i: number, s: ServerSpec = {}): ServerConfig {
  const port = 5000 + i;
  return {
    address: { text: `127.0.0.1:${port}`, host: '127.0.0.1', port },
    weight: s.weight ?? 1,
    backup: s.backup ?? false,
  };
}

function pool(balance: BalanceKind, specs: ServerSpec[], hashKey?: HashKey): PoolConfig {
  return {
    name: 'p',
    balance,
    ...(hashKey === undefined ? {} : { hashKey }),
    retries: specs.length - 1,
    affinityTable: { size: 100, ttl: 60_000, sidTtl: 60_000 },
    servers: specs.map((s, i) => server(i, s)),
  };
}


const ctx: PickContext = { sourceIp: '192.0.2.1' };
const POLICIES: BalanceKind[] = ['round-robin', 'least-conn', 'random', 'first', 'hash'];

function picks(p: PoolState, n: number, c: PickContext = ctx): (number | undefined)[] {
  return Array.from({ length: n }, () => p.pick(c));
}

// ---- round-robin --------------------------------------------------------------------------------

test('round-robin with weights {5,1,1} gives the nginx smooth sequence a a b a c a a, repeating', (t) => {
  const p = new PoolState(pool('round-robin', [{ weight: 5 }, { weight: 1 }, { weight: 1 }]));
  const a = 0, b = 1, c = 2;
  t.deepEqual(picks(p, 14), [a, a, b, a, c, a, a, a, a, b, a, c, a, a]);
});

test('round-robin with equal weights takes turns in config order', (t) => {
  const p = new PoolState(pool('round-robin', [{}, {}, {}]));
  t.deepEqual(picks(p, 6), [0, 1, 2, 0, 1, 2]);
});

test('property: round-robin gives every server exactly its weight in every window of Σw picks', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }), (weights) => {
      const p = new PoolState(pool('round-robin', weights.map((weight) => ({ weight }))));
      const total = weights.reduce((x, y) => x + y, 0);
      for (let round = 0; round < 3; round++) {
        const counts = weights.map(() => 0);
        for (const i of picks(p, total)) counts[i!]! += 1;
        if (counts.some((c, i) => c !== weights[i])) return false;
      }
      return true;
    }),
  );
  t.pass();
});

// ---- eligibility, shared by every policy ---------------------------------------------------------

for (const balance of POLICIES) {
  test(`${balance}: weight 0 is never picked, not even on retries`, (t) => {
    const p = new PoolState(pool(balance, [{ weight: 0 }, { weight: 2 }, { weight: 0 }, { weight: 1 }]));
    const rnd = mulberry32(7);
    for (let k = 0; k < 200; k++) {
      const c = { sourceIp: `10.0.${k >> 8}.${k & 255}`, random: rnd };
      const first = p.pick(c);
      t.true(first === 1 || first === 3);
      const second = p.pick(c, new Set([first!]));
      t.true(second === 1 || second === 3);
      t.not(second, first);
      t.is(p.pick(c, new Set([1, 3])), undefined);
    }
  });

  test(`${balance}: backups only when no primary is usable`, (t) => {
    const p = new PoolState(pool(balance, [{}, { backup: true }, {}, { backup: true }]));
    const primaries = new Set(picks(p, 50));
    t.true([...primaries].every((i) => i === 0 || i === 2));
    p.setUp(0, false);
    t.true(picks(p, 20).every((i) => i === 2));
    p.setWeight(2, 0); // drained: no primary is usable now
    const backups = new Set(picks(p, 50));
    t.true([...backups].every((i) => i === 1 || i === 3));
    p.setWeight(2, 1);
    t.true(picks(p, 20).every((i) => i === 2));
    p.setUp(0, true);
    t.true(picks(p, 20).every((i) => i === 0 || i === 2));
  });

  test(`${balance}: retries never repeat a server, end with the backups, then give undefined`, (t) => {
    const p = new PoolState(pool(balance, [{ backup: true }, { weight: 3 }, {}, { weight: 0 }, { backup: true }, {}]));
    p.setUp(5, false);
    const tried = new Set<number>();
    const order: number[] = [];
    for (;;) {
      const i = p.pick({ sourceIp: '198.51.100.7', random: mulberry32(3) }, tried);
      if (i === undefined) break;
      t.false(tried.has(i));
      tried.add(i);
      order.push(i);
    }
    t.deepEqual([...order.slice(0, 2)].sort(), [1, 2]);
    t.deepEqual([...order.slice(2)].sort(), [0, 4]);
  });

  test(`${balance}: all servers down gives undefined`, (t) => {
    const p = new PoolState(pool(balance, [{}, { backup: true }]));
    p.setUp(0, false);
    p.setUp(1, false);
    t.is(p.pick(ctx), undefined);
    p.setUp(1, true);
    t.is(p.pick(ctx), 1);
  });
}

test('property: under any health, weights and exclusions every policy picks a usable, untried server of the right tier', (t) => {
  const spec = fc.record({ weight: fc.integer({ min: 0, max: 5 }), backup: fc.boolean(), up: fc.boolean() });
  fc.assert(
    fc.property(
      fc.constantFrom(...POLICIES),
      fc.array(spec, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(7)),
      fc.ipV4(),
      fc.integer(),
      (balance, specs, excluded, sourceIp, seed) => {
        const p = new PoolState(pool(balance, specs), { maglevTableSize: 251 });
        specs.forEach((s, i) => p.setUp(i, s.up));
        const exclude = new Set(excluded.filter((i) => i < specs.length));
        const usable = (i: number): boolean => specs[i]!.up && specs[i]!.weight > 0 && !exclude.has(i);
        const idx = specs.map((_, i) => i);
        const primaries = idx.filter((i) => !specs[i]!.backup && usable(i));
        const backups = idx.filter((i) => specs[i]!.backup && usable(i));
        const expectedTier = primaries.length > 0 ? primaries : backups;
        const got = p.pick({ sourceIp, random: mulberry32(seed) }, exclude);
        return got === undefined ? expectedTier.length === 0 : expectedTier.includes(got);
      },
    ),
    { numRuns: 500 },
  );
  t.pass();
});

// ---- first --------------------------------------------------------------------------------------

test('first fills in config order and moves on only when a server is down or drained', (t) => {
  const p = new PoolState(pool('first', [{}, { weight: 5 }, {}]));
  t.deepEqual(picks(p, 3), [0, 0, 0]);
  p.onConnect(0);
  p.onConnect(0);
  t.is(p.pick(ctx), 0, 'load does not matter to `first`');
  p.setUp(0, false);
  t.deepEqual(picks(p, 3), [1, 1, 1]);
  p.setWeight(1, 0);
  t.is(p.pick(ctx), 2);
  p.setUp(0, true);
  t.is(p.pick(ctx), 0);
  t.is(p.pick(ctx, new Set([0])), 2);
});

// ---- least-conn ---------------------------------------------------------------------------------

function load(p: PoolState, counts: number[]): void {
  counts.forEach((n, i) => {
    for (let k = 0; k < n; k++) p.onConnect(i);
  });
}

test('least-conn picks the server with the fewest active connections', (t) => {
  const p = new PoolState(pool('least-conn', [{}, {}, {}]));
  load(p, [3, 1, 2]);
  t.is(p.pick(ctx), 1);
  p.onConnect(1);
  p.onConnect(1);
  t.is(p.pick(ctx), 2);
  p.onDisconnect(0);
  p.onDisconnect(0);
  t.is(p.pick(ctx), 0);
  t.is(p.activeConnections(0), 1);
});

test('least-conn scales connections by weight', (t) => {
  const p = new PoolState(pool('least-conn', [{ weight: 3 }, { weight: 1 }]));
  load(p, [5, 2]); // 5/3 < 2/1
  t.is(p.pick(ctx), 0);
  p.onConnect(0); // 6/3 = 2/1: a tie
  p.onConnect(0); // 7/3 > 2/1
  t.is(p.pick(ctx), 1);
});

test('least-conn breaks ties by weighted round-robin, so an idle pool still spreads by weight', (t) => {
  const p = new PoolState(pool('least-conn', [{ weight: 2 }, {}, {}]));
  t.deepEqual(picks(p, 8), [0, 1, 2, 0, 0, 1, 2, 0]);
  // Connections that are opened as they are picked fill the pool evenly by weight.
  const q = new PoolState(pool('least-conn', [{ weight: 2 }, {}, {}]));
  for (let k = 0; k < 40; k++) q.onConnect(q.pick(ctx)!);
  t.deepEqual([0, 1, 2].map((i) => q.activeConnections(i)), [20, 10, 10]);
});

test('onDisconnect never takes a count below zero', (t) => {
  const p = new PoolState(pool('least-conn', [{}, {}]));
  p.onDisconnect(0);
  p.onConnect(1);
  t.is(p.activeConnections(0), 0);
  t.is(p.pick(ctx), 0);
});

// ---- random (power of two choices) ---------------------------------------------------------------

test('random with two servers always takes the less loaded one', (t) => {
  const p = new PoolState(pool('random', [{}, {}]));
  load(p, [5, 0]);
  const rnd = mulberry32(11);
  t.true(picks(p, 200, { ...ctx, random: rnd }).every((i) => i === 1));
});

test('property: random never picks the uniquely most loaded server when it has a choice', (t) => {
  fc.assert(
    fc.property(fc.array(fc.nat(20), { minLength: 2, maxLength: 8 }), fc.integer(), (counts, seed) => {
      const max = Math.max(...counts);
      fc.pre(counts.filter((c) => c === max).length === 1);
      const p = new PoolState(pool('random', counts.map(() => ({}))));
      load(p, counts);
      const busiest = counts.indexOf(max);
      return picks(p, 50, { ...ctx, random: mulberry32(seed) }).every((i) => i !== busiest);
    }),
  );
  t.pass();
});

test('random follows the weights when load is equal', (t) => {
  const p = new PoolState(pool('random', [{ weight: 3 }, { weight: 1 }]));
  const rnd = mulberry32(2024);
  const n = 20000;
  const zero = picks(p, n, { ...ctx, random: rnd }).filter((i) => i === 0).length;
  // Equal load keeps the first (weighted) draw: P(server 0) = 3/4. 0.02 is > 9 standard deviations.
  t.true(Math.abs(zero / n - 0.75) < 0.02, `share ${zero / n}`);
});

test('random spreads load better than one random choice would (p2c keeps the maximum near the mean)', (t) => {
  const servers = 10;
  const p = new PoolState(pool('random', Array.from({ length: servers }, () => ({}))));
  const rnd = mulberry32(99);
  for (let k = 0; k < 1000; k++) p.onConnect(p.pick({ ...ctx, random: rnd })!);
  const counts = Array.from({ length: servers }, (_, i) => p.activeConnections(i));
  // With two choices the max load is mean + O(log log n); one choice gives mean + O(sqrt(mean·log n)) ≈ +20.
  t.true(Math.max(...counts) - 100 <= 5, `counts ${counts.join(',')}`);
});

// ---- hash -----------------------------------------------------------------------------------------

function mapping(p: PoolState, keys: readonly PickContext[]): (number | undefined)[] {
  return keys.map((k) => p.pick(k));
}

const clients = Array.from({ length: 2000 }, (_, k) => ({ sourceIp: `10.${k % 7}.${k >> 8}.${k & 255}` }));

test('hash sends the same key to the same server, and spreads different keys', (t) => {
  const p = new PoolState(pool('hash', [{}, {}, {}, {}]));
  const first = mapping(p, clients);
  t.deepEqual(mapping(p, clients), first);
  t.deepEqual([...new Set(first)].sort(), [0, 1, 2, 3]);
});

test('hash on source-ip treats an IPv4-mapped IPv6 client as the same IPv4 client', (t) => {
  const p = new PoolState(pool('hash', [{}, {}, {}, {}, {}]));
  for (const c of clients.slice(0, 200)) t.is(p.pick({ sourceIp: `::ffff:${c.sourceIp}` }), p.pick(c));
});

test('hash on sni folds case and a trailing dot; a missing sni falls back to the source address', (t) => {
  const specs = [{}, {}, {}, {}, {}, {}, {}];
  const bySni = new PoolState(pool('hash', specs, 'sni'));
  const bySource = new PoolState(pool('hash', specs, 'source-ip'));
  const names = Array.from({ length: 300 }, (_, k) => `host${k}.example.com`);
  const spread = new Set<number | undefined>();
  for (const name of names) {
    const i = bySni.pick({ sourceIp: '10.0.0.1', sni: name });
    spread.add(i);
    t.is(bySni.pick({ sourceIp: '172.16.9.9', sni: name.toUpperCase() + '.' }), i, 'same name, any client');
  }
  t.is(spread.size, specs.length, 'different names reach every server');
  for (const c of clients.slice(0, 200)) t.is(bySni.pick(c), bySource.pick(c));
});

test('hash on host and on sni+source-ip', (t) => {
  const specs = [{}, {}, {}, {}, {}];
  const byHost = new PoolState(pool('hash', specs, 'host'));
  const bySource = new PoolState(pool('hash', specs, 'source-ip'));
  t.is(byHost.pick({ sourceIp: '10.0.0.1', host: 'Plain.Example.com' }), byHost.pick({ sourceIp: '10.9.9.9', host: 'plain.example.com.' }));
  for (const c of clients.slice(0, 100)) t.is(byHost.pick(c), bySource.pick(c));
  const pair = new PoolState(pool('hash', specs, 'sni+source-ip'));
  for (const c of clients.slice(0, 100)) t.is(pair.pick(c), bySource.pick(c), 'no sni: the source address alone');
  // One name from many clients spreads; one client with one name sticks.
  const spread = new Set(clients.slice(0, 200).map((c) => pair.pick({ ...c, sni: 'a.example.com' })));
  t.is(spread.size, specs.length);
  t.is(pair.pick({ sourceIp: '10.0.0.1', sni: 'A.example.com' }), pair.pick({ sourceIp: '::ffff:10.0.0.1', sni: 'a.example.com.' }));
});

test('hash: a server going down moves only its own keys (about), and they all come back when it returns', (t) => {
  const p = new PoolState(pool('hash', [{}, {}, {}, {}, {}]));
  const before = mapping(p, clients);
  p.setUp(2, false);
  const during = mapping(p, clients);
  t.false(during.includes(2));
  const movedOthers = before.filter((s, k) => s !== 2 && during[k] !== s).length;
  t.true(movedOthers / clients.length <= 0.03, `${movedOthers} keys of healthy servers moved`);
  p.setUp(2, true);
  t.deepEqual(mapping(p, clients), before);
});

test('hash: a retry walks on to another server, deterministically per key', (t) => {
  const p = new PoolState(pool('hash', [{}, {}, {}, {}]));
  for (const c of clients.slice(0, 100)) {
    const first = p.pick(c)!;
    const second = p.pick(c, new Set([first]));
    t.not(second, undefined);
    t.not(second, first);
    t.is(p.pick(c, new Set([first])), second);
  }
});

test('hash honours weights', (t) => {
  const p = new PoolState(pool('hash', [{ weight: 3 }, { weight: 1 }]));
  const keys = Array.from({ length: 20000 }, (_, k) => ({ sourceIp: `10.${k >> 16}.${(k >> 8) & 255}.${k & 255}` }));
  const zero = mapping(p, keys).filter((i) => i === 0).length / keys.length;
  t.true(Math.abs(zero - 0.75) < 0.02, `share ${zero}`);
});

// ---- misuse -------------------------------------------------------------------------------------

test('a non-prime Maglev table size and out-of-range indices are errors with codes', (t) => {
  t.throws(() => new PoolState(pool('hash', [{}]), { maglevTableSize: 65536 }), { code: 'TWP_ERR_POOL_MAGLEV_SIZE' } as never);
  const p = new PoolState(pool('round-robin', [{}, {}]));
  t.throws(() => p.setUp(2, false), { code: 'TWP_ERR_POOL_INDEX' } as never);
  t.throws(() => p.onConnect(-1), { code: 'TWP_ERR_POOL_INDEX' } as never);
  t.throws(() => p.setWeight(0, -1), { code: 'TWP_ERR_POOL_WEIGHT' } as never);
  t.throws(() => p.setWeight(0, Number.NaN), { code: 'TWP_ERR_POOL_WEIGHT' } as never);
});

test('max_connections: a full server is not picked, a tier of full servers gives no pick and is waitable, a release frees the slot', async (t) => {
  const { PoolState } = await import('../../src/routing/pool-state.js');
  const servers = [0, 1, 2].map((i) => ({
    address: { text: `127.0.0.1:${5000 + i}`, host: '127.0.0.1', port: 5000 + i },
    weight: 1,
    backup: i === 2,
    ...(i < 2 && { maxConnections: 1 }),
  }));
  const s = new PoolState({ name: 'p', balance: 'first', retries: 2, affinityTable: { size: 1, ttl: 1, sidTtl: 1 }, servers });
  t.is(s.pick({ sourceIp: '' }), 0);
  s.reserve(0);
  t.true(s.isFull(0));
  t.is(s.pick({ sourceIp: '' }), 1, 'the full server is skipped');
  s.reserve(1);
  t.is(s.pick({ sourceIp: '' }), undefined, 'primaries full: no pick, and not the backup (it is for down servers)');
  t.true(s.waitable());
  t.false(s.hasFreeSlot());
  s.release(0);
  t.true(s.hasFreeSlot());
  t.is(s.pick({ sourceIp: '' }), 0);
  s.setUp(0, false);
  s.setUp(1, false);
  t.is(s.pick({ sourceIp: '' }), 2, 'the backup when the primaries are down');
  t.false(s.waitable(), 'nothing to wait for once the primaries are down');
});
