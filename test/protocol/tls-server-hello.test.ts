// Server flight parser on synthetic flights: when it is done, what it keeps, how it fails.
import test from 'ava';
import { createServerFlightParser, type ServerFlightState } from '../../src/protocol/tls-server-hello.js';
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
  t.deepEqual(s.flight.newSessionTickets, []);
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
  t.deepEqual(s.flight.newSessionTickets, [ticket]);
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

test('an alert: done after a ServerHello, reject before', (t) => {
  const sh = serverHelloMessage({ extensions: [] });
  t.is(feed([toRecords(sh), ALERT]).kind, 'done');
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
