// Properties of the parser contract (design.md §7) for the TLS probe and the server flight parser:
// any chunking gives the same verdict; strict prefixes of valid input need more; `final` never needs
// more; arbitrary and mutated bytes give a verdict, never a throw.
import test from 'ava';
import fc from 'fast-check';
import { createTlsProbe, type TlsMatch } from '../../src/protocol/tls-client-hello.js';
import { createServerFlightParser, type ServerFlightState } from '../../src/protocol/tls-server-hello.js';
import type { NeedMore, Reject } from '../../src/protocol/verdict.js';
import { fixtureFiles, readFixture } from '../helpers/fixtures.js';
import {
  clientHelloRecords,
  ext,
  extAlpn,
  extEarlyData,
  extEch,
  extGroups,
  extKeyShare,
  extPadding,
  extPsk,
  extPskModes,
  extSelectedVersion,
  extSessionTicket,
  extSigAlgs,
  extSni,
  extSupportedVersions,
  handshakeMessage,
  newSessionTicketMessage,
  serverHelloMessage,
  sslv2ClientHello,
  tlsRecord,
  toRecords,
  type Ext,
} from '../helpers/tls-build.js';

type V = TlsMatch | NeedMore | Reject;

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const hostName = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
const u16v = fc.integer({ min: 0, max: 0xffff });

/** Optional extensions, each valid on its own; drawn as a subset in a random order, PSK last. */
const extensionArb: fc.Arbitrary<Ext[]> = fc
  .record(
    {
      sni: hostName.map((n) => extSni(n)),
      alpn: fc.array(fc.stringMatching(/^[a-z0-9/.]{1,12}$/), { minLength: 1, maxLength: 4 }).map((l) => extAlpn(...l)),
      versions: fc.array(u16v, { minLength: 1, maxLength: 5 }).map((v) => extSupportedVersions(...v)),
      groups: fc.array(u16v, { minLength: 1, maxLength: 8 }).map((g) => extGroups(...g)),
      sigalgs: fc.array(u16v, { minLength: 1, maxLength: 8 }).map((s) => extSigAlgs(...s)),
      keyShare: fc.uniqueArray(u16v, { maxLength: 3 }).map((g) => extKeyShare(...g)),
      pskModes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 2 }).map((m) => extPskModes(...m)),
      ticket: fc.uint8Array({ maxLength: 200 }).map((b) => extSessionTicket(Buffer.from(b))),
      earlyData: fc.constant(extEarlyData()),
      ech: fc.constant(extEch()),
      padding: fc.integer({ min: 0, max: 3000 }).map(extPadding),
      unknown: fc.uint8Array({ maxLength: 40 }).map((b) => ext(0x7777, Buffer.from(b))),
    },
    { requiredKeys: [] },
  )
  .chain((exts) => fc.shuffledSubarray(Object.values(exts), { minLength: Object.keys(exts).length }))
  .chain((exts) =>
    fc.option(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 3 })).map((psk) =>
      psk === null ? exts : [...exts, extPsk(psk.map((b) => Buffer.from(b)))],
    ),
  );

/** A valid first flight: a hello (random fields) in records of random sizes. */
const validFlight: fc.Arbitrary<Buffer> = fc
  .record({
    sessionId: fc.uint8Array({ maxLength: 32 }),
    ciphers: fc.array(u16v, { minLength: 1, maxLength: 30 }),
    compression: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 3 }),
    extensions: fc.option(extensionArb, { freq: 8 }),
    sizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }),
    version: fc.constantFrom(0x0300, 0x0301, 0x0303, 0x0304),
  })
  .map((r) =>
    clientHelloRecords(
      {
        sessionId: Buffer.from(r.sessionId),
        cipherSuites: r.ciphers,
        compressionMethods: r.compression,
        extensions: r.extensions,
      },
      { sizes: r.sizes, version: r.version },
    ),
  );

/** Real hellos captured from real clients (test/fixtures) plus an SSLv2-compatible one. */
function realFlights(): Buffer[] {
  const out = [sslv2ClientHello()];
  for (const name of fixtureFiles()) {
    const bytes = readFixture(name);
    if (createTlsProbe().probe(bytes, { final: true }).kind === 'match') out.push(bytes);
  }
  return out;
}

const seeds = realFlights();

