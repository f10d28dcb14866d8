// The migration phase decision and twinport's own answers (docs/migration.md), without sockets: the
// Location for every request-target form, the response bytes, and which phase and exemption apply.
import test from 'ava';
import { parseConfigText } from '../../src/config/load.js';
import type { MigrationConfig } from '../../src/config/types.js';
import { decideMigration, type MigrationFacts } from '../../src/migration/phase.js';
import { H2C_GOAWAY_TEXT, h2cGoaway, httpsLocation, redirectResponse, rejectResponse } from '../../src/migration/response.js';
import { createHttpProbe, type HttpFields } from '../../src/protocol/http-head.js';

const NOW = new Date(Date.UTC(2026, 10, 28, 12, 0, 0));

function head(text: string): HttpFields {
  const v = createHttpProbe().probe(Buffer.from(text, 'latin1'), { final: true });
  if (v.kind !== 'match') throw new Error(`not a match: ${JSON.stringify(v)}`);
  return v.fields;
}

function migration(yaml: string): MigrationConfig {
  const config = parseConfigText(
    `listeners:
  - bind: "127.0.0.1:0"
    migration:
${yaml.replace(/^/gm, '      ')}
    routes: [{ match: {}, to: p }]
pools: { p: { servers: ["127.0.0.1:1"] } }
`,
    'm.yaml',
  );
  return config.listeners[0]!.migration!;
}

function facts(protocol: MigrationFacts['protocol'], request?: string, clientIp = '192.0.2.1', localPort = 5000): MigrationFacts {
  return { protocol, ...(request !== undefined && { http: head(request) }), clientIp: () => clientIp, localPort: () => localPort };
}

// ── Location ───────────────────────────────────────────────────────────────────────────────────────

test('Location: origin-form keeps path and query; the port is left out only when it is 443', (t) => {
  t.is(httpsLocation('keystone.internal', 5000, '/v3/auth/tokens?nocatalog=1', 'origin'), 'https://keystone.internal:5000/v3/auth/tokens?nocatalog=1');
  t.is(httpsLocation('keystone.internal', 443, '/v3', 'origin'), 'https://keystone.internal/v3');
  t.is(httpsLocation('10.0.0.7', 8443, '/', 'origin'), 'https://10.0.0.7:8443/');
});

test('Location: an absolute-form target keeps its path and query, not its scheme, authority or fragment', (t) => {
  t.is(httpsLocation('a.example', 443, 'http://a.example:80/x/y?q=1', 'absolute'), 'https://a.example/x/y?q=1');
  t.is(httpsLocation('a.example', 443, 'http://a.example', 'absolute'), 'https://a.example/');
  t.is(httpsLocation('a.example', 443, 'http://a.example?q', 'absolute'), 'https://a.example/?q');
  t.is(httpsLocation('a.example', 443, 'http://a.example/p#frag', 'absolute'), 'https://a.example/p');
  t.is(httpsLocation('a.example', 5000, 'HTTP://A.EXAMPLE:5000/P', 'absolute'), 'https://a.example:5000/P');
});

test('Location: asterisk-form (OPTIONS *) and authority-form (CONNECT) name the https root', (t) => {
  t.is(httpsLocation('a.example', 443, '*', 'asterisk'), 'https://a.example/');
  t.is(httpsLocation('a.example', 5000, 'a.example:80', 'authority'), 'https://a.example:5000/');
});

test('Location: IPv6 literal hosts keep their brackets', (t) => {
  const f = head('GET /v3 HTTP/1.1\r\nHost: [2001:db8::1]:5000\r\n\r\n');
  t.is(f.host, '[2001:db8::1]');
  t.is(httpsLocation(f.host!, 5000, f.target, f.targetForm), 'https://[2001:db8::1]:5000/v3');
  t.is(httpsLocation('[::1]', 443, '/', 'origin'), 'https://[::1]/');
});

// ── response bytes ─────────────────────────────────────────────────────────────────────────────────

function parse(bytes: Buffer): { status: string; headers: Record<string, string>; body: string } {
  const text = bytes.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const [status, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 2);
  return { status: status!, headers, body: text.slice(end + 4) };
}

