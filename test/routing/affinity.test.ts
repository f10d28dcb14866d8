// The pure affinity decisions (src/routing/affinity.ts) and the bounded table and per-pool counters
// built on them (src/affinity/affinity-table.ts, affinity-pool.ts), without sockets.
import test from 'ava';
import fc from 'fast-check';
import type { PoolConfig, ServerConfig } from '../../src/config/types.js';
import { createTlsProbe, type TlsFields } from '../../src/protocol/tls-client-hello.js';
import { PoolAffinity, type AffinityChoice } from '../../src/affinity/affinity-pool.js';
import { AffinityTable } from '../../src/affinity/affinity-table.js';
import { watchServerFlight } from '../../src/affinity/affinity-watcher.js';
import {
  helloKeys,
  lessonsFromFlight,
  MAX_HELLO_KEYS,
  MAX_TICKETS_LEARNED_PER_FLIGHT,
  offersOnlyTls13,
  ticketKeyName,
  type AffinityFlight,
  type AffinityHello,
} from '../../src/routing/affinity.js';
import { PoolState } from '../../src/routing/pool-state.js';
import { readFixture } from '../helpers/fixtures.js';
import { ext, handshakeMessage, newSessionTicketMessage, serverHelloMessage, tlsRecord, toRecords } from '../helpers/tls-build.js';

const TLS12 = 0x0303;
const TLS13 = 0x0304;

function bytes(n: number, fill: number): Buffer {
  return Buffer.alloc(n, fill);
}

function flight(f: Partial<AffinityFlight> & { version: number }): AffinityFlight {
  return { sessionId: Buffer.alloc(0), helloRetryRequest: false, newSessionTicketPrefixes: [], ...f };
}

function parseFixture(name: string): TlsFields {
  const v = createTlsProbe().probe(readFixture(name), { final: true });
  if (v.kind !== 'match') throw new Error(`${name}: ${JSON.stringify(v)}`);
  return v.fields;
}

// ── keys of a hello ─────────────────────────────────────────────────────────────────────────────────

test('a TLS 1.3-only hello offers no session-ID key (its legacy ID is random), even beside GREASE', (t) => {
  const sid = bytes(32, 7);
  t.deepEqual(helloKeys({ sessionId: sid, supportedVersions: [0x3a3a, TLS13] }), []);
  t.true(offersOnlyTls13({ sessionId: sid, supportedVersions: [0x3a3a, TLS13] }));
  // Offering 1.2 as well: the ID may be a real 1.2 session, so it is looked up.
  t.deepEqual(helloKeys({ sessionId: sid, supportedVersions: [TLS13, TLS12] }), [{ kind: 'sid', hex: sid.toString('hex') }]);
  // No supported_versions at all: a ≤ 1.2 hello.
  t.deepEqual(helloKeys({ sessionId: sid }), [{ kind: 'sid', hex: sid.toString('hex') }]);
  t.deepEqual(helloKeys({ sessionId: Buffer.alloc(0) }), []);
});

test('ticket key name first, then PSK identities in order, then the session ID; duplicates once', (t) => {
  const name1 = bytes(16, 0xa1);
  const name2 = bytes(16, 0xb2);
  const hello: AffinityHello = {
    sessionId: bytes(32, 1),
    supportedVersions: [TLS13, TLS12],
    sessionTicket: Buffer.concat([name1, bytes(80, 9)]),
    pskIdentities: [Buffer.concat([name1, bytes(40, 3)]), Buffer.concat([name2, bytes(40, 4)]), bytes(8, 5)],
  };
  t.deepEqual(
    helloKeys(hello).map((k) => `${k.kind}:${k.hex.slice(0, 4)}`),
    ['tkt:a1a1', 'tkt:b2b2', 'sid:0101'],
  );
  t.deepEqual(helloKeys({ sessionId: Buffer.alloc(0), sessionTicket: Buffer.alloc(0) }), [], 'an empty ticket extension only says "supported"');
  t.is(ticketKeyName(bytes(15, 1)), undefined);
});

