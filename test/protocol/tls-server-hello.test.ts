// Server flight parser on synthetic flights: when it is done, what it keeps, how it fails.
import test from 'ava';
import fc from 'fast-check';
import {
  createServerFlightParser,
  MAX_NEW_SESSION_TICKETS_KEPT,
  MAX_SERVER_HELLO_BYTES,
  MAX_SERVER_HELLO_EXTENSIONS,
  type ServerFlightState,
} from '../../src/protocol/tls-server-hello.js';
import {
  ext,
  extSelectedPsk,
  extSelectedVersion,
  handshakeMessage,
  HRR_RANDOM,
  newSessionTicketMessage,
  serverHelloMessage,
  tlsRecord,
  toRecords,
  u16,
  u32,
} from '../helpers/tls-build.js';

const CCS = tlsRecord(20, Buffer.from([1]), 0x0303);
const ALERT = tlsRecord(21, Buffer.from([2, 40]), 0x0303);

function feed(chunks: Buffer[], maxBytes?: number): ServerFlightState {
  const p = createServerFlightParser(maxBytes === undefined ? {} : { maxBytes });
  let s: ServerFlightState = { kind: 'need-more' };
  for (const c of chunks) s = p.push(c);
  return s;
}

function bytewise(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

test('TLS 1.3: done right after the ServerHello, with session id echo and selected version', (t) => {
  const sid = Buffer.alloc(32, 7);
  const sh = serverHelloMessage({ sessionId: sid, cipherSuite: 0x1301, extensions: [ext(0x33, Buffer.alloc(36)), extSelectedVersion(0x0304)] });
  // Encrypted records follow; the parser must not need them.
  const flight = Buffer.concat([toRecords(sh, { version: 0x0303 }), CCS, tlsRecord(23, Buffer.alloc(50), 0x0303)]);
  const s = feed([toRecords(sh, { version: 0x0303 })]);
  t.is(s.kind, 'done');
  if (s.kind !== 'done') return;
  t.is(s.flight.version, 0x0304);
  t.deepEqual(s.flight.sessionId, sid);
  t.is(s.flight.cipherSuite, 0x1301);
  t.false(s.flight.helloRetryRequest);
  t.deepEqual(s.flight.extensionTypes, [0x33, 0x2b]);
  t.deepEqual(s.flight.newSessionTicketPrefixes, []);
  t.is(s.flight.newSessionTicketCount, 0);
  t.is(s.flight.pskSelectedIdentity, undefined);
  t.deepEqual(feed(bytewise(flight)), s);
});

test('TLS 1.3 resumption: the selected PSK identity', (t) => {
  const sh = serverHelloMessage({ extensions: [extSelectedVersion(0x0304), extSelectedPsk(1)] });
  const s = feed([toRecords(sh)]);
  t.is(s.kind, 'done');
  if (s.kind === 'done') t.is(s.flight.pskSelectedIdentity, 1);
});

test('HelloRetryRequest: noted, compat CCS skipped, real ServerHello awaited', (t) => {
  const hrr = serverHelloMessage({ random: HRR_RANDOM, extensions: [extSelectedVersion(0x0304), ext(0x33, Buffer.from([0, 0x17]))] });
  const sh = serverHelloMessage({ sessionId: Buffer.alloc(32, 1), cipherSuite: 0x1302, extensions: [extSelectedVersion(0x0304)] });
  const p = createServerFlightParser();
  t.deepEqual(p.push(Buffer.concat([toRecords(hrr), CCS])), { kind: 'need-more' });
  const s = p.push(toRecords(sh));
  t.is(s.kind, 'done');
  if (s.kind !== 'done') return;
  t.true(s.flight.helloRetryRequest);
  t.is(s.flight.cipherSuite, 0x1302);
  t.deepEqual(s.flight.extensionTypes, [0x2b]);
});

test('TLS 1.2: reads to the CCS, collecting NewSessionTicket bytes across records', (t) => {
  const sid = Buffer.alloc(32, 9);
  const ticket = Buffer.alloc(3000, 0xab);
  const sh = serverHelloMessage({ sessionId: sid, extensions: [ext(0xff01, Buffer.from([0])), ext(0x23)] });
  const cert = handshakeMessage(11, Buffer.alloc(20000, 1));
  const done = handshakeMessage(14, Buffer.alloc(0));
  const first = toRecords(Buffer.concat([sh, cert, done]), { sizes: 16384, version: 0x0303 });
  const second = toRecords(newSessionTicketMessage(ticket), { sizes: 1000, version: 0x0303 });
  const p = createServerFlightParser();
  t.deepEqual(p.push(first), { kind: 'need-more' });
  t.deepEqual(p.push(second), { kind: 'need-more' });
  const s = p.push(Buffer.concat([CCS, tlsRecord(22, Buffer.alloc(40), 0x0303)]));
  t.is(s.kind, 'done');
  if (s.kind !== 'done') return;
  t.is(s.flight.version, 0x0303);
  t.deepEqual(s.flight.sessionId, sid);
  // Only the ticket's first 16 bytes (an RFC 5077 §4 key_name) are kept, never the 3000.
  t.deepEqual(s.flight.newSessionTicketPrefixes, [ticket.subarray(0, 16)]);
  t.is(s.flight.newSessionTicketCount, 1);
  t.false(s.flight.helloRetryRequest);
  // The same bytes one at a time give the same state.
  t.deepEqual(feed(bytewise(Buffer.concat([first, second, CCS]))), s);
});

test('a ServerHello without extensions (TLS 1.0) is TLS ≤ 1.2', (t) => {
  const sh = serverHelloMessage({ legacyVersion: 0x0301, extensions: null });
  const s = feed([toRecords(sh), CCS]);
  t.is(s.kind, 'done');
  if (s.kind === 'done') t.is(s.flight.version, 0x0301);
});

test('an alert before the flight is complete is a reject, also after a ServerHello (F10: a failed handshake)', (t) => {
  const sh = serverHelloMessage({ sessionId: Buffer.alloc(32, 4), extensions: [] });
  const tls12 = toRecords(Buffer.concat([sh, handshakeMessage(11, Buffer.alloc(100)), handshakeMessage(14, Buffer.alloc(0))]));
  t.deepEqual(feed([tls12, ALERT]), { kind: 'reject', reason: 'tls.server.alert' });
  t.deepEqual(feed([toRecords(sh), ALERT]), { kind: 'reject', reason: 'tls.server.alert' });
  t.is(feed([tls12, CCS]).kind, 'done');
  // Application data before the CCS is not a TLS ≤ 1.2 flight either.
  t.deepEqual(feed([tls12, tlsRecord(23, Buffer.alloc(20), 0x0303)]), { kind: 'reject', reason: 'tls.server.bad-type' });
  // After a HelloRetryRequest, an alert instead of the second ServerHello.
  const hrr = serverHelloMessage({ random: HRR_RANDOM, extensions: [extSelectedVersion(0x0304)] });
  t.deepEqual(feed([toRecords(hrr), CCS, ALERT]), { kind: 'reject', reason: 'tls.server.alert' });
  t.deepEqual(feed([ALERT]), { kind: 'reject', reason: 'tls.server.alert' });
  t.deepEqual(feed([Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')]), { kind: 'reject', reason: 'tls.server.bad-type' });
});

test('the flight must start with a ServerHello', (t) => {
  t.deepEqual(feed([toRecords(handshakeMessage(11, Buffer.alloc(10)))]), { kind: 'reject', reason: 'tls.server.unexpected-message' });
});

test('broken ServerHellos are rejected, never thrown', (t) => {
  const sh = serverHelloMessage({ sessionId: Buffer.alloc(32), extensions: [extSelectedVersion(0x0304)] });
  for (let n = 4; n < sh.length; n++) {
    const cut = Buffer.concat([Buffer.from([2, 0, 0, n - 4]), sh.subarray(4, n)]);
    const s = feed([toRecords(cut)]);
    // Cut right after the compression method it is a valid TLS ≤ 1.2 hello waiting for more.
    t.not(s.kind, 'done', `cut at ${n}`);
  }
  t.deepEqual(feed([toRecords(serverHelloMessage({ extensions: [extSelectedVersion(0x0304), extSelectedVersion(0x0304)] }))]), {
    kind: 'reject',
    reason: 'tls.server.ext-duplicate',
  });
  t.deepEqual(feed([toRecords(serverHelloMessage({ sessionId: Buffer.alloc(33) }))]), {
    kind: 'reject',
    reason: 'tls.server.bad-session-id',
  });
});

test('after done or reject, more pushes return the same state', (t) => {
  const p = createServerFlightParser();
  const s = p.push(toRecords(serverHelloMessage({ extensions: [extSelectedVersion(0x0304)] })));
  t.is(s.kind, 'done');
  t.is(p.push(Buffer.alloc(100000)), s);
  const q = createServerFlightParser();
  const r = q.push(ALERT);
  t.is(q.push(Buffer.alloc(10)), r);
});

test('the byte cap: a flight longer than maxBytes without a verdict is rejected', (t) => {
  const sh = serverHelloMessage({ extensions: [] });
  const cert = handshakeMessage(11, Buffer.alloc(5000, 1));
  const s = feed([toRecords(Buffer.concat([sh, cert]))], 2000);
  t.deepEqual(s, { kind: 'reject', reason: 'tls.server.too-large' });
  const big = handshakeMessage(11, Buffer.alloc(300 * 1024));
  t.deepEqual(feed([toRecords(Buffer.concat([sh, big]))]), { kind: 'reject', reason: 'tls.server.too-large' });
});

test('a handshake record of 2^14 + 1 bytes is rejected', (t) => {
  const sh = serverHelloMessage({ extensions: [] });
  const rec = tlsRecord(22, Buffer.concat([sh, handshakeMessage(11, Buffer.alloc(16385 - sh.length - 4))]));
  t.deepEqual(feed([rec]), { kind: 'reject', reason: 'tls.record.too-large' });
});

// ── streaming: what is kept, whatever the chunking ──────────────────────────────────────────────────

/** A TLS 1.2 or 1.3 (possibly HRR) flight, its records cut at random sizes, and what it must teach. */
const flightArb = fc
  .record({
    kind: fc.constantFrom('tls12', 'tls13', 'hrr'),
    sessionId: fc.uint8Array({ maxLength: 32 }),
    tickets: fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 4 }),
    // In one-byte records a flight takes 6 bytes per handshake byte: 30 000 keeps the worst case (~215 KB)
    // under the parser's 256 KiB cap, which a 40 000-byte certificate passed (a rejection, found by CI).
    cert: fc.integer({ min: 0, max: 30000 }),
    sizes: fc.array(fc.integer({ min: 1, max: 16384 }), { minLength: 1, maxLength: 5 }),
  })
  .map((r) => {
    const sid = Buffer.from(r.sessionId);
    const tickets = r.tickets.map((tk) => Buffer.from(tk));
    if (r.kind === 'tls12') {
      const msgs = [
        serverHelloMessage({ sessionId: sid, extensions: [ext(0xff01, Buffer.from([0])), ext(0x23)] }),
        handshakeMessage(11, Buffer.alloc(r.cert, 3)),
        handshakeMessage(12, Buffer.alloc(300, 4)),
        handshakeMessage(13, Buffer.alloc(r.cert % 5000, 5)),
        handshakeMessage(14, Buffer.alloc(0)),
        ...tickets.map((tk) => newSessionTicketMessage(tk)),
      ];
      const bytes = Buffer.concat([toRecords(Buffer.concat(msgs), { sizes: r.sizes, version: 0x0303 }), CCS]);
      return { bytes, sid, tickets, retry: false };
    }
    const sh = serverHelloMessage({ sessionId: sid, extensions: [extSelectedVersion(0x0304)] });
    const hrr = serverHelloMessage({ random: HRR_RANDOM, sessionId: sid, extensions: [extSelectedVersion(0x0304)] });
    const parts = r.kind === 'hrr' ? [toRecords(hrr, { sizes: r.sizes }), CCS, toRecords(sh, { sizes: r.sizes })] : [toRecords(sh, { sizes: r.sizes })];
    return { bytes: Buffer.concat(parts), sid, tickets: [] as Buffer[], retry: r.kind === 'hrr' };
  });

/** Pushes `bytes` cut at `cuts`, each piece copied into one reused buffer that is scribbled over after the push. */
function pushReused(bytes: Buffer, cuts: readonly number[]): ServerFlightState {
  const p = createServerFlightParser();
  const points = [0, ...new Set(cuts.map((c) => c % (bytes.length + 1))), bytes.length].sort((a, b) => a - b);
  const scratch = Buffer.alloc(bytes.length);
  let s: ServerFlightState = { kind: 'need-more' };
  for (let i = 1; i < points.length; i++) {
    const piece = scratch.subarray(0, points[i]! - points[i - 1]!);
    bytes.copy(piece, 0, points[i - 1], points[i]);
    s = p.push(piece);
    // The caller reuses its read buffer: nothing the parser answers may depend on it afterwards.
    scratch.fill(0xee);
  }
  return s;
}

test('property: any chunking of a flight, in a reused buffer, gives the same complete flight', (t) => {
  fc.assert(
    fc.property(flightArb, fc.array(fc.nat(), { maxLength: 40 }), (f, cuts) => {
      const whole = createServerFlightParser().push(f.bytes);
      const chunked = pushReused(f.bytes, cuts);
      t.deepEqual(chunked, whole);
      t.is(whole.kind, 'done');
      if (whole.kind !== 'done') return;
      t.deepEqual(whole.flight.sessionId, f.sid);
      t.is(whole.flight.helloRetryRequest, f.retry);
      t.is(whole.flight.newSessionTicketCount, f.tickets.length);
      t.deepEqual(
        whole.flight.newSessionTicketPrefixes,
        f.tickets.slice(0, MAX_NEW_SESSION_TICKETS_KEPT).map((tk) => tk.subarray(0, 16)),
      );
    }),
    { numRuns: 300 },
  );
});

test('every byte one at a time in a reused buffer: the same answer as in one piece', (t) => {
  const sid = Buffer.alloc(32, 0x21);
  const ticket = Buffer.concat([Buffer.alloc(16, 0x7a), Buffer.alloc(200, 1)]);
  const msgs = [serverHelloMessage({ sessionId: sid, extensions: [ext(0x23)] }), handshakeMessage(11, Buffer.alloc(9000, 2)), handshakeMessage(14, Buffer.alloc(0)), newSessionTicketMessage(ticket)];
  const bytes = Buffer.concat([toRecords(Buffer.concat(msgs), { sizes: [7, 4000], version: 0x0303 }), CCS]);
  const expected = createServerFlightParser().push(bytes);
  t.is(expected.kind, 'done');
  t.deepEqual(pushReused(bytes, Array.from({ length: bytes.length }, (_, i) => i)), expected);
});

test('NewSessionTicket: a ticket length that disagrees with the message length is rejected; short tickets are kept whole', (t) => {
  const sh = serverHelloMessage({ extensions: [] });
  const nst = (body: Buffer): ServerFlightState => feed([toRecords(Buffer.concat([sh, handshakeMessage(4, body)])), CCS]);
  // ticket<0..2^16-1> claims 20 bytes, the message holds 10 of them.
  t.deepEqual(nst(Buffer.concat([u32(1), u16(20), Buffer.alloc(10)])), { kind: 'reject', reason: 'tls.server.bad-ticket' });
  // … or bytes after the ticket.
  t.deepEqual(nst(Buffer.concat([u32(1), u16(2), Buffer.alloc(10)])), { kind: 'reject', reason: 'tls.server.bad-ticket' });
  // Shorter than lifetime + length.
  t.deepEqual(nst(Buffer.alloc(5)), { kind: 'reject', reason: 'tls.server.bad-ticket' });
  const short = nst(Buffer.concat([u32(1), u16(3), Buffer.from([1, 2, 3])]));
  t.is(short.kind, 'done');
  if (short.kind === 'done') t.deepEqual(short.flight.newSessionTicketPrefixes, [Buffer.from([1, 2, 3])]);
});

test('a ServerHello over MAX_SERVER_HELLO_BYTES is rejected at its header, before its body arrives', (t) => {
  const big = serverHelloMessage({ extensions: [ext(0x7777, Buffer.alloc(MAX_SERVER_HELLO_BYTES))] });
  // Only the record header and the message header: the verdict needs nothing more.
  t.deepEqual(feed([toRecords(big).subarray(0, 5 + 4)]), { kind: 'reject', reason: 'tls.server.too-large' });
  const fits = serverHelloMessage({ extensions: [ext(0x7777, Buffer.alloc(MAX_SERVER_HELLO_BYTES - 100))] });
  t.is(feed([toRecords(fits), CCS]).kind, 'done');
});

test('a stalled TLS 1.2 flight holds no copy of the server bytes (F7): 300 parsers after a 100 KB flight', (t) => {
  const sh = serverHelloMessage({ sessionId: Buffer.alloc(32, 1), extensions: [ext(0x23)] });
  // Certificate + CertificateRequest + ServerHelloDone, then the server waits for the client's flight.
  const flight = toRecords(Buffer.concat([sh, handshakeMessage(11, Buffer.alloc(70_000, 1)), handshakeMessage(13, Buffer.alloc(30_000, 2)), handshakeMessage(14, Buffer.alloc(0))]), {
    version: 0x0303,
  });
  const chunk = Buffer.alloc(16384);
  const parsers = Array.from({ length: 300 }, () => createServerFlightParser());
  const before = process.memoryUsage().arrayBuffers;
  for (const p of parsers) {
    // 16 KiB reads through one reused buffer, as the splice does.
    for (let at = 0; at < flight.length; at += chunk.length) {
      const n = flight.copy(chunk, 0, at, Math.min(flight.length, at + chunk.length));
      t.deepEqual(p.push(chunk.subarray(0, n)), { kind: 'need-more' });
    }
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  // The reassembling reader held two growable copies per parser (≥ 2 × 128 KiB here: 75 MiB in all).
  // Each parser now holds no buffer at all; 1 MiB in all leaves room for GC timing.
  t.true(grown < 1024 * 1024, `array buffers grew by ${grown} bytes`);
  t.is(parsers.length, 300);
});

// ── a hostile backend (F6): the work a flight causes is bounded by counts, not by what it claims ─────

/** n distinct empty extensions (types 0x1000 + i, none that the walk decodes). */
function distinctExtensions(n: number) {
  return Array.from({ length: n }, (_, i) => ext(0x1000 + i));
}

test('ServerHello extensions: at most MAX_SERVER_HELLO_EXTENSIONS; 16 382 of them are refused unread', (t) => {
  t.is(MAX_SERVER_HELLO_EXTENSIONS, 64);
  const ok = feed([toRecords(serverHelloMessage({ extensions: distinctExtensions(MAX_SERVER_HELLO_EXTENSIONS) })), CCS]);
  t.is(ok.kind, 'done');
  if (ok.kind === 'done') t.is(ok.flight.extensionTypes.length, MAX_SERVER_HELLO_EXTENSIONS);
  const over = feed([toRecords(serverHelloMessage({ extensions: distinctExtensions(MAX_SERVER_HELLO_EXTENSIONS + 1) }))]);
  t.deepEqual(over, { kind: 'reject', reason: 'tls.server.too-many-extensions' });
  // 1000 distinct ones fit in 4 KiB, under the ServerHello cap: the count refuses them.
  t.deepEqual(feed([toRecords(serverHelloMessage({ extensions: distinctExtensions(1000) }))]), { kind: 'reject', reason: 'tls.server.too-many-extensions' });
  // The review's 65.6 KB ServerHello of 16 382 extensions: refused from its header by the size cap.
  const huge = toRecords(serverHelloMessage({ extensions: distinctExtensions(16_382) }));
  t.true(huge.length > 65_000);
  t.deepEqual(feed([huge]), { kind: 'reject', reason: 'tls.server.too-large' });
  // A duplicate is still a duplicate, wherever it is.
  const dup = [...distinctExtensions(40), ext(0x1000 + 39)];
  t.deepEqual(feed([toRecords(serverHelloMessage({ extensions: dup }))]), { kind: 'reject', reason: 'tls.server.ext-duplicate' });
});

test('a flight of 9000 NewSessionTickets: all read and counted, 2 prefixes kept, done at the CCS', (t) => {
  const sh = serverHelloMessage({ sessionId: Buffer.alloc(32, 5), extensions: [ext(0x23)] });
  const tickets = Array.from({ length: 9000 }, (_, i) => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(i + 1);
    return newSessionTicketMessage(b);
  });
  const bytes = Buffer.concat([toRecords(Buffer.concat([sh, ...tickets]), { version: 0x0303 }), CCS]);
  t.true(bytes.length > 230_000);
  const s = feed([bytes]);
  t.is(s.kind, 'done');
  if (s.kind !== 'done') return;
  t.is(s.flight.newSessionTicketCount, 9000);
  t.is(s.flight.newSessionTicketPrefixes.length, MAX_NEW_SESSION_TICKETS_KEPT);
  t.deepEqual(s.flight.newSessionTicketPrefixes[1], Buffer.from([0, 0, 0, 2, ...Buffer.alloc(12)]));
});
