// HTTP/1 request head probe: real clients, heads that lie, and the parser-contract properties.
import test from 'ava';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createHttpProbe, type HttpFields } from '../../src/protocol/http-head.js';
import type { ProbeOptions } from '../../src/protocol/verdict.js';
import { testWithTools } from '../helpers/tools.js';

const MORE: ProbeOptions = { final: false };
const FINAL: ProbeOptions = { final: true };

function once(text: string | Buffer, opts: ProbeOptions = MORE) {
  return createHttpProbe().probe(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, opts);
}

/** Feeds one probe instance growing prefixes, split at `cuts`; returns every verdict. */
function feed(bytes: Buffer, cuts: number[], final = false) {
  const probe = createHttpProbe();
  const ends = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const verdicts = [];
  for (const end of ends) verdicts.push(probe.probe(bytes.subarray(0, end), MORE));
  verdicts.push(probe.probe(bytes, { final }));
  return verdicts;
}

/**
 * Accepts one connection on loopback, collects what the client sends until `enough` says so, answers
 * with `reply` and closes. `run` starts the client against the port.
 */
async function capture(run: (port: number) => void | Promise<unknown>, enough: (b: Buffer) => boolean, reply: string): Promise<Buffer> {
  const server = net.createServer();
  try {
    const got = new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (sock) => {
        let buf = Buffer.alloc(0);
        sock.on('error', () => {});
        sock.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (enough(buf)) {
            sock.end(reply);
            resolve(buf);
          }
        });
        sock.on('end', () => reject(new Error(`client closed after ${buf.length} bytes`)));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const [bytes] = await Promise.all([got, run(port)]);
    return bytes;
  } finally {
    server.close();
  }
}

const headDone = (b: Buffer) => b.includes('\r\n\r\n');
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';

function runCurl(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-s', '-o', '/dev/null', '--max-time', '10', ...args], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', resolve);
  });
}

// ---------------------------------------------------------------------------------------- real clients

test('node http.request: method, origin target, Host with port, header count, consumed = head length', async (t) => {
  let port = 0;
  const bytes = await capture(
    (p) => {
      port = p;
      return new Promise<void>((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: p, method: 'PATCH', path: '/a/b?c=d', headers: { 'X-Test': 'yes' } }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', () => resolve());
        req.end();
      });
    },
    headDone,
    OK,
  );
  const v = once(bytes);
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.method, 'PATCH');
  t.is(v.fields.target, '/a/b?c=d');
  t.is(v.fields.targetForm, 'origin');
  t.is(v.fields.version, 'HTTP/1.1');
  t.is(v.fields.host, '127.0.0.1');
  t.is(v.fields.hostHeader, `127.0.0.1:${port}`);
  t.is(v.fields.port, port);
  t.is(v.fields.headerCount, bytes.toString('latin1').split('\r\n').length - 3); // request line, "", ""
  t.is(v.consumed, bytes.indexOf('\r\n\r\n') + 4);
});

testWithTools({ curl: 'curl' }, 'curl with a Host override: the routing host is the Host value as sent', async (t) => {
  const bytes = await capture((p) => runCurl(['-H', 'Host: Plain.Example.com', `http://127.0.0.1:${p}/x`]), headDone, OK);
  const v = once(bytes);
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.host, 'Plain.Example.com');
  t.is(v.fields.port, undefined);
  t.is(v.fields.target, '/x');
});

testWithTools({ curl: 'curl' }, 'curl through a proxy: absolute-form target gives the routing host', async (t) => {
  const bytes = await capture((p) => runCurl(['-x', `http://127.0.0.1:${p}`, 'http://routed.example.test:8081/p?q']), headDone, OK);
  const v = once(bytes);
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.targetForm, 'absolute');
  t.is(v.fields.target, 'http://routed.example.test:8081/p?q');
  t.is(v.fields.host, 'routed.example.test');
  t.is(v.fields.port, 8081);
});

testWithTools({ curl: 'curl' }, 'curl CONNECT tunnel: authority-form target', async (t) => {
  const bytes = await capture(
    (p) => runCurl(['-p', '-x', `http://127.0.0.1:${p}`, 'https://tunnel.example.test/']),
    headDone,
    'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
  );
  const v = once(bytes);
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.method, 'CONNECT');
  t.is(v.fields.targetForm, 'authority');
  t.is(v.fields.host, 'tunnel.example.test');
  t.is(v.fields.port, 443);
});