test('real hellos: an OpenSSL 1.2 ticket resumption offers its key name, a 1.3 PSK resumption its identity key name', (t) => {
  const ticket = parseFixture('openssl-tls12-resume-ticket');
  t.truthy(ticket.sessionTicket);
  t.is(helloKeys(ticket)[0]?.hex, ticket.sessionTicket!.toString('hex', 0, 16));
  const psk = parseFixture('openssl-tls13-psk');
  const keys = helloKeys(psk);
  t.deepEqual(keys, [{ kind: 'tkt', hex: psk.pskIdentities![0]!.toString('hex', 0, 16) }], 'the 1.3-only hello’s legacy ID is not a key');
  const fresh = parseFixture('openssl-tls13');
  t.is(fresh.sessionId.length, 32);
  t.deepEqual(helloKeys(fresh), []);
});

test('a hello stuffed with PSK identities is looked up by at most the ticket, 2 identities and the session ID', (t) => {
  const ids = Array.from({ length: 1150 }, (_, i) => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(i + 1);
    return b;
  });
  const ticket = Buffer.concat([bytes(16, 0xee), bytes(40, 0)]);
  const sid = bytes(32, 3);
  const keys = helloKeys({ sessionId: sid, supportedVersions: [TLS13, TLS12], sessionTicket: ticket, pskIdentities: ids });
  t.is(MAX_HELLO_KEYS, 4);
  t.deepEqual(keys, [
    { kind: 'tkt', hex: bytes(16, 0xee).toString('hex') },
    { kind: 'tkt', hex: ids[0]!.toString('hex') },
    { kind: 'tkt', hex: ids[1]!.toString('hex') },
    { kind: 'sid', hex: sid.toString('hex') },
  ]);
  // The bound is on identities read, not on distinct names: duplicates of the ticket do not let more in.
  const dup = helloKeys({ sessionId: Buffer.alloc(0), sessionTicket: ticket, pskIdentities: [ticket, ticket, ...ids] });
  t.deepEqual(dup, [{ kind: 'tkt', hex: bytes(16, 0xee).toString('hex') }]);
});

// ── lessons of a server flight ──────────────────────────────────────────────────────────────────────

test('TLS 1.2 full handshake: learn the ID the server assigned and the key names of its clear tickets', (t) => {
  const serverId = bytes(32, 0x44);
  const ticket = Buffer.concat([bytes(16, 0x55), bytes(100, 0)]);
  const l = lessonsFromFlight({ sessionId: Buffer.alloc(0) }, flight({ version: TLS12, sessionId: serverId, newSessionTicketPrefixes: [ticket] }), undefined);
  t.deepEqual(l.learn, [
    { kind: 'sid', hex: serverId.toString('hex') },
    { kind: 'tkt', hex: bytes(16, 0x55).toString('hex') },
  ]);
  t.deepEqual(l.unlearn, []);
});

test('TLS 1.2 resumption (ID echoed) teaches nothing new; a new ID on a hello routed by affinity unlearns its key', (t) => {
  const sid = bytes(32, 0x10);
  const routedBy = { kind: 'sid' as const, hex: sid.toString('hex') };
  const echoed = lessonsFromFlight({ sessionId: sid }, flight({ version: TLS12, sessionId: sid }), routedBy);
  t.deepEqual(echoed, { learn: [], unlearn: [] });
  const fresh = bytes(32, 0x20);
  const refused = lessonsFromFlight({ sessionId: sid }, flight({ version: TLS12, sessionId: fresh }), routedBy);
  t.deepEqual(refused.unlearn, [routedBy]);
  t.deepEqual(refused.learn, [{ kind: 'sid', hex: fresh.toString('hex') }]);
});

test('TLS 1.2 ticket refused (a full handshake, no new ticket): its key name is not unlearned', (t) => {
  const name = bytes(16, 0x78);
  const routedBy = { kind: 'tkt' as const, hex: name.toString('hex') };
  const hello = { sessionId: bytes(32, 1), sessionTicket: Buffer.concat([name, bytes(60, 1)]) };
  const l = lessonsFromFlight(hello, flight({ version: TLS12, sessionId: bytes(32, 2) }), routedBy);
  t.deepEqual(l, { learn: [{ kind: 'sid', hex: bytes(32, 2).toString('hex') }], unlearn: [] });
});

