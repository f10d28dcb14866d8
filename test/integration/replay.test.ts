// Real first flights replayed one byte per write (Envoy's MultipleReads, at the socket): a hello spread
// over several TLS records and hundreds of reads still routes on its SNI, and the backend receives it
// byte-identical. Fixtures: test/fixtures/README.md (both captures were made with SNI a.example.com).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { clientHelloMessage, clientHelloRecords, extPadding, typicalExtensions } from '../helpers/tls-build.js';
import { exchange, sha256, startBackend, startProxy, type Backend, type RunningProxy } from '../helpers/proxy-harness.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`../../../test/fixtures/${name}`, import.meta.url));

/** A synthetic hello of exactly `total` bytes in two records: 16 KiB (the record limit) and the rest. */
function bigHello(total: number, sni: string): Buffer {
  const base = clientHelloMessage({ extensions: typicalExtensions(sni) }).length;
  // Two 5-byte record headers, and the padding extension's own 4-byte header.
  const padding = total - 2 * 5 - base - 4;
  return clientHelloRecords({ extensions: [...typicalExtensions(sni), extPadding(padding)] }, { sizes: 16384 });
}

interface World {
  proxy: RunningProxy;
  pools: Record<'fixtures' | 'big' | 'tls', Backend>;
}

async function world(): Promise<World> {
  const pools = { fixtures: await startBackend('fixtures'), big: await startBackend('big'), tls: await startBackend('tls') };
  const proxy = await startProxy(`
log: { raw_bytes: true }
listeners:
  - name: main
    bind: "127.0.0.1:0"
    # The peek deadline is generous: twenty thousand one-byte writes take a while, and this test is about
    # reassembly, not about deadlines. The connect timeout too: on a loaded machine a 300 ms one expired
    # while the backend had accepted, which left it a connection with no bytes (the flake seen once).
    timeouts: { peek: 30s, connect: 5s, idle: 30s }
    routes:
      - match: { sni: a.example.com }
        to: fixtures
      - match: { sni: big.example }
        to: big
      - match: { protocol: tls }
        to: tls
pools:
  fixtures: { servers: ["${pools.fixtures.address}"] }
  big: { servers: ["${pools.big.address}"] }
  tls: { servers: ["${pools.tls.address}"] }
`);
  return { proxy, pools };
}

const cases: { title: string; bytes: () => Buffer; pool: 'fixtures' | 'big'; sni: string; records: number }[] = [
  { title: 'openssl-frag512.bin (a 1151-byte hello in three 512-byte records)', bytes: () => fixture('openssl-frag512.bin'), pool: 'fixtures', sni: 'a.example.com', records: 3 },
  { title: 'chromium.bin (post-quantum key share, ~1.7 KiB)', bytes: () => fixture('chromium.bin'), pool: 'fixtures', sni: 'a.example.com', records: 1 },
  { title: 'a synthetic 20 000-byte hello over two records', bytes: () => bigHello(20_000, 'big.example'), pool: 'big', sni: 'big.example', records: 2 },
];

/** Counts the TLS records a flight starts with (to check a case is what its title says). */
function handshakeRecords(b: Buffer): number {
  let n = 0;
  for (let at = 0; at + 5 <= b.length && b[at] === 22; at += 5 + b.readUInt16BE(at + 3)) n++;
  return n;
}

for (const c of cases) {
  test(`one byte per write: ${c.title} → pool ${c.pool}, byte-identical`, async (t) => {
    const bytes = c.bytes();
    t.true(handshakeRecords(bytes) >= c.records, 'the flight has the records the case is about');
    if (c.pool === 'big') t.is(bytes.length, 20_000);
    const w = await world();
    try {
      // exchange() with chunkSize 1: one write per event-loop turn, noDelay, then FIN.
      const { answer, error } = await exchange(w.proxy.port(), bytes, { chunkSize: 1 });
      t.is(error, undefined);
      t.is(answer.toString(), `${c.pool}\n`);
      const rec = await w.pools[c.pool].connection(1);
      await rec.closed;
      const got = Buffer.concat(rec.received);
      t.is(got.length, bytes.length);
      t.is(sha256(got), sha256(bytes));
      for (const other of Object.keys(w.pools) as (keyof World['pools'])[]) {
        if (other !== c.pool) t.is(w.pools[other].connections.length, 0, `nothing reached ${other}`);
      }
      const line = await w.proxy.logs.waitForClose();
      t.is(line['reason'], 'done');
      t.is(line['protocol'], 'tls');
      t.is(line['sni'], c.sni);
      t.is(line['bytesIn'], bytes.length);
      // raw_bytes logs each chunk twinport read while peeking: the hello really came in pieces.
      const reads = w.proxy.logs.lines.filter((l) => l.msg === 'peek bytes').length;
      t.log(`${reads} reads while peeking`);
      t.true(reads > bytes.length / 10, `${reads} reads for ${bytes.length} bytes`);
      t.is(w.proxy.runtime.activeConnections, 0);
    } finally {
      await w.proxy.stop();
      for (const b of Object.values(w.pools)) await b.close();
    }
  });
}