// ------------------------------------------------------------------------------------- accepted forms

test('HTTP/1.0 without Host is accepted with no host', (t) => {
  const v = once('GET / HTTP/1.0\r\nAccept: */*\r\n\r\n');
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.version, 'HTTP/1.0');
  t.false('host' in v.fields);
  t.false('hostHeader' in v.fields);
  t.is(v.fields.headerCount, 1);
});

test('leading empty lines are ignored (RFC 9112 §2.2, as nginx/HAProxy/llhttp do) and counted in consumed', (t) => {
  for (const lead of ['\r\n', '\r\n\r\n', '\r\n'.repeat(50)]) {
    const head = `${lead}GET / HTTP/1.1\r\nHost: admin.example.com\r\n\r\n`;
    const v = once(head);
    if (v.kind !== 'match') return t.fail(JSON.stringify(v));
    t.is(v.consumed, head.length);
    t.is(v.fields.host, 'admin.example.com');
  }
});

// Security review F5: heads a lenient backend serves must never be "not mine" (routed as `other`, past
// every Host rule): once they start like a request line they are HTTP, refused when they deviate.
for (const [title, input, reason] of [
  ['a bare LF before the request line', '\nGET / HTTP/1.1\r\nHost: admin.example.com\r\n\r\n', 'http.line.bare-lf'],
  ['CRLF then a bare LF before the request line', '\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'http.line.bare-lf'],
  ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: admin.example.com\r\n\r\n', 'http.request-line.invalid'],
  ['two spaces after the target', 'GET /  HTTP/1.1\r\nHost: admin.example.com\r\n\r\n', 'http.request-line.invalid'],
  ['a non-ASCII target', 'GET /\xc3\xa9 HTTP/1.1\r\nHost: admin.example.com\r\n\r\n', 'http.request-line.invalid'],
  ['HTTP/0.9 simple request', 'GET /admin\r\n', 'http.request-line.invalid'],
  ['HTTP/2.0 request line that is not the preface', 'GET / HTTP/2.0\r\n', 'http.version.not-http1'],
  ['target that is no request-target form', 'GET index.html HTTP/1.1\r\n', 'http.request-line.invalid'],
  ['a lower-case version', 'GET / http/1.1\r\nHost: a\r\n\r\n', 'http.request-line.invalid'],
] as const) {
  test(`claimed by its request line, then refused (reject with protocol http): ${title}`, (t) => {
    t.deepEqual(once(Buffer.from(input, 'latin1')), { kind: 'reject', reason, protocol: 'http' });
  });
}

test('IPv6 literal Host keeps its brackets and loses its port; OWS around the value is not part of it', (t) => {
  const v = once('GET / HTTP/1.1\r\nhOsT: \t [2001:db8::1]:8443 \t\r\n\r\n');
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.host, '[2001:db8::1]');
  t.is(v.fields.hostHeader, '[2001:db8::1]:8443');
  t.is(v.fields.port, 8443);
});

test('a lower-case method is a valid token and is passed through as sent', (t) => {
  const v = once('get / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(v.kind === 'match' ? v.fields.method : v.kind, 'get');
});

test('absolute-form agreeing with Host (case, default port) routes by the target', (t) => {
  const v = once('GET http://WWW.example.com/ HTTP/1.1\r\nHost: www.example.com:80\r\n\r\n');
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.host, 'WWW.example.com');
  t.is(v.fields.hostHeader, 'www.example.com:80');
});