test('TLS 1.2 ticket refused but a new ticket under the same key name: the name stays learned', (t) => {
  const name = bytes(16, 0x77);
  const routedBy = { kind: 'tkt' as const, hex: name.toString('hex') };
  const hello = { sessionId: bytes(32, 1), sessionTicket: Buffer.concat([name, bytes(60, 1)]) };
  const l = lessonsFromFlight(hello, flight({ version: TLS12, sessionId: bytes(32, 2), newSessionTicketPrefixes: [Buffer.concat([name, bytes(60, 2)])] }), routedBy);
  t.deepEqual(l.unlearn, []);
  t.true(l.learn.some((k) => k.kind === 'tkt' && k.hex === routedBy.hex));
});

test('TLS 1.3: an accepted PSK teaches its identity key name; a refused one unlearns nothing; never a session ID', (t) => {
  const ids = [Buffer.concat([bytes(16, 0xc1), bytes(50, 0)]), Buffer.concat([bytes(16, 0xc2), bytes(50, 0)])];
  const echo = bytes(32, 0x99);
  const hello: AffinityHello = { sessionId: echo, supportedVersions: [TLS13], pskIdentities: ids };
  const accepted = lessonsFromFlight(hello, flight({ version: TLS13, sessionId: echo, pskSelectedIdentity: 1 }), undefined);
  t.deepEqual(accepted, { learn: [{ kind: 'tkt', hex: bytes(16, 0xc2).toString('hex') }], unlearn: [] });
  // A refused ticket key name stays learned (F11: any client can get a refusal for any name).
  const routedBy = { kind: 'tkt' as const, hex: bytes(16, 0xc1).toString('hex') };
  t.deepEqual(lessonsFromFlight(hello, flight({ version: TLS13, sessionId: echo }), routedBy), { learn: [], unlearn: [] });
  // A 1.2 session ID that routed a hello also offering 1.3, refused by a 1.3 answer: that session is gone.
  const sidHello: AffinityHello = { sessionId: bytes(32, 0x98), supportedVersions: [TLS13, TLS12] };
  const bySid = { kind: 'sid' as const, hex: bytes(32, 0x98).toString('hex') };
  t.deepEqual(lessonsFromFlight(sidHello, flight({ version: TLS13, sessionId: bytes(32, 0x98) }), bySid), { learn: [], unlearn: [bySid] });
  // After a HelloRetryRequest the second hello may have dropped identities: the index is not trusted.
  t.deepEqual(lessonsFromFlight(hello, flight({ version: TLS13, sessionId: echo, pskSelectedIdentity: 0, helloRetryRequest: true }), undefined).learn, []);
});

test('a flight of 9000 NewSessionTickets teaches at most MAX_TICKETS_LEARNED_PER_FLIGHT key names', (t) => {
  const distinct = Array.from({ length: 9000 }, (_, i) => {
    const b = Buffer.alloc(48);
    b.writeUInt32BE(i + 1);
    return b;
  });
  const serverId = bytes(32, 0x61);
  const l = lessonsFromFlight({ sessionId: Buffer.alloc(0) }, flight({ version: TLS12, sessionId: serverId, newSessionTicketPrefixes: distinct }), undefined);
  t.is(MAX_TICKETS_LEARNED_PER_FLIGHT, 2);
  t.deepEqual(l.learn, [
    { kind: 'sid', hex: serverId.toString('hex') },
    { kind: 'tkt', hex: distinct[0]!.toString('hex', 0, 16) },
    { kind: 'tkt', hex: distinct[1]!.toString('hex', 0, 16) },
  ]);
  const same = Array.from({ length: 9000 }, () => distinct[0]!);
  const s = lessonsFromFlight({ sessionId: Buffer.alloc(0) }, flight({ version: TLS12, newSessionTicketPrefixes: same }), undefined);
  t.deepEqual(s.learn, [{ kind: 'tkt', hex: distinct[0]!.toString('hex', 0, 16) }]);
});

