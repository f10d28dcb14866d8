import test from 'ava';
import fc from 'fast-check';
import { isIP } from 'node:net';
import type { Cidr, MatchProtocol, NamePattern, RouteConfig, RouteMatch } from '../../src/config/types.js';
import { parseCidr } from '../../src/routing/cidr.js';
import { compileNamePattern } from '../../src/routing/name-pattern.js';
import { type ConnectionFacts, matchRoute, routeMatches } from '../../src/routing/route-match.js';

// Routes written the way a config author writes them, compiled by the same helpers the config loader uses.
interface MatchText {
  protocol?: MatchProtocol[];
  sni?: null | string[];
  alpn?: string[];
  host?: string[];
  source?: string[];
}

function pattern(text: string): NamePattern {
  const p = compileNamePattern(text);
  if (typeof p === 'string') throw new Error(p);
  return p;
}

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

function compile(m: MatchText): RouteMatch {
  return {
    ...(m.protocol === undefined ? {} : { protocol: m.protocol }),
    ...(m.sni === undefined ? {} : { sni: m.sni === null ? null : m.sni.map(pattern) }),
    ...(m.alpn === undefined ? {} : { alpn: m.alpn }),
    ...(m.host === undefined ? {} : { host: m.host.map(pattern) }),
    ...(m.source === undefined ? {} : { source: m.source.map(cidr) }),
  };
}

function routes(...ms: MatchText[]): RouteConfig[] {
  return ms.map((m, index) => ({ index, match: compile(m), to: `pool${index}` }));
}

const ip = '192.0.2.10';
const tls = (sni?: string, alpn?: string[]): ConnectionFacts => ({
  protocol: 'tls',
  sourceIp: ip,
  ...(sni === undefined ? {} : { sni }),
  ...(alpn === undefined ? {} : { alpn }),
});
const http = (host?: string): ConnectionFacts => ({ protocol: 'http', sourceIp: ip, ...(host === undefined ? {} : { host }) });

const matches = (m: MatchText, f: ConnectionFacts): boolean => routeMatches(compile(m), f);

test('exact sni compares case-insensitively and ignores one trailing dot', (t) => {
  const m = { sni: ['Identity.Example.com'] };
  t.true(matches(m, tls('identity.example.com')));
  t.true(matches(m, tls('IDENTITY.EXAMPLE.COM')));
  t.true(matches(m, tls('identity.example.com.')));
  t.false(matches(m, tls('identity.example.com..')));
  t.false(matches(m, tls('x.identity.example.com')));
  t.false(matches(m, tls('identity.example.co')));
  t.false(matches(m, tls('identity-example.com')));
});

test('case folding is ASCII only: a KELVIN SIGN does not stand in for k', (t) => {
  const m = { sni: ['keystone.example.com'] };
  t.false(matches(m, tls('\u212Aeystone.example.com')));
  t.false(matches({ sni: ['*.example.com'] }, tls('a.example.\u212Aom')));
  t.false(matches({ sni: ['~^keystone\\.'] }, tls('\u212Aeystone.example.com')));
});

test('wildcard sni matches exactly one label', (t) => {
  const m = { sni: ['*.example.com'] };
  t.true(matches(m, tls('a.example.com')));
  t.true(matches(m, tls('API.Example.COM.')));
  t.false(matches(m, tls('example.com')));
  t.false(matches(m, tls('.example.com')));
  t.false(matches(m, tls('a.b.example.com')));
  t.false(matches(m, tls('aexample.com')));
  t.false(matches(m, tls('a.example.com.evil')));
});

test('a wildcard never matches an IP literal sent as SNI; an exact IP does', (t) => {
  t.false(matches({ sni: ['*.0.0.1'] }, tls('10.0.0.1')));
  t.true(matches({ sni: ['10.0.0.1'] }, tls('10.0.0.1')));
  t.false(matches({ sni: ['*.example.com'] }, tls('::1')));
});

test('regex sni is case-insensitive and unanchored unless anchored', (t) => {
  t.true(matches({ sni: ['~^api-\\d+\\.example\\.com$'] }, tls('API-17.Example.com')));
  t.false(matches({ sni: ['~^api-\\d+\\.example\\.com$'] }, tls('api-x.example.com')));
  t.true(matches({ sni: ['~internal'] }, tls('db.INTERNAL.example.com')));
  t.false(matches({ sni: ['~internal'] }, tls('db.example.com')));
});

test('a list of sni patterns matches when any of them does', (t) => {
  const m = { sni: ['a.example.com', '*.example.net'] };
  t.true(matches(m, tls('a.example.com')));
  t.true(matches(m, tls('z.example.net')));
  t.false(matches(m, tls('b.example.com')));
});

test('sni: null matches TLS without SNI only', (t) => {
  const m = { sni: null };
  t.true(matches(m, tls()));
  t.false(matches(m, tls('a.example.com')));
  t.false(matches(m, http()));
  t.false(matches(m, { protocol: 'other', sourceIp: ip }));
  t.false(matches(m, { protocol: 'silent', sourceIp: ip }));
});

