// The ClientHello body walk (tls-client-hello-body.ts) reads in place, inside bounds it tracks itself, and
// hands out owned copies: these tests hold it to that. The walk's rules and reasons are the business of
// tls-client-hello.test.ts and tls-properties.test.ts.
import test from 'ava';
import fc from 'fast-check';
import { computeJa4 } from '../../src/protocol/ja4.js';
import {
  MAX_ALPN_NAMES,
  MAX_CIPHER_SUITES,
  MAX_EXTENSIONS,
  MAX_KEY_SHARES,
  MAX_LIST_ENTRIES,
  MAX_PSK_IDENTITIES,
  parseClientHelloBodyAt,
} from '../../src/protocol/tls-client-hello-body.js';
import { MAX_SSLV2_CIPHER_SPECS, probeSslv2ClientHello } from '../../src/protocol/tls-sslv2.js';
import { createTlsProbe, parseClientHelloBody, type TlsFields } from '../../src/protocol/tls-client-hello.js';
import type { Reject } from '../../src/protocol/verdict.js';
import { fixtureFiles, readFixture } from '../helpers/fixtures.js';
import {
  clientHelloBody,
  ext,
  extAlpn,
  extGroups,
  extKeyShare,
  extPsk,
  extSigAlgs,
  sslv2ClientHello,
  extSessionTicket,
  extSni,
  typicalExtensions,
  type Ext,
} from '../helpers/tls-build.js';

/** The body of every fixture whose first record holds a whole ClientHello (record 5 + handshake 4). */
function fixtureBodies(): Buffer[] {
  const out: Buffer[] = [];
  for (const name of fixtureFiles()) {
    const bytes = readFixture(name);
    const v = createTlsProbe().probe(bytes, { final: true });
    if (v.kind !== 'match' || v.fields.records !== 1 || v.fields.sslv2 === true) continue;
    out.push(Buffer.from(bytes.subarray(9, 9 + v.fields.helloLength)));
  }
  return out;
}

const bodies = fixtureBodies();

/** Byte flips, insertions and deletions, so the walk stops at every kind of bound. */
const mutatedBody: fc.Arbitrary<Buffer> = fc
  .record({
    seed: fc.constantFrom(...bodies),
    edits: fc.array(
      fc.record({
        kind: fc.constantFrom('set', 'insert', 'delete'),
        at: fc.nat(),
        byte: fc.integer({ min: 0, max: 255 }),
      }),
      { maxLength: 3 },
    ),
  })
  .map(({ seed, edits }) => {
    let b = Buffer.from(seed);
    for (const e of edits) {
      const at = e.at % (b.length + 1);
      if (e.kind === 'set' && at < b.length) b[at] = e.byte;
      else if (e.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
      else if (e.kind === 'delete' && at < b.length) b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    }
    return b;
  });

/** JSON form: Buffers as hex, ja4 included (toJSON), so the comparison sees every field. */
function asJson(v: TlsFields | Reject): string {
  return JSON.stringify(v, (_, x: unknown) =>
    x !== null && typeof x === 'object' && (x as { type?: unknown }).type === 'Buffer'
      ? Buffer.from((x as { data: number[] }).data).toString('hex')
      : x,
  );
}

test('fixtures: the body walked in place inside a bigger buffer gives what the body alone gives', (t) => {
  t.true(bodies.length >= 10);
  fc.assert(
    fc.property(
      fc.oneof(fc.constantFrom(...bodies), mutatedBody),
      fc.uint8Array({ maxLength: 64 }),
      // Bytes after the body: a walk that read past `end` would find a plausible continuation here.
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        fc.constant(Buffer.from([0x00, 0x10, 0x00, 0x00])),
      ),
      (body, before, after) => {
        const whole = Buffer.concat([Buffer.from(before), body, after]);
        const inPlace = parseClientHelloBodyAt(whole, before.length, before.length + body.length, 1);
        const alone = parseClientHelloBody(Buffer.from(body), 1);
        t.is(asJson(inPlace), asJson(alone));
      },
    ),
    { numRuns: 500 },
  );
});

test('byte fields are copies: changing the input afterwards changes no field', (t) => {
  const sessionId = Buffer.alloc(32, 0x42);
  const ticket = Buffer.from('a ticket from the server');
  const identity = Buffer.from('a psk identity');
  const body = clientHelloBody({
    sessionId,
    extensions: [...typicalExtensions(), extSessionTicket(ticket), extPsk([identity])],
  });
  const f = parseClientHelloBody(body, 1);
  if ('kind' in f) return t.fail(f.reason);
  const before = asJson(f);
  body.fill(0xee);
  t.is(asJson(f), before);
  t.deepEqual(f.sessionId, sessionId);
  t.deepEqual(f.sessionTicket, ticket);
  t.deepEqual(f.pskIdentities, [identity]);
  t.is(f.sni, 'a.example.com');
});

test('ja4 is computed on read, stays the same, and is in the JSON form', (t) => {
  const f = parseClientHelloBody(clientHelloBody(), 1);
  if ('kind' in f) return t.fail(f.reason);
  t.is(f.ja4, computeJa4(f));
  t.is(f.ja4, f.ja4);
  t.is((JSON.parse(JSON.stringify(f)) as { ja4: string }).ja4, f.ja4);
});