test('property: a TLS 1.3 flight never teaches a session ID, whatever the hello and flight', (t) => {
  const buf = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
  fc.assert(
    fc.property(
      buf(32),
      fc.option(fc.array(buf(64), { maxLength: 4 }), { nil: undefined }),
      fc.option(fc.nat(5), { nil: undefined }),
      fc.boolean(),
      fc.array(buf(64), { maxLength: 2 }),
      (sid, ids, selected, hrr, tickets) => {
        const hello: AffinityHello = ids === undefined ? { sessionId: sid } : { sessionId: sid, pskIdentities: ids };
        const f = flight({
          version: TLS13,
          sessionId: sid,
          helloRetryRequest: hrr,
          newSessionTicketPrefixes: tickets,
          ...(selected === undefined ? {} : { pskSelectedIdentity: selected }),
        });
        const l = lessonsFromFlight(hello, f, undefined);
        return l.learn.every((k) => k.kind === 'tkt') && l.learn.length <= 1;
      },
    ),
  );
  t.pass();
});

// ── the table ───────────────────────────────────────────────────────────────────────────────────────

test('table: entries expire ttl after their last use on the injected clock', (t) => {
  let now = 1000;
  const table = new AffinityTable({ size: 10, ttl: 100, perf: { now: () => now } });
  t.true(table.learn('sid:aa', 'A'));
  t.false(table.learn('sid:aa', 'A'), 'same server: not a new lesson');
  t.true(table.learn('sid:bb', 'B'));
  now += 99;
  t.is(table.get('sid:aa'), 'A', 'a hit restarts the ttl');
  now += 99;
  t.is(table.get('sid:aa'), 'A');
  t.is(table.get('sid:bb'), undefined, 'unused for longer than ttl');
  now += 101;
  t.is(table.get('sid:aa'), undefined);
  t.is(table.size, 0);
});

test('table: bounded by size, least recently used out first; unlearn only while the key names that server', (t) => {
  const table = new AffinityTable({ size: 3, ttl: 60_000 });
  for (const k of ['a', 'b', 'c']) table.learn(k, 'S1');
  table.get('a');
  table.learn('d', 'S2');
  t.is(table.size, 3);
  t.is(table.get('b'), undefined, 'b was least recently used');
  t.is(table.get('a'), 'S1');
  t.false(table.unlearn('a', 'S2'));
  t.is(table.get('a'), 'S1');
  t.true(table.unlearn('a', 'S1'));
  t.is(table.get('a'), undefined);
});

// ── one pool's affinity: lookups and counters ───────────────────────────────────────────────────────

function serverAt(port: number): ServerConfig {
  return { address: { text: `127.0.0.1:${port}`, host: '127.0.0.1', port }, weight: 1, backup: false };
}

function poolConfig(ports: number[]): PoolConfig {
  return {
    name: 'tls',
    balance: 'round-robin',
    affinity: 'tls',
    retries: ports.length - 1,
    affinityTable: { size: 100, ttl: 60_000, sidTtl: 60_000 },
    servers: ports.map(serverAt),
  };
}

function runtimeOf(config: PoolConfig): { config: PoolConfig; state: PoolState } {
  return { config, state: new PoolState(config) };
}

function chooseNow(a: PoolAffinity, hello: AffinityHello, pool: ReturnType<typeof runtimeOf>): AffinityChoice {
  let out: AffinityChoice | undefined;
  a.choose(hello, pool, (c) => (out = c));
  if (out === undefined) throw new Error('choose without a store must answer synchronously');
  return out;
}