test('an sni pattern never matches a connection that is not TLS', (t) => {
  const m = { sni: ['a.example.com'] };
  t.false(matches(m, { protocol: 'http', sourceIp: ip, sni: 'a.example.com', host: 'a.example.com' }));
  t.false(matches(m, { protocol: 'h2c', sourceIp: ip, sni: 'a.example.com' }));
  t.false(matches({ sni: ['~.'] }, http('a.example.com')));
});

test('alpn matches when the client offers any of the listed protocols, compared exactly', (t) => {
  const m = { alpn: ['h2', 'acme-tls/1'] };
  t.true(matches(m, tls('a.example.com', ['http/1.1', 'h2'])));
  t.true(matches(m, tls(undefined, ['acme-tls/1'])));
  t.false(matches(m, tls('a.example.com', ['http/1.1'])));
  t.false(matches(m, tls('a.example.com', [])));
  t.false(matches(m, tls('a.example.com')));
  t.false(matches(m, tls('a.example.com', ['H2'])));
  t.false(matches(m, { protocol: 'h2c', sourceIp: ip }));
});

test('host matches plaintext HTTP/1 only, with the same name forms as sni', (t) => {
  t.true(matches({ host: ['plain.example.com'] }, http('Plain.Example.com.')));
  t.true(matches({ host: ['*.example.com'] }, http('plain.example.com')));
  t.false(matches({ host: ['*.example.com'] }, http('a.plain.example.com')));
  t.true(matches({ host: ['~^plain'] }, http('PLAIN.example.com')));
  t.false(matches({ host: ['plain.example.com'] }, http()));
  t.false(matches({ host: ['plain.example.com'] }, http('other.example.com')));
  t.false(matches({ host: ['plain.example.com'] }, { protocol: 'tls', sourceIp: ip, sni: 'plain.example.com', host: 'plain.example.com' }));
  t.false(matches({ host: ['plain.example.com'] }, { protocol: 'h2c', sourceIp: ip, host: 'plain.example.com' }));
});

test('source matches IPv4, IPv6 and IPv4-mapped IPv6 client addresses', (t) => {
  const v4 = { source: ['10.0.0.0/8', '192.168.1.0/24'] };
  t.true(matches(v4, { protocol: 'other', sourceIp: '10.200.3.4' }));
  t.true(matches(v4, { protocol: 'other', sourceIp: '192.168.1.255' }));
  t.false(matches(v4, { protocol: 'other', sourceIp: '192.168.2.1' }));
  t.false(matches(v4, { protocol: 'other', sourceIp: '11.0.0.1' }));
  t.true(matches(v4, { protocol: 'other', sourceIp: '::ffff:10.1.2.3' }));
  t.false(matches(v4, { protocol: 'other', sourceIp: '::ffff:11.1.2.3' }));
  t.false(matches(v4, { protocol: 'other', sourceIp: '::a01:203' })); // IPv4-compatible, not mapped
  const v6 = { source: ['2001:db8::/32'] };
  t.true(matches(v6, { protocol: 'other', sourceIp: '2001:db8:1::5' }));
  t.true(matches(v6, { protocol: 'other', sourceIp: '2001:DB8::1' }));
  t.false(matches(v6, { protocol: 'other', sourceIp: '2001:db9::1' }));
  t.false(matches(v6, { protocol: 'other', sourceIp: '10.0.0.1' }));
  t.true(matches({ source: ['::1/128'] }, { protocol: 'other', sourceIp: '::1' }));
  t.true(matches({ source: ['0.0.0.0/0'] }, { protocol: 'other', sourceIp: '203.0.113.9' }));
  t.false(matches({ source: ['0.0.0.0/0'] }, { protocol: 'other', sourceIp: 'not-an-ip' }));
  t.false(matches({ source: ['0.0.0.0/0'] }, { protocol: 'other', sourceIp: '' }));
});

test('protocol takes one protocol or a list', (t) => {
  const m = { protocol: ['http', 'h2c'] as MatchProtocol[] };
  t.true(matches(m, http('a')));
  t.true(matches(m, { protocol: 'h2c', sourceIp: ip }));
  t.false(matches(m, tls('a')));
  t.true(matches({ protocol: ['tls'] }, tls()));
  t.true(matches({ protocol: ['tls'] }, tls('a.example.com')));
  t.true(matches({ protocol: ['silent'] }, { protocol: 'silent', sourceIp: ip }));
  t.false(matches({ protocol: ['silent'] }, { protocol: 'other', sourceIp: ip }));
  t.true(matches({ protocol: ['other'] }, { protocol: 'other', sourceIp: ip }));
});