/** `n` distinct empty extensions, none of them a decoded type, in three ranges of the duplicate check. */
function manyExtensions(n: number): Ext[] {
  const decoded = new Set([0, 10, 13, 16, 35, 41, 42, 43, 45, 51, 0xfe0d]);
  const out: Ext[] = [];
  for (let type = 1; out.length < n; type++) if (!decoded.has(type)) out.push(ext(type));
  return out;
}

test('duplicate extensions are found below 32, below 64 and above, with few and with many extensions', (t) => {
  // Up to the cap on extensions (MAX_EXTENSIONS), with room for the two duplicates added below.
  for (const count of [8, 31, 32, 33, 100, MAX_EXTENSIONS - 2]) {
    const exts = manyExtensions(count);
    const ok = parseClientHelloBody(clientHelloBody({ extensions: exts }), 1);
    t.false('kind' in ok, `${count} distinct extensions`);
    if (!('kind' in ok)) t.is(ok.extensionTypes.length, count);
    for (const dup of [5, 40, 0x7777, exts[count - 1]!.type]) {
      const withDup = [...exts, ext(dup)];
      // 0x7777 is new unless repeated: add it twice.
      if (!exts.some((e) => e.type === dup)) withDup.push(ext(dup));
      t.deepEqual(
        parseClientHelloBody(clientHelloBody({ extensions: withDup }), 1),
        { kind: 'reject', reason: 'tls.ext.duplicate', protocol: 'tls' },
        `${count} extensions, then ${dup} again`,
      );
    }
  }
});

test('decoded extensions after the 32nd are still decoded and still checked for duplicates', (t) => {
  const exts = [...manyExtensions(40), extSni('late.example'), extAlpn('h2')];
  const f = parseClientHelloBody(clientHelloBody({ extensions: exts }), 1);
  if ('kind' in f) return t.fail(f.reason);
  t.is(f.sni, 'late.example');
  t.deepEqual(f.alpn, ['h2']);
  t.deepEqual(parseClientHelloBody(clientHelloBody({ extensions: [...exts, extSni('again.example')] }), 1), {
    kind: 'reject',
    reason: 'tls.ext.duplicate',
    protocol: 'tls',
  });
});

// Security review F8: lists are capped, so the worst hello within 64 KiB costs a bounded multiple of a typical
// one. At the cap a hello parses; one more entry is refused with the list's own reason.
test('list caps: at the cap a hello parses, one more is refused with its reason', (t) => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => Buffer.concat([Buffer.alloc(16, i), Buffer.from([1, 2, 3])]));
  const cases: Array<[string, (n: number) => Parameters<typeof clientHelloBody>[0], number]> = [
    ['tls.hello.too-many-ciphers', (n) => ({ cipherSuites: Array.from({ length: n }, (_, i) => 0x0100 + i) }), MAX_CIPHER_SUITES],
    ['tls.ext.too-many', (n) => ({ extensions: manyExtensions(n) }), MAX_EXTENSIONS],
    ['tls.alpn.too-many', (n) => ({ extensions: [extAlpn(...Array.from({ length: n }, (_, i) => `p${i}`))] }), MAX_ALPN_NAMES],
    ['tls.psk.too-many', (n) => ({ extensions: [extPsk(ids(n))] }), MAX_PSK_IDENTITIES],
    ['tls.groups.too-many', (n) => ({ extensions: [extGroups(...Array.from({ length: n }, (_, i) => i))] }), MAX_LIST_ENTRIES],
    ['tls.sigalgs.too-many', (n) => ({ extensions: [extSigAlgs(...Array.from({ length: n }, (_, i) => i))] }), MAX_LIST_ENTRIES],
    ['tls.keyshare.too-many', (n) => ({ extensions: [extKeyShare(...Array.from({ length: n }, (_, i) => i))] }), MAX_KEY_SHARES],
  ];
  for (const [reason, spec, cap] of cases) {
    const atCap = parseClientHelloBody(clientHelloBody(spec(cap)), 1);
    t.false('kind' in atCap, `${reason}: ${cap} entries parse (${JSON.stringify('kind' in atCap ? atCap : '')})`);
    t.deepEqual(parseClientHelloBody(clientHelloBody(spec(cap + 1)), 1), { kind: 'reject', reason, protocol: 'tls' }, reason);
  }
  const specs = (n: number) => Array.from({ length: n }, (_, i) => i);
  const sslOk = probeSslv2ClientHello(sslv2ClientHello({ cipherSpecs: specs(MAX_SSLV2_CIPHER_SPECS) }), { final: true, maxHelloBytes: 65536 });
  t.is(sslOk.kind, 'match');
  t.deepEqual(probeSslv2ClientHello(sslv2ClientHello({ cipherSpecs: specs(MAX_SSLV2_CIPHER_SPECS + 1) }), { final: true, maxHelloBytes: 65536 }), {
    kind: 'reject',
    reason: 'tls.sslv2.too-many-ciphers',
  });
});