test('pool: a learned session routes to its server (hit); unknown keys miss; hellos without keys count nothing', (t) => {
  const config = poolConfig([5001, 5002, 5003]);
  const pool = runtimeOf(config);
  const a = new PoolAffinity(config);
  const sid = bytes(32, 0x31);
  const first = chooseNow(a, { sessionId: Buffer.alloc(0) }, pool);
  t.is(first.serverIndex, undefined);
  a.observe(first, flight({ version: TLS12, sessionId: sid }), '127.0.0.1:5003');
  const again = chooseNow(a, { sessionId: sid }, pool);
  t.is(again.serverIndex, 2);
  t.deepEqual(again.routedBy, { kind: 'sid', hex: sid.toString('hex') });
  const other = chooseNow(a, { sessionId: bytes(32, 0x32) }, pool);
  t.is(other.serverIndex, undefined);
  t.like(a.stats(), { learned: 1, hit: 1, miss: 1, stale: 0, entries: 1 });
});

test('pool: a learned server that is down, drained or gone is stale: unlearned, the balance picks', (t) => {
  const config = poolConfig([5001, 5002]);
  const pool = runtimeOf(config);
  const a = new PoolAffinity(config);
  const learn = (fill: number, server: string): Buffer => {
    const sid = bytes(32, fill);
    a.observe({ hello: { sessionId: Buffer.alloc(0) } }, flight({ version: TLS12, sessionId: sid }), server);
    return sid;
  };
  const down = learn(1, '127.0.0.1:5001');
  const drained = learn(2, '127.0.0.1:5002');
  const gone = learn(3, '127.0.0.1:5999');
  pool.state.setUp(0, false);
  pool.state.setWeight(1, 0);
  for (const sid of [down, drained, gone]) t.is(chooseNow(a, { sessionId: sid }, pool).serverIndex, undefined);
  t.like(a.stats(), { learned: 3, stale: 3, hit: 0, miss: 0, entries: 0 });
  // Unlearned: once the server is back, the old key is a plain miss.
  pool.state.setUp(0, true);
  t.is(chooseNow(a, { sessionId: down }, pool).serverIndex, undefined);
  t.like(a.stats(), { miss: 1 });
});

test('pool: a refused resumption unlearns only while the key still names the server that refused', (t) => {
  const config = poolConfig([5001, 5002]);
  const pool = runtimeOf(config);
  const a = new PoolAffinity(config);
  const sid = bytes(32, 0x41);
  a.observe({ hello: { sessionId: Buffer.alloc(0) } }, flight({ version: TLS12, sessionId: sid }), '127.0.0.1:5001');
  const choice = chooseNow(a, { sessionId: sid }, pool);
  t.is(choice.serverIndex, 0);
  // The connect to 5001 failed and the retry landed on 5002, which did a full handshake: 5001 still
  // holds the session as far as anyone knows.
  a.observe(choice, flight({ version: TLS12, sessionId: bytes(32, 0x42) }), '127.0.0.1:5002');
  t.is(chooseNow(a, { sessionId: sid }, pool).serverIndex, 0);
  // 5001 itself refuses it: forgotten.
  a.observe(choice, flight({ version: TLS12, sessionId: bytes(32, 0x43) }), '127.0.0.1:5001');
  t.is(chooseNow(a, { sessionId: sid }, pool).serverIndex, undefined);
  t.like(a.stats(), { unlearned: 1, hit: 2, miss: 1 });
});

test('pool: one flight of 9000 tickets adds at most 3 entries (its session ID and 2 key names)', (t) => {
  const config = poolConfig([5001, 5002]);
  const a = new PoolAffinity(config);
  const tickets = Array.from({ length: 9000 }, (_, i) => {
    const b = Buffer.alloc(32);
    b.writeUInt32BE(i + 1);
    return b;
  });
  a.observe({ hello: { sessionId: Buffer.alloc(0) } }, flight({ version: TLS12, sessionId: bytes(32, 0x51), newSessionTicketPrefixes: tickets }), '127.0.0.1:5001');
  t.like(a.stats(), { learned: 3, entries: 3 });
});