test('OPTIONS * is asterisk-form', (t) => {
  const v = once('OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(v.kind === 'match' ? v.fields.targetForm : v.kind, 'asterisk');
});

test('empty Host is allowed and gives no routing host', (t) => {
  const v = once('GET / HTTP/1.1\r\nHost:\r\n\r\n');
  if (v.kind !== 'match') return t.fail(JSON.stringify(v));
  t.is(v.fields.hostHeader, '');
  t.false('host' in v.fields);
});

// ------------------------------------------------------------------------------------------ not mine

for (const [title, input] of [
  ['TLS record', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])],
  ['NUL first byte', Buffer.from([0x00])],
  ['h2c preface', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
  ['PROXY v1 line', Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nGET / HTTP/1.1\r\n')],
  ['PROXY v2 signature', Buffer.from('0d0a0d0a000d0a515549540a21', 'hex')],
  ['SSH banner without comments', Buffer.from('SSH-2.0-OpenSSH_9.6p1\r\n')],
  ['a token without a space', Buffer.from('PING\r\n')],
  ['method with a NUL', Buffer.from('GE\0T / HTTP/1.1\r\n')],
  ['an empty line, then no token', Buffer.from('\r\n\0\x01')],
] as const) {
  test(`not HTTP/1 (reject without protocol): ${title}`, (t) => {
    const v = once(input);
    t.is(v.kind, 'reject');
    t.false(v.kind === 'reject' && v.protocol !== undefined, JSON.stringify(v));
  });
}

test('a 33-byte method is not HTTP/1, decided on the 33rd byte', (t) => {
  const input = Buffer.from(`${'A'.repeat(33)} / HTTP/1.1\r\n`);
  t.is(once(input.subarray(0, 32)).kind, 'need-more');
  t.deepEqual(once(input.subarray(0, 33)), { kind: 'reject', reason: 'http.method.too-long' });
});

test('a request line longer than maxRequestLineBytes is refused: claimed after a method and a space, not mine before', (t) => {
  const probe = createHttpProbe({ maxRequestLineBytes: 100 });
  t.deepEqual(probe.probe(Buffer.from(`GET /${'a'.repeat(200)}`), MORE), { kind: 'reject', reason: 'http.request-line.too-long', protocol: 'http' });
  const lead = createHttpProbe({ maxRequestLineBytes: 100 });
  // Empty lines alone claim nothing (no token yet), but they count against the same cap.
  t.deepEqual(lead.probe(Buffer.from('\r\n'.repeat(60)), MORE), { kind: 'reject', reason: 'http.request-line.too-long' });
});

// -------------------------------------------------------------------------------- heads that lie

const H = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;
for (const [title, input, reason] of [
  ['two Host fields', H(['GET / HTTP/1.1', 'Host: a.example', 'Host: b.example']), 'http.host.duplicate'],
  ['two Host fields in different case', H(['GET / HTTP/1.1', 'host: a', 'HOST: a']), 'http.host.duplicate'],
  ['space before the colon', H(['GET / HTTP/1.1', 'Host : a.example']), 'http.header.space-before-colon'],
  ['tab before the colon', H(['GET / HTTP/1.1', 'Host\t: a.example']), 'http.header.space-before-colon'],
  ['obs-fold continuation', H(['GET / HTTP/1.1', 'Host: a.example', 'X-A: 1', ' folded']), 'http.header.obs-fold'],
  ['whitespace before the first field', H(['GET / HTTP/1.1', ' Host: a.example']), 'http.header.leading-whitespace'],
  ['userinfo in Host', H(['GET / HTTP/1.1', 'Host: user:pw@a.example']), 'http.host.userinfo'],
  ['userinfo in absolute-form', H(['GET http://evil@a.example/ HTTP/1.1', 'Host: a.example']), 'http.host.userinfo'],
  ['absolute-form with a different Host', H(['GET http://a.example/ HTTP/1.1', 'Host: b.example']), 'http.host.mismatch'],
  ['absolute-form with a different Host port', H(['GET http://a.example:8080/ HTTP/1.1', 'Host: a.example']), 'http.host.mismatch'],
  ['absolute-form with an empty host', H(['GET http:///x HTTP/1.1', 'Host: a']), 'http.host.invalid'],
  ['HTTP/1.1 without Host', H(['GET / HTTP/1.1', 'Accept: */*']), 'http.host.missing'],
  ['HTTP/1.1 absolute-form without Host', H(['GET http://a.example/ HTTP/1.1']), 'http.host.missing'],
  ['Host with a space inside', H(['GET / HTTP/1.1', 'Host: a b']), 'http.host.invalid'],
  ['Host with a slash', H(['GET / HTTP/1.1', 'Host: a/b']), 'http.host.invalid'],
  ['Host port over 65535', H(['GET / HTTP/1.1', 'Host: a:65536']), 'http.host.invalid'],
  ['Host port not a number', H(['GET / HTTP/1.1', 'Host: a:8o']), 'http.host.invalid'],
  ['Host IPv6 literal that is not IPv6', H(['GET / HTTP/1.1', 'Host: [fe80::zz]']), 'http.host.invalid'],
  ['Host IPv6 literal with a zone', H(['GET / HTTP/1.1', 'Host: [fe80::1%eth0]']), 'http.host.invalid'],
  ['Host with obs-text', H(['GET / HTTP/1.1', 'Host: caf\xe9.example']), 'http.host.invalid'],
  ['bare LF ending the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 'http.line.bare-lf'],
  ['bare LF ending a field line', 'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', 'http.line.bare-lf'],
  ['bare LF as the empty line', 'GET / HTTP/1.1\r\nHost: a\r\n\n', 'http.line.bare-lf'],
  ['bare CR inside a field line', 'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n', 'http.line.bare-cr'],
  ['NUL in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n', 'http.header.invalid-value'],
  ['NUL in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n', 'http.header.invalid-name'],
  ['field line without a colon', 'GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n', 'http.header.invalid-name'],
  ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 'http.version.unsupported'],
  ['GET with authority-form', H(['GET a.example:443 HTTP/1.1', 'Host: a.example:443']), 'http.target.form-mismatch'],
  ['CONNECT with origin-form', H(['CONNECT / HTTP/1.1', 'Host: a']), 'http.target.form-mismatch'],
  ['GET *', H(['GET * HTTP/1.1', 'Host: a']), 'http.target.form-mismatch'],
  ['CONNECT without a port', H(['CONNECT a.example: HTTP/1.1', 'Host: a.example']), 'http.host.invalid'],
  ['garbage after the version', 'GET / HTTP/1.1 extra\r\n', 'http.request-line.invalid'],
] as const) {
  test(`refused HTTP request: ${title} → ${reason}`, (t) => {
    t.deepEqual(once(input), { kind: 'reject', reason, protocol: 'http' });
  });
}

test('a head over maxHeadBytes: need-more at the cap until final, then http.head.too-large', (t) => {
  const head = Buffer.from(H(['GET / HTTP/1.1', 'Host: a', `X-Pad: ${'p'.repeat(200)}`]), 'latin1');
  t.is(createHttpProbe({ maxHeadBytes: head.length }).probe(head, MORE).kind, 'match');
  const capped = createHttpProbe({ maxHeadBytes: head.length - 1 });
  // The proxy sets final at this same cap (peek-too-large): until then the head is a valid prefix.
  t.deepEqual(capped.probe(head, MORE), { kind: 'need-more' });
  t.deepEqual(capped.probe(head, FINAL), { kind: 'reject', reason: 'http.head.too-large', protocol: 'http' });
  // The default cap is 64 KiB.
  const big = Buffer.from(H(['GET / HTTP/1.1', 'Host: a', `X-Pad: ${'p'.repeat(64 * 1024)}`]), 'latin1');
  t.deepEqual(once(big, FINAL), { kind: 'reject', reason: 'http.head.too-large', protocol: 'http' });
});

test('final before the end of the head: incomplete, with protocol once the request line is recognised', (t) => {
  t.deepEqual(once('GET / HTTP/1.1\r\nHost: a\r\n', FINAL), { kind: 'reject', reason: 'http.head.incomplete', protocol: 'http' });
  t.deepEqual(once('GET / HTT', FINAL), { kind: 'reject', reason: 'http.request-line.incomplete', protocol: 'http' });
  t.deepEqual(once('GET', FINAL), { kind: 'reject', reason: 'http.request-line.incomplete' });
  t.deepEqual(once('', FINAL), { kind: 'reject', reason: 'http.request-line.incomplete' });
});

test('a 64 KiB head fed one byte at a time matches with the right length (linear scan)', (t) => {
  const pad = Array.from({ length: 1000 }, (_, i) => `X-Pad-${i}: ${'v'.repeat(40)}`);
  const head = Buffer.from(H(['GET / HTTP/1.1', 'Host: a', ...pad]), 'latin1');
  t.true(head.length > 50_000 && head.length < 64 * 1024);
  const probe = createHttpProbe();
  for (let n = 1; n < head.length; n++) {
    if (probe.probe(head.subarray(0, n), MORE).kind !== 'need-more') return t.fail(`decided at ${n}`);
  }
  const v = probe.probe(head, MORE);
  t.is(v.kind === 'match' ? v.fields.headerCount : -1, 1001);
  t.is(v.kind === 'match' ? v.consumed : -1, head.length);
});

// ----------------------------------------------------------------------------------------- properties

const tokenArb = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
const labelArb = fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?$/);
const hostArb = fc.oneof(
  fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
  fc.ipV4(),
  fc.ipV6().map((a) => `[${a}]`),
);
const owsArb = fc.stringMatching(/^[ \t]{0,2}$/);
const valueArb = fc.stringMatching(/^([\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?)?$/);

interface Generated {
  readonly bytes: Buffer;
  readonly expected: HttpFields;
}

const validHeadArb: fc.Arbitrary<Generated> = fc
  .record({
    leading: fc.boolean(),
    method: tokenArb.filter((m) => m !== 'CONNECT'),
    target: fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%\/?-]{0,30}$/),
    minor: fc.constantFrom('0', '1'),
    host: fc.option(fc.record({ name: hostArb, port: fc.option(fc.integer({ min: 0, max: 65535 })), ows: fc.tuple(owsArb, owsArb) })),
    fields: fc.array(fc.record({ name: tokenArb.filter((n) => n.toLowerCase() !== 'host' && n.toLowerCase() !== 'user-agent'), value: valueArb, ows: fc.tuple(owsArb, owsArb) }), {
      maxLength: 6,
    }),
    hostAt: fc.nat(),
  })
  .filter((g) => g.minor === '0' || g.host !== null)
  .map((g) => {
    const lines = g.fields.map((f) => `${f.name}:${f.ows[0]}${f.value}${f.ows[1]}`);
    let hostHeader: string | undefined;
    if (g.host !== null) {
      hostHeader = g.host.port === null ? g.host.name : `${g.host.name}:${g.host.port}`;
      lines.splice(g.hostAt % (lines.length + 1), 0, `Host:${g.host.ows[0]}${hostHeader}${g.host.ows[1]}`);
    }
    const text = `${g.leading ? '\r\n' : ''}${g.method} ${g.target} HTTP/1.${g.minor}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
    const expected: HttpFields = {
      method: g.method,
      target: g.target,
      targetForm: 'origin',
      version: `HTTP/1.${g.minor}`,
      ...(g.host !== null ? { host: g.host.name, hostHeader: hostHeader! } : {}),
      ...(g.host !== null && g.host.port !== null ? { port: g.host.port } : {}),
      headerCount: lines.length,
      headBytes: text.length,
    };
    return { bytes: Buffer.from(text, 'latin1'), expected };
  });

test('property: generated valid heads match with the fields they were built from, under any chunking', (t) => {
  fc.assert(
    fc.property(validHeadArb, fc.array(fc.nat()), ({ bytes, expected }, cuts) => {
      const verdicts = feed(bytes, cuts.map((c) => c % bytes.length));
      const last = verdicts.pop()!;
      return verdicts.every((v) => v.kind === 'need-more') && last.kind === 'match' && last.consumed === bytes.length && deepEq(last.fields, expected);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: every strict prefix of a valid head is need-more, and final on it is never need-more', (t) => {
  fc.assert(
    fc.property(validHeadArb, fc.nat(), ({ bytes }, n) => {
      const prefix = bytes.subarray(0, n % bytes.length);
      return once(prefix).kind === 'need-more' && once(prefix, FINAL).kind === 'reject';
    }),
    { numRuns: 500 },
  );
  t.pass();
});

/** Valid heads with some bytes overwritten, inserted or removed. */
const mutatedArb = fc
  .tuple(validHeadArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 }))
  .map(([{ bytes }, edits]) => {
    const arr = [...bytes];
    for (const [at, byte, op] of edits) {
      const i = at % (arr.length + 1);
      if (op === 'set' && i < arr.length) arr[i] = byte;
      else if (op === 'insert') arr.splice(i, 0, byte);
      else arr.splice(i, 1);
    }
    return Buffer.from(arr);
  });

test('property: arbitrary and mutated bytes give a verdict (never a throw), the same under any chunking', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), mutatedArb), fc.array(fc.nat()), fc.boolean(), (bytes, cuts, final) => {
      const whole = once(bytes, { final });
      if (final && whole.kind === 'need-more') return false;
      const verdicts = feed(bytes, cuts.map((c) => c % Math.max(1, bytes.length)), final);
      const decided = verdicts.find((v) => v.kind !== 'need-more') ?? verdicts[verdicts.length - 1]!;
      return deepEq(decided, whole);
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

function deepEq(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v as Record<string, unknown>)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, x]) => [k, sortKeys(x)]),
  );
}

// ---------------------------------------------------------------------------------- Host length (F1, F3)

test('a Host, absolute-form or CONNECT authority over 255 bytes is refused as http.host.too-long', (t) => {
  const long = 'a'.repeat(256);
  const ok = 'a'.repeat(255);
  const tooLong = { kind: 'reject', reason: 'http.host.too-long', protocol: 'http' };
  t.deepEqual(once(H(['GET / HTTP/1.1', `Host: ${long}`])), tooLong);
  t.deepEqual(once(H(['GET / HTTP/1.1', `Host: ${long}:8080`])), tooLong);
  t.deepEqual(once(H([`GET http://${long}/ HTTP/1.1`, `Host: ${long}`])), tooLong);
  t.deepEqual(once(H([`CONNECT ${long}:443 HTTP/1.1`, `Host: ${long}:443`])), tooLong);
  const v = once(H(['GET / HTTP/1.1', `Host: ${ok}:65535`]));
  t.is(v.kind === 'match' ? v.fields.host : v.kind, ok);
});