test('the redirect: status line, Location, Connection: close, text body with its exact Content-Length', (t) => {
  const r = parse(redirectResponse(308, 'https://k.example:5000/v3', 'POST', NOW));
  t.is(r.status, 'HTTP/1.1 308 Permanent Redirect');
  t.is(r.headers['location'], 'https://k.example:5000/v3');
  t.is(r.headers['connection'], 'close');
  t.is(r.headers['content-type'], 'text/plain; charset=us-ascii');
  t.is(r.headers['date'], 'Sat, 28 Nov 2026 12:00:00 GMT');
  t.is(Number(r.headers['content-length']), Buffer.byteLength(r.body));
  t.regex(r.body, /moved to HTTPS/);
  t.true(r.body.includes('https://k.example:5000/v3'));
  for (const [status, phrase] of [[301, 'Moved Permanently'], [302, 'Found'], [307, 'Temporary Redirect']] as const) {
    t.is(parse(redirectResponse(status, 'https://a/', 'GET', NOW)).status, `HTTP/1.1 ${status} ${phrase}`);
  }
});

test('HEAD gets the same head and no body', (t) => {
  const get = redirectResponse(308, 'https://a/', 'GET', NOW);
  const h = redirectResponse(308, 'https://a/', 'HEAD', NOW);
  t.is(parse(h).body, '');
  t.is(parse(h).headers['content-length'], parse(get).headers['content-length']);
  t.is(parse(rejectResponse(426, 'https://a/', 'HEAD', NOW)).body, '');
});

test('the reject: 426 with Upgrade, Connection: Upgrade, close, and a body naming the https URL', (t) => {
  const r = parse(rejectResponse(426, 'https://k.example:5000/v3', 'GET', NOW));
  t.is(r.status, 'HTTP/1.1 426 Upgrade Required');
  t.is(r.headers['upgrade'], 'TLS/1.2, HTTP/1.1');
  t.is(r.headers['connection'], 'Upgrade, close');
  t.true(r.body.includes('https://k.example:5000/v3'));
  t.is(Number(r.headers['content-length']), Buffer.byteLength(r.body));
  t.regex(parse(rejectResponse(426, undefined, 'GET', NOW)).body, /https:\/\/ on this port/);
  t.is(parse(rejectResponse(403, undefined, 'GET', NOW)).status, 'HTTP/1.1 403 Forbidden');
  t.is(parse(rejectResponse(499, undefined, 'GET', NOW)).status, 'HTTP/1.1 499 ');
});

test('h2c: an empty SETTINGS frame, then GOAWAY(last stream 0, INADEQUATE_SECURITY) with the reason as debug data', (t) => {
  const b = h2cGoaway();
  t.deepEqual([...b.subarray(0, 9)], [0, 0, 0, 4, 0, 0, 0, 0, 0]);
  t.is(b.readUIntBE(9, 3), 8 + H2C_GOAWAY_TEXT.length);
  t.is(b[12], 7);
  t.is(b[13], 0);
  t.is(b.readUInt32BE(14), 0); // stream 0
  t.is(b.readUInt32BE(18), 0); // last-stream-id
  t.is(b.readUInt32BE(22), 0xc);
  t.is(b.subarray(26).toString('latin1'), H2C_GOAWAY_TEXT);
});

// ── the decision ───────────────────────────────────────────────────────────────────────────────────

const GET = 'GET /v3?x=1 HTTP/1.1\r\nHost: keystone.internal:5000\r\nUser-Agent: python-requests/2.31.0\r\n\r\n';

test('observe (the default) splices everything; TLS and silent clients are never touched by any phase', (t) => {
  t.deepEqual(decideMigration(migration('{}'), facts('http', GET)), { kind: 'splice', phase: 'observe' });
  const reject = migration('phase: reject');
  t.deepEqual(decideMigration(reject, facts('tls')), { kind: 'splice' });
  t.deepEqual(decideMigration(reject, facts('silent')), { kind: 'splice' });
});

test('redirect: Location from the Host and the https port (the client\'s port by default, https_port when set)', (t) => {
  t.deepEqual(decideMigration(migration('phase: redirect'), facts('http', GET)), {
    kind: 'redirect',
    phase: 'redirect',
    location: 'https://keystone.internal:5000/v3?x=1',
  });
  t.like(decideMigration(migration('{ phase: redirect, https_port: 443 }'), facts('http', GET)), { location: 'https://keystone.internal/v3?x=1' });
  t.like(decideMigration(migration('phase: redirect'), facts('http', 'POST http://keystone.internal/a/b HTTP/1.1\r\nHost: keystone.internal\r\n\r\n', '192.0.2.1', 443)), {
    kind: 'redirect',
    location: 'https://keystone.internal/a/b',
  });
});