test('every given key must hold', (t) => {
  const m: MatchText = { protocol: ['tls'], sni: ['*.example.com'], alpn: ['h2'], source: ['10.0.0.0/8'] };
  const ok: ConnectionFacts = { protocol: 'tls', sni: 'a.example.com', alpn: ['h2'], sourceIp: '10.0.0.1' };
  t.true(matches(m, ok));
  t.false(matches(m, { ...ok, sni: 'a.example.org' }));
  t.false(matches(m, { ...ok, alpn: ['http/1.1'] }));
  t.false(matches(m, { ...ok, sourceIp: '11.0.0.1' }));
  t.false(matches({ ...m, protocol: ['http'] }, ok));
});

test('an empty match matches everything, silent connections included', (t) => {
  t.true(matches({}, tls()));
  t.true(matches({}, http()));
  t.true(matches({}, { protocol: 'silent', sourceIp: '::1' }));
});

test('the first matching route wins; no match gives undefined', (t) => {
  const rs = routes(
    { sni: ['identity.example.com'] },
    { sni: ['*.example.com'], alpn: ['h2'] },
    { protocol: ['tls'] },
    { protocol: ['http', 'h2c'] },
  );
  t.is(matchRoute(rs, tls('identity.example.com', ['h2']))?.index, 0);
  t.is(matchRoute(rs, tls('web.example.com', ['h2']))?.index, 1);
  t.is(matchRoute(rs, tls('web.example.com', ['http/1.1']))?.index, 2);
  t.is(matchRoute(rs, tls())?.index, 2);
  t.is(matchRoute(rs, http('web.example.com'))?.index, 3);
  t.is(matchRoute(rs, { protocol: 'other', sourceIp: ip }), undefined);
  t.is(matchRoute(rs, { protocol: 'silent', sourceIp: ip }), undefined);
  t.is(matchRoute([], tls('a')), undefined);
  // Order, not specificity: a catch-all first shadows everything after it.
  const shadowed = routes({}, { sni: ['identity.example.com'] });
  t.is(matchRoute(shadowed, tls('identity.example.com'))?.index, 0);
});

// A DNS-ish name: labels of letters, digits and hyphens.
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc.array(label, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('.'));

function recase(name: string, flips: readonly boolean[]): string {
  return [...name].map((c, i) => (flips[i % Math.max(flips.length, 1)] ? c.toUpperCase() : c)).join('');
}

test('property: an exact name matches under any ASCII casing, with or without a trailing dot', (t) => {
  fc.assert(
    fc.property(domain, fc.array(fc.boolean(), { minLength: 1 }), fc.boolean(), (name, flips, dot) => {
      const sent = recase(name, flips) + (dot ? '.' : '');
      return matches({ sni: [name] }, tls(sent)) && matches({ host: [recase(name, flips)] }, http(name + (dot ? '.' : '')));
    }),
  );
  t.pass();
});

test('property: a wildcard matches a name iff it is one label plus the suffix', (t) => {
  fc.assert(
    fc.property(domain, fc.array(label, { minLength: 0, maxLength: 3 }), (suffix, extra) => {
      const name = [...extra, suffix].join('.');
      // Digit-only labels can spell an IP literal ("4.1.2.3"), which a wildcard never matches.
      return matches({ sni: [`*.${suffix}`] }, tls(name)) === (extra.length === 1 && isIP(name) === 0);
    }),
  );
  t.pass();
});

test('property: arbitrary sni, host, alpn and addresses never throw and give a listed route or none', (t) => {
  const rs = routes(
    { sni: ['a.example.com'] },
    { sni: ['*.example.com'] },
    { sni: ['~^[a-z]+\\.test$'] },
    { sni: null, source: ['10.0.0.0/8', '2001:db8::/32'] },
    { alpn: ['h2'] },
    { host: ['*.example.com', 'plain'] },
    { protocol: ['other', 'silent'], source: ['::ffff:0:0/96'] },
  );
  const text = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), domain, fc.ipV4(), fc.ipV6());
  const facts = fc.record(
    {
      protocol: fc.constantFrom<MatchProtocol>('tls', 'http', 'h2c', 'other', 'silent'),
      sni: text,
      alpn: fc.array(text, { maxLength: 4 }),
      host: text,
      sourceIp: fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((a) => `::ffff:${a}`), fc.string()),
    },
    { requiredKeys: ['protocol', 'sourceIp'] },
  );
  fc.assert(
    fc.property(facts, (f) => {
      const r = matchRoute(rs, f);
      return r === undefined || rs.includes(r);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('match.other holds only for a stream a probe recognised under one of the names', (t) => {
  const ssh: RouteMatch = { protocol: ['other'], other: ['ssh', 'socks5'] };
  t.true(routeMatches(ssh, { protocol: 'other', other: 'ssh', sourceIp: '' }));
  t.true(routeMatches(ssh, { protocol: 'other', other: 'socks5', sourceIp: '' }));
  t.false(routeMatches(ssh, { protocol: 'other', other: 'xmpp', sourceIp: '' }));
  t.false(routeMatches(ssh, { protocol: 'other', sourceIp: '' }), 'unrecognised bytes name no protocol');
  t.true(routeMatches({ protocol: ['other'] }, { protocol: 'other', other: 'ssh', sourceIp: '' }), 'without the key: any other');
});
