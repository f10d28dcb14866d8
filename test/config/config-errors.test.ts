// One test per kind of config error: the exact `FILE:LINE:COL key.path: message` lines. Positions were
// counted by hand from the fixtures in test/fixtures/config/bad/ (columns are 1-based).
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, checkConfigFile, loadConfigFile, parseConfigText } from '../../src/config/load.js';
import type { ConfigErrorCode } from '../../src/config/issues.js';
import { fixture } from './fixture-paths.js';

function expectLines(t: ExecutionContext, name: string, expected: string[], code: ConfigErrorCode = 'TWP_ERR_CONFIG_INVALID'): void {
  const file = fixture(`bad/${name}`);
  const result = checkConfigFile(file);
  t.deepEqual(result, { ok: false, lines: expected.map((l) => `${file}:${l}`) });
  const error = t.throws(() => loadConfigFile(file), { instanceOf: ConfigError });
  t.is(error?.code, code);
}

test('an unknown top-level key points at the key and suggests the close one', (t) => {
  expectLines(t, 'unknown-key-top.yaml', ['10:1 shutdown_timout: unknown key "shutdown_timout" (did you mean "shutdown_timeout"?)']);
});

test('an unknown listener key lists the allowed keys when none is close', (t) => {
  expectLines(t, 'unknown-key-listener.yaml', [
    '4:5 listeners[0].colour: unknown key "colour" (allowed: name, bind, timeouts, proxy_protocol, max_client_hello, max_connections, limits, routes, migration, on_peek_timeout)',
  ]);
});

test('an unknown key inside a flow mapping in a route match', (t) => {
  expectLines(t, 'unknown-key-match.yaml', ['5:33 listeners[0].routes[0].match.snii: unknown key "snii" (did you mean "sni"?)']);
});

test('an unknown key in a server mapping', (t) => {
  expectLines(t, 'unknown-key-server.yaml', ['10:38 pools.https.servers[0].wieght: unknown key "wieght" (did you mean "weight"?)']);
});

test('a missing required key points at the mapping that lacks it', (t) => {
  expectLines(t, 'missing-key.yaml', ['2:5 listeners[0].bind: required key is missing']);
});

test('a value of the wrong type', (t) => {
  expectLines(t, 'wrong-type.yaml', ['4:22 listeners[0].max_connections: must be a whole number']);
});

test('durations need a unit and a known format', (t) => {
  expectLines(t, 'bad-duration.yaml', [
    '5:13 listeners[0].timeouts.peek: durations need a unit: write "5s" or "5ms" (units: ms, s, m, h)',
    '6:13 listeners[0].timeouts.idle: "1 hour" is not a duration: write a number and a unit, such as 250ms, 5s, 10m, 1h',
  ]);
});

test('sizes use binary units only', (t) => {
  expectLines(t, 'bad-size.yaml', ['4:23 listeners[0].max_client_hello: "64KB": use binary units, KiB (1024 bytes), not "KB"']);
});

test('max_client_hello outside its floor and ceiling names both numbers', (t) => {
  expectLines(t, 'size-out-of-range.yaml', [
    '4:23 listeners[0].max_client_hello: 2MiB is out of range: must be from 512 bytes to 1MiB (1048576 bytes)',
  ]);
});

test('a bind with a port out of range', (t) => {
  expectLines(t, 'bad-bind.yaml', ['3:11 listeners[0].bind: port "70000" must be a number from 0 to 65535']);
});

test('a server address without a port, inside a flow list', (t) => {
  expectLines(t, 'bad-server-address.yaml', [
    '9:15 pools.https.servers[0]: "127.0.0.1" has no port: write "10.0.0.1:443" or "[2001:db8::1]:443"',
  ]);
});

test('a negative weight', (t) => {
  expectLines(t, 'bad-weight.yaml', ['10:46 pools.https.servers[0].weight: must be a whole number from 0 to 256']);
});

test('an unknown send_proxy version, with one message despite the string|mapping union', (t) => {
  expectLines(t, 'bad-send-proxy.yaml', ['10:50 pools.https.servers[0].send_proxy: must be one of v1, v2']);
});

test('an invalid regex names the regex engine error', (t) => {
  expectLines(t, 'bad-regex.yaml', ['5:23 listeners[0].routes[0].match.sni: invalid regex: missing closing ]: `[a-`']);
});

// JavaScript/PCRE constructs that RE2 cannot run in linear time: refused by `check`, not at the first client.
test('backreferences, lookaround and possessive quantifiers in regexes are refused, each named', (t) => {
  const unsupported = 'is not supported: regexes run on RE2 (linear time), which has no backreferences, lookaround or possessive quantifiers';
  expectLines(t, 'regex-unsupported.yaml', [
    `5:42 listeners[0].routes[0].match.sni[1]: invalid regex: backreference "\\1" ${unsupported}`,
    `8:16 listeners[0].routes[1].match.sni: invalid regex: lookahead "(?!" ${unsupported}`,
    `12:15 listeners[0].routes[2].match.host[0]: invalid regex: lookbehind "(?<=" ${unsupported}`,
    `13:15 listeners[0].routes[2].match.host[1]: invalid regex: possessive or doubled quantifier "++" ${unsupported}`,
  ]);
});