test('redirect: HTTP/1.0 without Host goes to canonical_host, or is rejected without one; CONNECT is rejected', (t) => {
  const old = 'GET /x HTTP/1.0\r\n\r\n';
  t.deepEqual(decideMigration(migration('phase: redirect'), facts('http', old)), { kind: 'reject', phase: 'redirect', why: 'no-host' });
  t.like(decideMigration(migration('{ phase: redirect, canonical_host: keystone.internal }'), facts('http', old)), {
    kind: 'redirect',
    location: 'https://keystone.internal:5000/x',
  });
  t.like(decideMigration(migration('{ phase: redirect, canonical_host: "::1" }'), facts('http', old)), { location: 'https://[::1]:5000/x' });
  t.like(decideMigration(migration('phase: redirect'), facts('http', 'CONNECT a.example:80 HTTP/1.1\r\nHost: a.example:80\r\n\r\n')), {
    kind: 'reject',
    why: 'connect',
    url: 'https://a.example:5000/',
  });
});

test('redirect and reject: h2c is refused (GOAWAY), other plaintext is closed', (t) => {
  for (const phase of ['redirect', 'reject']) {
    t.deepEqual(decideMigration(migration(`phase: ${phase}`), facts('h2c')), { kind: 'reject', phase, why: 'h2c' });
    t.deepEqual(decideMigration(migration(`phase: ${phase}`), facts('other')), { kind: 'reject', phase, why: 'not-http' });
  }
});

test('reject: HTTP/1 gets the reject answer naming the https URL', (t) => {
  t.deepEqual(decideMigration(migration('phase: reject'), facts('http', GET)), {
    kind: 'reject',
    phase: 'reject',
    why: 'http',
    url: 'https://keystone.internal:5000/v3?x=1',
  });
});

test('exempt: a client CIDR or a User-Agent (exact, or ~regex) keeps being spliced, and says which', (t) => {
  const m = migration(`phase: reject
exempt:
  sources: ["10.0.0.5/32", "2001:db8::/32"]
  user_agents: ["~^legacy-agent/", "Go-http-client/1.1"]`);
  t.deepEqual(decideMigration(m, facts('http', GET, '10.0.0.5')), { kind: 'splice', phase: 'reject', exempt: 'source' });
  t.deepEqual(decideMigration(m, facts('http', GET, '::ffff:10.0.0.5')), { kind: 'splice', phase: 'reject', exempt: 'source' });
  t.deepEqual(decideMigration(m, facts('other', undefined, '2001:db8::7')), { kind: 'splice', phase: 'reject', exempt: 'source' });
  const ua = (agent: string) => facts('http', `GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: ${agent}\r\n\r\n`);
  t.like(decideMigration(m, ua('Legacy-Agent/0.9 (linux)')), { kind: 'splice', exempt: 'user-agent' });
  t.like(decideMigration(m, ua('Go-http-client/1.1')), { kind: 'splice', exempt: 'user-agent' });
  t.like(decideMigration(m, ua('go-http-client/1.1')), { kind: 'reject' }, 'exact is case-sensitive');
  t.like(decideMigration(m, ua('Go-http-client/1.1 extra')), { kind: 'reject' }, 'exact is the whole value');
  t.like(decideMigration(m, ua('my-legacy-agent/1')), { kind: 'reject' }, 'the author anchored the regex');
});

test('names: the first rule whose pattern matches the Host sets the phase; without Host, the listener\'s', (t) => {
  const m = migration(`phase: observe
names:
  - { match: "keystone.internal", phase: reject }
  - { match: ["*.internal", "~^nova"], phase: redirect }
  - { match: "*.internal", phase: observe }`);
  const to = (host: string) => facts('http', `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  t.like(decideMigration(m, to('KEYSTONE.internal.:5000')), { kind: 'reject', phase: 'reject' });
  t.like(decideMigration(m, to('glance.internal')), { kind: 'redirect', phase: 'redirect' });
  t.like(decideMigration(m, to('nova-api.example')), { kind: 'redirect' });
  t.like(decideMigration(m, to('other.example')), { kind: 'splice', phase: 'observe' });
  t.like(decideMigration(m, facts('http', 'GET / HTTP/1.0\r\n\r\n')), { kind: 'splice', phase: 'observe' });
  t.like(decideMigration(m, facts('h2c')), { kind: 'splice', phase: 'observe' });
});