test('pool: a forged PSK (a real key name + junk) refused by its server leaves the key name learned', (t) => {
  const config = poolConfig([5001, 5002]);
  const pool = runtimeOf(config);
  const a = new PoolAffinity(config);
  const name = bytes(16, 0x5a);
  const victim: AffinityHello = { sessionId: bytes(32, 1), supportedVersions: [TLS13], pskIdentities: [Buffer.concat([name, bytes(80, 1)])] };
  // The victim's resumption is accepted by 5002: the name is learned there.
  a.observe(chooseNow(a, victim, pool), flight({ version: TLS13, pskSelectedIdentity: 0 }), '127.0.0.1:5002');
  t.is(chooseNow(a, victim, pool).serverIndex, 1);
  // The attacker sends the same key name followed by junk; it is routed to 5002, which refuses it.
  const forged: AffinityHello = { sessionId: bytes(32, 2), supportedVersions: [TLS13], pskIdentities: [Buffer.concat([name, bytes(100, 0xff)])] };
  const choice = chooseNow(a, forged, pool);
  t.is(choice.serverIndex, 1);
  a.observe(choice, flight({ version: TLS13 }), '127.0.0.1:5002');
  // The victim still goes to 5002.
  t.is(chooseNow(a, victim, pool).serverIndex, 1);
  t.like(a.stats(), { unlearned: 0, hit: 3, entries: 1 });
});

test('pool: a failed TLS 1.2 handshake (an alert after the ServerHello) learns nothing; the CCS completes one', (t) => {
  const config = poolConfig([5001, 5002]);
  const a = new PoolAffinity(config);
  const serverFlight = (sid: Buffer, ticket: Buffer): Buffer =>
    toRecords(
      Buffer.concat([
        serverHelloMessage({ sessionId: sid, extensions: [ext(0x23)] }),
        handshakeMessage(11, Buffer.alloc(500, 1)),
        handshakeMessage(14, Buffer.alloc(0)),
        newSessionTicketMessage(ticket),
      ]),
      { version: 0x0303 },
    );
  const run = (bytes: Buffer[]): void => {
    const choice = { hello: { sessionId: Buffer.alloc(0) } };
    const watch = watchServerFlight((f) => a.observe(choice, f, '127.0.0.1:5001'));
    for (const b of bytes) if (watch(b)) break;
  };
  // The server assigned a session ID and even sent a ticket, then a fatal alert (handshake_failure).
  run([serverFlight(bytes(32, 0x71), bytes(48, 0x72)), tlsRecord(21, Buffer.from([2, 40]), 0x0303)]);
  t.like(a.stats(), { learned: 0, entries: 0 });
  run([serverFlight(bytes(32, 0x73), bytes(48, 0x74)), tlsRecord(20, Buffer.from([1]), 0x0303)]);
  t.like(a.stats(), { learned: 2, entries: 2 });
});

test('pool: session IDs expire after sid_ttl, ticket key names after ttl (F10)', (t) => {
  let now = 1000;
  const config: PoolConfig = { ...poolConfig([5001, 5002]), affinityTable: { size: 100, ttl: 60_000, sidTtl: 5_000 } };
  const pool = runtimeOf(config);
  const a = new PoolAffinity(config, undefined, { perf: { now: () => now } });
  const sid = bytes(32, 0x61);
  const name = bytes(16, 0x62);
  a.observe(
    { hello: { sessionId: Buffer.alloc(0) } },
    flight({ version: TLS12, sessionId: sid, newSessionTicketPrefixes: [name] }),
    '127.0.0.1:5002',
  );
  t.like(a.stats(), { learned: 2, entries: 2 });
  now += 4_999;
  t.is(chooseNow(a, { sessionId: sid }, pool).serverIndex, 1, 'within sid_ttl');
  // That hit restarted the ID's TTL (counted from the last use, as for ttl).
  now += 5_001;
  t.is(chooseNow(a, { sessionId: sid }, pool).serverIndex, undefined, 'unused for longer than sid_ttl');
  t.is(chooseNow(a, { sessionId: Buffer.alloc(0), sessionTicket: Buffer.concat([name, bytes(40, 0)]) }, pool).serverIndex, 1, 'the key name lives on');
  now += 59_999;
  t.is(chooseNow(a, { sessionId: Buffer.alloc(0), sessionTicket: Buffer.concat([name, bytes(40, 0)]) }, pool).serverIndex, 1);
  t.like(a.stats(), { entries: 1 });
});