test('bad CIDRs in proxy_protocol.trusted and match.source', (t) => {
  expectLines(t, 'bad-cidr.yaml', [
    '5:17 listeners[0].proxy_protocol.trusted[0]: "10.0.0.300/8" is not an IP address or CIDR block',
    '7:27 listeners[0].routes[0].match.source[0]: "10.0.0.0/33" has an invalid prefix length (0-32)',
  ]);
});

test('an IPv6 block wider than /96 that holds the IPv4-mapped block is refused, with how to write it', (t) => {
  const why = (text: string): string =>
    `"${text}" holds the IPv4-mapped block ::ffff:0:0/96, but an IPv6 block never matches an IPv4 client (a dual-stack listener's ::ffff:a.b.c.d is compared as a.b.c.d): write IPv4 clients as IPv4 blocks ("0.0.0.0/0" for all), and all IPv6 clients as "::/0"`;
  expectLines(t, 'cidr-mapped-wide.yaml', [
    `5:37 listeners[0].proxy_protocol.trusted[1]: ${why('::/64')}`,
    `7:27 listeners[0].routes[0].match.source[0]: ${why('::ffff:0:0/80')}`,
  ]);
});

test('a route to an unknown pool points at `to` and lists the pools', (t) => {
  expectLines(t, 'unknown-pool.yaml', ['6:13 listeners[0].routes[0].to: unknown pool "htps" (pools: https)']);
});

test('duplicate listener names', (t) => {
  expectLines(t, 'duplicate-listener-name.yaml', ['7:11 listeners[1].name: duplicate listener name "web" (also listeners[0])']);
});

test('a bind that a wildcard bind on the same port already takes', (t) => {
  expectLines(t, 'duplicate-bind.yaml', ['6:11 listeners[1].bind: "127.0.0.1:8443" conflicts with listeners[0] bind "0.0.0.0:8443"']);
});

test('balance: hash without hash_key points at the pool', (t) => {
  expectLines(t, 'hash-without-key.yaml', [
    '9:5 pools.https.hash_key: required with balance: hash (one of source-ip, sni, host, sni+source-ip)',
  ]);
});

test('hash_key without balance: hash', (t) => {
  expectLines(t, 'hash-key-without-hash.yaml', ['10:5 pools.https.hash_key: only used with balance: hash (balance is first)']);
});

test('match keys that can never hold together, and a route after the catch-all', (t) => {
  expectLines(t, 'impossible-match.yaml', [
    '5:34 listeners[0].routes[0].match.sni: "sni" only holds for TLS, but protocol does not include tls',
    '7:36 listeners[0].routes[1].match.alpn: a silent client sends nothing, so "alpn" can never hold with protocol: silent',
    '11:9 listeners[0].routes[3]: unreachable: routes[2] has "match: {}" and takes every connection first',
  ]);
});

test('a silent route whose timer the peek deadline would pre-empt', (t) => {
  expectLines(t, 'silent-after-peek.yaml', [
    '4:35 listeners[0].timeouts.silent: timeouts.silent (2s) must be shorter than timeouts.peek (2s): the peek deadline would close silent clients before the silent route applies',
  ]);
});

test('every error of a file is reported, once each, in file order', (t) => {
  expectLines(t, 'many-errors.yaml', [
    '2:11 listeners[0].bind: "localhost" has no port: write "127.0.0.1:5000" or "[::1]:5000"',
    '3:26 listeners[0].timeouts.connect: "0ms": durations must be at least 1ms',
    '5:34 listeners[0].routes[0].match.protocol[1]: must be one of tls, http, h2c, other, silent',
    '6:13 listeners[0].routes[0].to: unknown pool "web" (pools: https)',
    '7:9 listeners[0].routes[1].match: required key is missing',
    '10:14 pools.https.retries: must be a whole number from 0 to 100',
    '12:9 pools.https.servers[0]: must be a "host:port" string or a mapping { address, weight, send_proxy, backup, max_connections }',
    '13:48 pools.https.servers[1].backup: must be true or false',
    '14:15 log.level: must be one of fatal, error, warn, info, debug, trace, silent',
    '14:32 log.raw_bytes: must be true or false',
  ]);
});

test('the design.md §3 example verbatim routes to two pools it does not define', (t) => {
  expectLines(t, 'design-example-verbatim.yaml', [
    '14:13 listeners[0].routes[0].to: unknown pool "identity-tls" (pools: http, https)',
    '16:13 listeners[0].routes[1].to: unknown pool "web-h2" (pools: http, https)',
  ]);
});