test('the 65 499-byte Host of the review is refused at the end of its field line, any chunking', (t) => {
  const head = Buffer.from(`GET / HTTP/1.1\r\nHost: ${'a'.repeat(65_499)}\r\n\r\n`, 'latin1');
  const whole = createHttpProbe({ maxHeadBytes: 1024 * 1024 }).probe(head, MORE);
  t.deepEqual(whole, { kind: 'reject', reason: 'http.host.too-long', protocol: 'http' });
  const probe = createHttpProbe({ maxHeadBytes: 1024 * 1024 });
  let v: ReturnType<typeof probe.probe> = { kind: 'need-more' };
  for (let n = 1000; n <= head.length && v.kind === 'need-more'; n += 1000) v = probe.probe(head.subarray(0, n), MORE);
  if (v.kind === 'need-more') v = probe.probe(head, MORE);
  t.deepEqual(v, whole);
});

// ── User-Agent (kept for migration exemptions, never routed on) ────────────────────────────────────────

test('User-Agent: the first field value, OWS trimmed, any case of the name, cut at 256 bytes, whatever the chunking', (t) => {
  const ua = (head: string): string | undefined => {
    const v = once(head);
    return v.kind === 'match' ? v.fields.userAgent : 'not a match';
  };
  t.is(ua('GET / HTTP/1.1\r\nHost: a\r\nUser-Agent:  curl/8.5.0 \t\r\n\r\n'), 'curl/8.5.0');
  t.is(ua('GET / HTTP/1.1\r\nuser-AGENT: python-requests/2.31.0\r\nHost: a\r\n\r\n'), 'python-requests/2.31.0');
  t.is(ua('GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: first\r\nUser-Agent: second\r\n\r\n'), 'first');
  t.is(ua('GET / HTTP/1.1\r\nHost: a\r\nUser-Agent:\r\n\r\n'), '');
  t.is(ua('GET / HTTP/1.1\r\nHost: a\r\nUser-Agents: x\r\nUser_Agent: y\r\n\r\n'), undefined);
  t.is(ua('GET / HTTP/1.0\r\n\r\n'), undefined);
  const long = `agent/${'x'.repeat(1000)}`;
  t.is(ua(`GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: ${long}\r\n\r\n`), long.slice(0, 256));
  const bytes = Buffer.from(`GET / HTTP/1.1\r\nUser-Agent: Go-http-client/1.1\r\nHost: a\r\n\r\n`, 'latin1');
  const cuts = Array.from({ length: bytes.length }, (_, i) => i);
  const last = feed(bytes, cuts).pop()!;
  t.is(last.kind === 'match' ? last.fields.userAgent : undefined, 'Go-http-client/1.1');
});