/** Byte flips, insertions and deletions applied to a real hello. */
const mutatedFlight: fc.Arbitrary<Buffer> = fc
  .record({
    seed: fc.constantFrom(...seeds),
    edits: fc.array(
      fc.record({ kind: fc.constantFrom('flip', 'insert', 'delete'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      { minLength: 1, maxLength: 4 },
    ),
  })
  .map(({ seed, edits }) => {
    let b = Buffer.from(seed);
    for (const e of edits) {
      const at = e.at % (b.length + 1);
      if (e.kind === 'flip' && at < b.length) b[at] = b[at]! ^ (e.byte | 1);
      else if (e.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
      else if (e.kind === 'delete' && at < b.length) b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    }
    return b;
  });

const anyBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
  // Random bytes behind a plausible record header, so the parser gets past the first checks.
  fc
    .tuple(fc.constantFrom(0x0301, 0x0303), fc.uint8Array({ minLength: 1, maxLength: 600 }))
    .map(([v, b]) => tlsRecord(22, Buffer.concat([Buffer.from([1]), Buffer.from(b)]), v)),
  mutatedFlight,
);

/** Feeds growing prefixes ending at the given cut points, then everything. */
function feedChunked(bytes: Buffer, cuts: number[], final: boolean): V {
  const probe = createTlsProbe();
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  for (const p of points) {
    const v = probe.probe(bytes.subarray(0, p), { final: false });
    if (v.kind !== 'need-more') return v;
  }
  return probe.probe(bytes, { final });
}

function once(bytes: Buffer, final: boolean): V {
  return createTlsProbe().probe(bytes, { final });
}

test('any chunking gives the same verdict and fields as one call (valid, mutated and random input)', (t) => {
  fc.assert(
    fc.property(fc.oneof(validFlight, anyBytes), fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (bytes, cuts, final) => {
      t.deepEqual(feedChunked(bytes, cuts, final), once(bytes, final));
    }),
    { numRuns: 400 },
  );
});

test('every generated flight matches and consumes all of it', (t) => {
  fc.assert(
    fc.property(validFlight, (bytes) => {
      const v = once(bytes, true);
      return v.kind === 'match' && v.consumed === bytes.length;
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('every strict prefix of a valid flight needs more', (t) => {
  fc.assert(
    fc.property(fc.oneof(validFlight, fc.constantFrom(...seeds)), fc.nat(), (bytes, n) => {
      const v = once(bytes, true);
      // Fixtures may carry bytes after the hello: only prefixes of the hello itself are checked.
      const end = v.kind === 'match' ? v.consumed : bytes.length;
      const cut = n % end;
      return once(bytes.subarray(0, cut), false).kind === 'need-more';
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('final: true never answers need-more, and nothing throws', (t) => {
  fc.assert(
    fc.property(fc.oneof(anyBytes, validFlight), fc.nat(), (bytes, n) => {
      const prefix = bytes.subarray(0, n % (bytes.length + 1));
      return once(prefix, true).kind !== 'need-more' && once(bytes, false) !== undefined;
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

// ---- server flights ----

const serverFlightArb: fc.Arbitrary<Buffer> = fc
  .record({
    tls13: fc.boolean(),
    sessionId: fc.uint8Array({ maxLength: 32 }),
    tickets: fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 2 }),
    cert: fc.integer({ min: 0, max: 20000 }),
    sizes: fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 4 }),
  })
  .map((r) => {
    const sh = serverHelloMessage({
      sessionId: Buffer.from(r.sessionId),
      extensions: r.tls13 ? [extSelectedVersion(0x0304)] : [ext(0xff01, Buffer.from([0]))],
    });
    const msgs = r.tls13
      ? [sh]
      : [sh, handshakeMessage(11, Buffer.alloc(r.cert, 3)), handshakeMessage(14, Buffer.alloc(0)), ...r.tickets.map((tk) => newSessionTicketMessage(Buffer.from(tk)))];
    return Buffer.concat([toRecords(Buffer.concat(msgs), { sizes: r.sizes, version: 0x0303 }), tlsRecord(20, Buffer.from([1]), 0x0303)]);
  });

function pushChunks(bytes: Buffer, cuts: number[]): ServerFlightState {
  const p = createServerFlightParser();
  const points = [0, ...new Set(cuts.map((c) => c % (bytes.length + 1))), bytes.length].sort((a, b) => a - b);
  let s: ServerFlightState = { kind: 'need-more' };
  for (let i = 1; i < points.length; i++) s = p.push(bytes.subarray(points[i - 1], points[i]));
  return s;
}

test('server flights: any chunking gives the same state; generated flights complete', (t) => {
  fc.assert(
    fc.property(fc.oneof(serverFlightArb, anyBytes), fc.array(fc.nat(), { maxLength: 12 }), (bytes, cuts) => {
      t.deepEqual(pushChunks(bytes, cuts), pushChunks(bytes, []));
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(serverFlightArb, (bytes) => pushChunks(bytes, []).kind === 'done'),
    { numRuns: 200 },
  );
});
