// The verdict must not depend on how TCP splits the bytes (issue 12 item 3): the same first flight sent in
// one write or cut anywhere, below, at and beyond `max_client_hello`, ends the same way (close reason,
// parser detail, pool). Before, unrecognised bytes that filled the cap in one read were `peek-too-large`
// while the same bytes in two writes went to the `protocol: other` route.
import test from 'ava';
import fc from 'fast-check';
import net from 'node:net';
import { clientHelloRecords, typicalExtensions } from '../helpers/tls-build.js';
import { startBackend, startProxy, type Backend, type RunningProxy } from '../helpers/proxy-harness.js';

const CAP = 4096;

interface World {
  proxy: RunningProxy;
  backends: Backend[];
}

async function world(): Promise<World> {
  const backends = [await startBackend('tls'), await startBackend('http'), await startBackend('other')];
  const [tls, http, other] = backends as [Backend, Backend, Backend];
  const proxy = await startProxy(`
listeners:
  - bind: "127.0.0.1:0"
    max_client_hello: 4KiB
    timeouts: { peek: 5s, idle: 5s }
    routes:
      - match: { protocol: tls }
        to: tls
      - match: { protocol: [http, h2c] }
        to: http
      - match: { protocol: other }
        to: other
pools:
  tls: { servers: ["${tls.address}"] }
  http: { servers: ["${http.address}"] }
  other: { servers: ["${other.address}"] }
`);
  return { proxy, backends };
}

/** Sends `bytes` cut at `cuts` (one write per piece, a moment apart), then FIN; what the close line says. */
async function outcome(w: World, bytes: Buffer, cuts: readonly number[]): Promise<string> {
  const before = w.proxy.logs.closes().length;
  const points = [...new Set(cuts.map((c) => c % bytes.length))].filter((c) => c > 0).sort((a, b) => a - b);
  await new Promise<void>((resolve) => {
    const s = net.connect({ port: w.proxy.port(), host: '127.0.0.1', allowHalfOpen: true, noDelay: true });
    s.on('error', () => {});
    s.on('close', () => resolve());
    s.resume();
    s.on('connect', async () => {
      let at = 0;
      for (const p of [...points, bytes.length]) {
        if (s.destroyed) return;
        s.write(bytes.subarray(at, p));
        at = p;
        // Let the piece go out (and be read) on its own before the next one.
        await new Promise((r) => setTimeout(r, 2));
      }
      if (!s.destroyed) s.end();
    });
  });
  await w.proxy.logs.waitFor(() => w.proxy.logs.closes().length > before);
  const l = w.proxy.logs.closes()[before]!;
  return JSON.stringify({ reason: l['reason'], detail: l['detail'], protocol: l['protocol'], pool: l['pool'] });
}

const bytesArb = fc.oneof(
  // Anything at all, below and beyond the cap.
  fc.uint8Array({ minLength: 1, maxLength: 2 * CAP + 100 }).map((a) => Buffer.from(a)),
  // Unrecognised text.
  fc.integer({ min: 1, max: 2 * CAP + 100 }).map((n) => Buffer.alloc(n, 'x')),
  // A TLS record header, then anything (claimed: refused or incomplete, never `other`).
  fc.uint8Array({ maxLength: 2 * CAP }).map((a) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.from(a)])),
  // A request line, then anything.
  fc.uint8Array({ maxLength: 2 * CAP }).map((a) => Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from(a)])),
  // Valid first flights, alone and with the client's next bytes behind them.
  fc.integer({ min: 0, max: CAP }).map((n) => Buffer.concat([clientHelloRecords({ extensions: typicalExtensions() }), Buffer.alloc(n, 0x17)])),
  fc.integer({ min: 0, max: CAP }).map((n) => Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n'), Buffer.alloc(n, 0x61)])),
);

test('property: any split of a first flight, below, at or beyond max_client_hello, ends the same way', async (t) => {
  const w = await world();
  try {
    await fc.assert(
      fc.asyncProperty(bytesArb, fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), async (bytes, cuts) => {
        const whole = await outcome(w, bytes, []);
        const split = await outcome(w, bytes, cuts);
        t.is(split, whole, `${bytes.length} bytes cut at ${cuts.map((c) => c % bytes.length).join(',')}`);
        return split === whole;
      }),
      { numRuns: 40 },
    );
    t.is(w.proxy.runtime.activeConnections, 0);
  } finally {
    await w.proxy.stop();
    for (const b of w.backends) await b.close();
  }
});

test('unrecognised bytes that fill the cap go to the `protocol: other` route in one write and in two (cap - 1, cap, cap + 1, twice the cap)', async (t) => {
  const w = await world();
  try {
    for (const n of [CAP - 1, CAP, CAP + 1, 2 * CAP + 100]) {
      const bytes = Buffer.alloc(n, 'x');
      t.deepEqual(JSON.parse(await outcome(w, bytes, [])), { reason: 'done', protocol: 'other', pool: 'other' }, `${n} in one write`);
      t.deepEqual(JSON.parse(await outcome(w, bytes, [100])), { reason: 'done', protocol: 'other', pool: 'other' }, `${n} as 100 + rest`);
    }
  } finally {
    await w.proxy.stop();
    for (const b of w.backends) await b.close();
  }
});