test('a YAML syntax error is reported with the position the parser gives, first cause first', (t) => {
  const file = fixture('bad/yaml-syntax.yaml');
  const error = t.throws(() => loadConfigFile(file), { instanceOf: ConfigError });
  t.is(error?.code, 'TWP_ERR_CONFIG_YAML');
  const result = checkConfigFile(file);
  t.false(result.ok);
  if (!result.ok) t.is(result.lines[0], `${file}:5:1: Tabs are not allowed as indentation`);
});

test('a repeated key is a YAML error, not "last one wins"', (t) => {
  expectLines(t, 'yaml-duplicate-key.yaml', ['7:5: Map keys must be unique'], 'TWP_ERR_CONFIG_YAML');
});

test('an alias to a missing anchor is a YAML error at the alias', (t) => {
  const error = t.throws(() => parseConfigText('listeners: *nope\n', 'a.yaml'), { instanceOf: ConfigError });
  t.is(error?.code, 'TWP_ERR_CONFIG_YAML');
  t.deepEqual(
    error?.issues.map((i) => [i.line, i.col, i.message]),
    [[1, 12, 'unknown alias *nope']],
  );
});

test('an empty file', (t) => {
  expectLines(t, 'empty.yaml', ['1:1: the file is empty: expected a mapping with listeners and pools']);
});

test('a document that is not a mapping', (t) => {
  const error = t.throws(() => parseConfigText('- a\n- b\n', 'list.yaml'), { instanceOf: ConfigError });
  t.deepEqual(error?.issues, [{ file: 'list.yaml', line: 1, col: 1, path: '', message: 'must be a mapping' }]);
});

test('an unreadable file: TWP_ERR_CONFIG_READ, named without a position', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twinport-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const missing = join(dir, 'nope.yaml');
  const error = t.throws(() => loadConfigFile(missing), { instanceOf: ConfigError });
  t.is(error?.code, 'TWP_ERR_CONFIG_READ');
  const result = checkConfigFile(missing);
  t.false(result.ok);
  if (!result.ok) {
    t.is(result.lines.length, 1);
    t.true(result.lines[0]!.startsWith(`${missing}: cannot read the file: ENOENT`), result.lines[0]);
  }
  const dirResult = checkConfigFile(dir);
  t.deepEqual(dirResult, { ok: false, lines: [`${dir}: cannot read the file: is a directory`] });
});

test('the ConfigError message carries every formatted issue', (t) => {
  const file = fixture('bad/bad-cidr.yaml');
  const error = t.throws(() => loadConfigFile(file), { instanceOf: ConfigError });
  t.is(error?.issues.length, 2);
  const lines = error?.message.split('\n') ?? [];
  t.is(lines[0], 'the configuration has errors: 2 errors');
  t.true(lines[1]!.startsWith(`${file}:5:17 listeners[0].proxy_protocol.trusted[0]: `));
});

test('migration: phases, statuses, canonical_host, exemptions and name rules are each checked at their key', (t) => {
  const unsupported = 'is not supported: regexes run on RE2 (linear time), which has no backreferences, lookaround or possessive quantifiers';
  expectLines(t, 'bad-migration.yaml', [
    '4:14 listeners[0].migration.phase: must be one of observe, redirect, reject',
    '5:24 listeners[0].migration.redirect_status: must be one of 301, 302, 307, 308',
    '6:22 listeners[0].migration.reject_status: must be a whole number from 400 to 599',
    '7:23 listeners[0].migration.canonical_host: "bad host" is not a host name or IP address (it goes into the redirect\'s Location)',
    '9:19 listeners[0].migration.exempt.sources[0]: "10.0.0.0/33" has an invalid prefix length (0-32)',
    '10:23 listeners[0].migration.exempt.user_agents[0]: "*curl*": User-Agent patterns are the whole value or "~regex" (RE2), not globs: write "~curl"',
    `10:33 listeners[0].migration.exempt.user_agents[1]: invalid regex: backreference "\\1" ${unsupported}`,
    '12:20 listeners[0].migration.names[0].match: "*.*.internal": a wildcard is "*." followed by a name without "*"',
    '13:42 listeners[0].migration.names[1].phase: must be one of observe, redirect, reject',
  ]);
});

test('match.other without protocol other, and on_peek_timeout: route without an other route, are errors at their keys', (t) => {
  expectLines(t, 'other-and-fail-open.yaml', [
    '4:5 listeners[0].on_peek_timeout: route sends undecided bytes to the protocol: other route, but this listener has none',
    '6:33 listeners[0].routes[0].match.other: other names a recognised non-TLS, non-HTTP protocol: write protocol: other with it',
  ]);
});
