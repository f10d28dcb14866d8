// Turns the parsed YAML into the TwinportConfig of types.ts: every default filled in, every string with a
// meaning (duration, size, address, name pattern, CIDR) compiled, every cross-reference checked. Nothing
// downstream re-checks the result, so whatever could go wrong at run time because of the file is an issue
// here. It runs on the raw value even when the schema check failed — it skips what has the wrong type
// (the schema check reports that) — so one run reports every problem in the file.
import { ipToBytes, parseCidr } from '../routing/cidr.js';
import { compileNamePattern } from '../routing/name-pattern.js';
import { compileUserAgentPattern } from '../migration/user-agent.js';
import { isIP, isIPv6 } from 'node:net';
import { isHostName, parseBind, parseServerAddress } from './address.js';
import type { KeyPath, PathIssue } from './issues.js';
import { BALANCE_KINDS, HASH_KEYS, HEALTH_TYPES, IO_ENGINES, LOG_LEVELS, MATCH_PROTOCOLS, MIGRATION_PHASES, REDIRECT_STATUSES } from './schema.js';
import { OTHER_PROTOCOL_NAMES } from '../protocol/other-probes.js';
import { formatDuration, formatSize, parseDuration, parsePeriod, parseSize } from './units.js';
import { dirname, resolve as resolvePath } from 'node:path';
import type {
  AffinityStoreConfig,
  AffinityTableConfig,
  BalanceKind,
  Cidr,
  AdminConfig,
  HashKey,
  HealthCheckConfig,
  LimitsConfig,
  RateLimitConfig,
  ListenerConfig,
  ListenerTimeouts,
  MatchProtocol,
  MigrationConfig,
  MigrationRecordConfig,
  MigrationStoreConfig,
  MigrationNameRule,
  MigrationPhase,
  NamePattern,
  PassiveHealthConfig,
  PoolConfig,
  RouteConfig,
  RouteMatch,
  ServerConfig,
  TwinportConfig,
  UserAgentPattern,
} from './types.js';

export const DEFAULT_TIMEOUTS: ListenerTimeouts = Object.freeze({ peek: 5000, connect: 3000, idle: 3_600_000, silent: 3000 });
export const DEFAULT_SHUTDOWN_TIMEOUT = 30_000;
export const DEFAULT_MAX_CLIENT_HELLO = 64 * 1024;
/**
 * Bounds on `max_client_hello`, checked here as Envoy's tls_inspector checks max_client_hello_size in its
 * config constructor. Below 512 bytes ordinary browser hellos (≈ 500–1800 bytes with post-quantum key
 * shares) would be cut; above 1MiB one slow client could pin a megabyte per connection while peeking.
 */
export const MIN_MAX_CLIENT_HELLO = 512;
export const MAX_MAX_CLIENT_HELLO = 1024 * 1024;

/** Health checks (docs/health.md). */
export const DEFAULT_HEALTH = Object.freeze({ interval: 2000, timeout: 1000, rise: 2, fall: 3, path: '/' });
export const DEFAULT_EXPECT_STATUS = Object.freeze([Object.freeze({ from: 200, to: 399 })]);
/**
 * Below 100ms a pool of a few dozen servers would open hundreds of check connections a second, and a
 * check's own connect + handshake on a busy backend takes about that long.
 */
export const MIN_HEALTH_INTERVAL = 100;
export const DEFAULT_PASSIVE_HEALTH: PassiveHealthConfig = Object.freeze({ fall: 3, downFor: 10_000 });
// sid_ttl: 300 s is the default session cache lifetime of OpenSSL (SSL_CTX_set_timeout), nginx
// (ssl_session_timeout 5m) and HAProxy (tune.ssl.lifetime 300): a session ID learned for longer names
// a session its server has already forgotten.
export const DEFAULT_AFFINITY_TABLE: AffinityTableConfig = Object.freeze({ size: 100_000, ttl: 3_600_000, sidTtl: 300_000 });
export const DEFAULT_QUEUE = Object.freeze({ size: 1024, timeout: 5000 });
export const DEFAULT_MIGRATION_STORE = './twinport-state/migration.db';
export const DEFAULT_MIGRATION_RECORD: MigrationRecordConfig = Object.freeze({
  flushInterval: 1000,
  retention: 30 * 86_400_000,
  maxClients: 100_000,
  maxNames: 10_000,
  maxTlsStacks: 10_000,
  redisPrefix: 'twinport:migration:',
});
export const DEFAULT_AFFINITY_STORE = Object.freeze({ timeout: 5, prefix: 'twinport:affinity:' });
/** A new TLS connection without a local table hit waits up to this long for Redis: keep it a hot-path bound. */
export const MAX_AFFINITY_STORE_TIMEOUT = 1000;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Issue collector bound to the file's issues list. */
class Issues {
  readonly list: PathIssue[] = [];
  add(path: KeyPath, message: string, at?: PathIssue['at']): void {
    this.list.push(at === undefined ? { path, message } : { path, message, at });
  }
}

function has(o: Obj, key: string): boolean {
  return Object.hasOwn(o, key) && o[key] !== undefined;
}

function duration(o: Obj, key: string, path: KeyPath, fallback: number, issues: Issues): number {
  if (!has(o, key)) return fallback;
  const v = parseDuration(o[key]);
  if (typeof v === 'string') {
    issues.add([...path, key], v);
    return fallback;
  }
  return v;
}

function oneOf<T extends string>(values: readonly T[], v: unknown, fallback: T): T {
  return typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : fallback;
}

function cidrs(v: unknown, path: KeyPath, issues: Issues): Cidr[] {
  if (!Array.isArray(v)) return [];
  const out: Cidr[] = [];
  v.forEach((item, i) => {
    if (typeof item !== 'string') return;
    const c = parseCidr(item);
    if (typeof c === 'string') issues.add([...path, i], c);
    else out.push(c);
  });
  return out;
}

/** `"name"` or `["a", "b"]` → patterns; the error names the item that is wrong. */
function namePatterns(v: unknown, path: KeyPath, issues: Issues): NamePattern[] {
  const items: [unknown, KeyPath][] = Array.isArray(v) ? v.map((x, i) => [x, [...path, i]]) : [[v, path]];
  const out: NamePattern[] = [];
  for (const [text, at] of items) {
    if (typeof text !== 'string') continue;
    const p = compileNamePattern(text);
    if (typeof p === 'string') issues.add(at, p);
    else out.push(p);
  }
  return out;
}

function compileMatch(raw: unknown, path: KeyPath, issues: Issues): RouteMatch {
  if (!isObj(raw)) return {};
  const m: { -readonly [K in keyof RouteMatch]: RouteMatch[K] } = {};
  if (has(raw, 'protocol')) {
    const list = Array.isArray(raw['protocol']) ? raw['protocol'] : [raw['protocol']];
    m.protocol = list.filter((p): p is MatchProtocol => (MATCH_PROTOCOLS as readonly unknown[]).includes(p));
  }
  if (Object.hasOwn(raw, 'sni')) m.sni = raw['sni'] === null ? null : namePatterns(raw['sni'], [...path, 'sni'], issues);
  if (has(raw, 'alpn') && Array.isArray(raw['alpn'])) m.alpn = raw['alpn'].filter((a): a is string => typeof a === 'string');
  if (has(raw, 'host')) m.host = namePatterns(raw['host'], [...path, 'host'], issues);
  if (has(raw, 'source')) m.source = cidrs(raw['source'], [...path, 'source'], issues);
  if (has(raw, 'other')) {
    const list = Array.isArray(raw['other']) ? raw['other'] : [raw['other']];
    m.other = list.filter((o): o is string => (OTHER_PROTOCOL_NAMES as readonly unknown[]).includes(o));
    const onlyOther = m.protocol === undefined || (m.protocol.length === 1 && m.protocol[0] === 'other');
    if (!onlyOther) issues.add([...path, 'other'], 'other names a recognised non-TLS, non-HTTP protocol: write protocol: other with it', 'key');
  }

  // Keys that can never hold together are a mistake in the file, not a route that silently never matches.
  const tlsKeys = ['sni', 'alpn'].filter((k) => Object.hasOwn(raw, k));
  const protocols = m.protocol;
  if (protocols !== undefined && protocols.length > 0) {
    if (protocols.includes('silent')) {
      const extra = ['sni', 'alpn', 'host'].filter((k) => Object.hasOwn(raw, k));
      if (extra.length > 0) {
        issues.add([...path, extra[0]!], `a silent client sends nothing, so "${extra.join('", "')}" can never hold with protocol: silent`, 'key');
        return m;
      }
    }
    if (tlsKeys.length > 0 && !protocols.includes('tls')) {
      issues.add([...path, tlsKeys[0]!], `"${tlsKeys[0]}" only holds for TLS, but protocol does not include tls`, 'key');
    }
    if (Object.hasOwn(raw, 'host') && !protocols.includes('http')) {
      issues.add([...path, 'host'], 'host only holds for plaintext HTTP/1, but protocol does not include http', 'key');
    }
  }
  if (tlsKeys.length > 0 && Object.hasOwn(raw, 'host')) {
    issues.add([...path, 'host'], `host (plaintext HTTP/1) and ${tlsKeys[0]} (TLS) can never both hold`, 'key');
  }
  return m;
}

function compileRoute(raw: unknown, index: number, path: KeyPath, pools: ReadonlySet<string>, issues: Issues): RouteConfig {
  const r = isObj(raw) ? raw : {};
  const match = compileMatch(r['match'], [...path, 'match'], issues);
  const to = typeof r['to'] === 'string' ? r['to'] : '';
  if (typeof r['to'] === 'string' && r['to'] !== '' && !pools.has(to)) {
    const known = [...pools];
    issues.add([...path, 'to'], `unknown pool "${to}" (${known.length === 0 ? 'no pools are defined' : `pools: ${known.join(', ')}`})`);
  }
  const route: { -readonly [K in keyof RouteConfig]: RouteConfig[K] } = { index, match, to };
  if (typeof r['name'] === 'string') route.name = r['name'];
  return route;
}

/** "0.0.0.0" / "::" take the port on every address of their family ("::" on both, dual-stack). */
function bindsConflict(a: { host: string; port: number; fdName?: string }, b: { host: string; port: number; fdName?: string }): boolean {
  if (a.fdName !== undefined || b.fdName !== undefined) return false;
  if (a.port === 0 || a.port !== b.port) return false;
  const ab = ipToBytes(a.host);
  const bb = ipToBytes(b.host);
  if (ab === undefined || bb === undefined) return a.host.toLowerCase() === b.host.toLowerCase();
  if (ab.equals(bb)) return true;
  const wildcard = (x: Buffer) => x.every((byte) => byte === 0);
  if ((wildcard(ab) && ab.length === 16) || (wildcard(bb) && bb.length === 16)) return true;
  return ab.length === bb.length && (wildcard(ab) || wildcard(bb));
}

function compileListener(raw: unknown, path: KeyPath, pools: ReadonlySet<string>, issues: Issues): ListenerConfig | undefined {
  if (!isObj(raw)) return undefined;
  let bind: ListenerConfig['bind'] = { text: '', host: '', port: 0 };
  if (typeof raw['bind'] === 'string') {
    const b = parseBind(raw['bind']);
    if (typeof b === 'string') issues.add([...path, 'bind'], b);
    else bind = { text: b.text, host: b.host, port: b.port, ...(b.fdName !== undefined && { fdName: b.fdName }) };
  }
  const t = isObj(raw['timeouts']) ? raw['timeouts'] : {};
  const tp = [...path, 'timeouts'];
  const timeouts: ListenerTimeouts = {
    peek: duration(t, 'peek', tp, DEFAULT_TIMEOUTS.peek, issues),
    connect: duration(t, 'connect', tp, DEFAULT_TIMEOUTS.connect, issues),
    idle: duration(t, 'idle', tp, DEFAULT_TIMEOUTS.idle, issues),
    silent: duration(t, 'silent', tp, DEFAULT_TIMEOUTS.silent, issues),
    ...(has(t, 'client_fin') && { clientFin: duration(t, 'client_fin', tp, 0, issues) }),
    ...(has(t, 'server_fin') && { serverFin: duration(t, 'server_fin', tp, 0, issues) }),
  };

  let maxClientHello = DEFAULT_MAX_CLIENT_HELLO;
  if (has(raw, 'max_client_hello')) {
    const size = parseSize(raw['max_client_hello']);
    if (typeof size === 'string') issues.add([...path, 'max_client_hello'], size);
    else if (size < MIN_MAX_CLIENT_HELLO || size > MAX_MAX_CLIENT_HELLO) {
      issues.add(
        [...path, 'max_client_hello'],
        `${formatSize(size)} is out of range: must be from ${MIN_MAX_CLIENT_HELLO} bytes to ${formatSize(MAX_MAX_CLIENT_HELLO)} (${MAX_MAX_CLIENT_HELLO} bytes)`,
      );
    } else maxClientHello = size;
  }

  const routesRaw = Array.isArray(raw['routes']) ? raw['routes'] : [];
  const routes = routesRaw.map((r, i) => compileRoute(r, i, [...path, 'routes', i], pools, issues));
  checkRoutes(routesRaw, routes, path, timeouts, t, issues);

  const listener: { -readonly [K in keyof ListenerConfig]: ListenerConfig[K] } = {
    name: typeof raw['name'] === 'string' ? raw['name'] : bind.text,
    bind,
    timeouts,
    maxClientHello,
    routes,
    onPeekTimeout: raw['on_peek_timeout'] === 'route' ? 'route' : 'close',
  };
  if (listener.onPeekTimeout === 'route' && !routes.some((r) => r.match.protocol === undefined || r.match.protocol.includes('other'))) {
    issues.add([...path, 'on_peek_timeout'], 'route sends undecided bytes to the protocol: other route, but this listener has none', 'key');
  }
  if (isObj(raw['proxy_protocol'])) {
    listener.proxyProtocol = { trusted: cidrs(raw['proxy_protocol']['trusted'], [...path, 'proxy_protocol', 'trusted'], issues) };
  }
  if (Number.isInteger(raw['max_connections'])) listener.maxConnections = raw['max_connections'] as number;
  if (isObj(raw['limits'])) listener.limits = compileLimits(raw['limits'], [...path, 'limits'], issues);
  if (isObj(raw['migration'])) listener.migration = compileMigration(raw['migration'], [...path, 'migration'], issues);
  return listener;
}

function compileRate(raw: Obj, path: KeyPath, issues: Issues): RateLimitConfig | undefined {
  const rate = Number.isInteger(raw['rate']) ? (raw['rate'] as number) : undefined;
  const burst = Number.isInteger(raw['burst']) ? (raw['burst'] as number) : undefined;
  if (rate === undefined) {
    if (burst !== undefined) issues.add([...path, 'burst'], 'burst sizes the rate\'s token bucket: give rate too');
    return undefined;
  }
  return { rate, burst: burst ?? rate };
}

function compileLimits(raw: Obj, path: KeyPath, issues: Issues): LimitsConfig {
  const out: { -readonly [K in keyof LimitsConfig]: LimitsConfig[K] } = {};
  const rate = compileRate(raw, path, issues);
  if (rate !== undefined) out.rate = rate;
  if (isObj(raw['per_source'])) {
    const per = raw['per_source'];
    const perRate = compileRate(per, [...path, 'per_source'], issues);
    out.perSource = {
      ...(Number.isInteger(per['max_connections']) && { maxConnections: per['max_connections'] as number }),
      ...(perRate !== undefined && { rate: perRate }),
    };
  }
  return out;
}

/** Loopback hosts: an admin listener elsewhere must have a token (docs/admin.md). */
function isLoopback(host: string): boolean {
  if (host.toLowerCase() === 'localhost' || host === '::1') return true;
  const b = ipToBytes(host);
  return b !== undefined && b.length === 4 && b[0] === 127;
}

function compileAdmin(raw: Obj, listeners: readonly ListenerConfig[], source: string, issues: Issues): AdminConfig | undefined {
  const path: KeyPath = ['admin'];
  if (typeof raw['bind'] !== 'string') return undefined;
  const text = raw['bind'];
  const tokenFile = typeof raw['token_file'] === 'string' && raw['token_file'] !== '' ? resolvePath(dirname(source), raw['token_file']) : undefined;
  let bind: AdminConfig['bind'];
  if (text.startsWith('unix:')) {
    const a = parseServerAddress(text);
    if (typeof a === 'string') {
      issues.add([...path, 'bind'], a);
      return undefined;
    }
    bind = { text, path: (a as { path: string }).path };
  } else {
    const b = parseBind(text);
    if (typeof b === 'string') {
      issues.add([...path, 'bind'], b);
      return undefined;
    }
    bind = { text: b.text, host: b.host, port: b.port };
    if (!isLoopback(b.host) && tokenFile === undefined) {
      issues.add([...path, 'bind'], `"${text}" is not a loopback address: an admin listener reachable from other hosts needs admin.token_file`);
    }
    const clash = listeners.findIndex((l) => bindsConflict(l.bind, b));
    if (clash >= 0) {
      issues.add([...path, 'bind'], `"${text}" is the address of listeners[${clash}] ("${listeners[clash]!.bind.text}"): the admin listener never shares a data listener's port`);
    }
  }
  return { bind, ...(tokenFile !== undefined && { tokenFile }) };
}

export const DEFAULT_REDIRECT_STATUS = 308;
export const DEFAULT_REJECT_STATUS = 426;

/** `canonical_host` as the host of a URI authority (RFC 3986 §3.2.2): a DNS name, an IPv4 address, or [IPv6]. */
function canonicalHost(text: string): string | undefined {
  const inner = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (isIPv6(inner) && !inner.includes('%')) return `[${inner}]`;
  if (isIP(text) === 4 || isHostName(text)) return text.replace(/\.$/, '');
  return undefined;
}

function compileMigration(raw: Obj, path: KeyPath, issues: Issues): MigrationConfig {
  const phase: MigrationPhase = oneOf(MIGRATION_PHASES, raw['phase'], 'observe');
  const redirectStatus = (REDIRECT_STATUSES as readonly unknown[]).includes(raw['redirect_status'])
    ? (raw['redirect_status'] as MigrationConfig['redirectStatus'])
    : DEFAULT_REDIRECT_STATUS;
  const m: { -readonly [K in keyof MigrationConfig]: MigrationConfig[K] } = {
    phase,
    redirectStatus,
    rejectStatus: Number.isInteger(raw['reject_status']) ? (raw['reject_status'] as number) : DEFAULT_REJECT_STATUS,
    exempt: { sources: [], userAgents: [] },
    names: [],
  };
  if (Number.isInteger(raw['https_port'])) m.httpsPort = raw['https_port'] as number;
  if (typeof raw['canonical_host'] === 'string' && raw['canonical_host'] !== '') {
    const host = canonicalHost(raw['canonical_host']);
    if (host === undefined) {
      issues.add([...path, 'canonical_host'], `"${raw['canonical_host']}" is not a host name or IP address (it goes into the redirect's Location)`);
    } else m.canonicalHost = host;
  }
  if (isObj(raw['exempt'])) {
    const e = raw['exempt'];
    const ep = [...path, 'exempt'];
    const userAgents: UserAgentPattern[] = [];
    if (Array.isArray(e['user_agents'])) {
      e['user_agents'].forEach((text, i) => {
        if (typeof text !== 'string') return;
        const p = compileUserAgentPattern(text);
        if (typeof p === 'string') issues.add([...ep, 'user_agents', i], p);
        else userAgents.push(p);
      });
    }
    m.exempt = { sources: cidrs(e['sources'], [...ep, 'sources'], issues), userAgents };
  }
  if (Array.isArray(raw['names'])) {
    const names: MigrationNameRule[] = [];
    raw['names'].forEach((rule, i) => {
      if (!isObj(rule) || !has(rule, 'match')) return;
      const ruleMatch = namePatterns(rule['match'], [...path, 'names', i, 'match'], issues);
      names.push({ match: ruleMatch, phase: oneOf(MIGRATION_PHASES, rule['phase'], phase) });
    });
    m.names = names;
  }
  return m;
}

/** Checks that need the whole route list: unreachable routes, duplicate names, the silent timer. */
function checkRoutes(raw: unknown[], routes: RouteConfig[], path: KeyPath, timeouts: ListenerTimeouts, rawTimeouts: Obj, issues: Issues): void {
  // `match: {}` is the explicit catch-all: every route after it is dead configuration.
  const catchAll = raw.findIndex((r) => isObj(r) && isObj(r['match']) && Object.keys(r['match']).length === 0);
  if (catchAll >= 0 && catchAll < routes.length - 1) {
    issues.add([...path, 'routes', catchAll + 1], `unreachable: routes[${catchAll}] has "match: {}" and takes every connection first`);
  }
  const names = new Map<string, number>();
  routes.forEach((r) => {
    if (r.name === undefined) return;
    const first = names.get(r.name);
    if (first !== undefined) issues.add([...path, 'routes', r.index, 'name'], `duplicate route name "${r.name}" (also routes[${first}])`);
    else names.set(r.name, r.index);
  });
  // Both timers start at accept: a silent timeout at or past the peek deadline could never fire.
  const silentRoute = routes.some((r) => r.match.protocol?.includes('silent') === true);
  if (silentRoute && timeouts.silent >= timeouts.peek) {
    const at: KeyPath = has(rawTimeouts, 'silent') ? [...path, 'timeouts', 'silent'] : [...path, 'timeouts', 'peek'];
    issues.add(
      at,
      `timeouts.silent (${formatDuration(timeouts.silent)}) must be shorter than timeouts.peek (${formatDuration(timeouts.peek)}): the peek deadline would close silent clients before the silent route applies`,
    );
  }
}

function compileServer(raw: unknown, path: KeyPath, issues: Issues): ServerConfig | undefined {
  const o: Obj | undefined = typeof raw === 'string' ? { address: raw } : isObj(raw) ? raw : undefined;
  if (o === undefined || typeof o['address'] !== 'string') return undefined;
  const address = parseServerAddress(o['address']);
  if (typeof address === 'string') {
    issues.add(typeof raw === 'string' ? path : [...path, 'address'], address);
    return undefined;
  }
  const server: { -readonly [K in keyof ServerConfig]: ServerConfig[K] } = {
    address,
    weight: Number.isInteger(o['weight']) ? (o['weight'] as number) : 1,
    backup: o['backup'] === true,
  };
  if (o['send_proxy'] === 'v1' || o['send_proxy'] === 'v2') server.sendProxy = o['send_proxy'];
  if (Number.isInteger(o['max_connections'])) server.maxConnections = o['max_connections'] as number;
  return server;
}

const POOL_NAME = /^[A-Za-z0-9_-]+$/;

function compilePool(name: string, raw: unknown, issues: Issues): PoolConfig | undefined {
  const path: KeyPath = ['pools', name];
  if (!POOL_NAME.test(name)) issues.add(path, `pool name "${name}" may only use letters, digits, "_" and "-"`, 'key');
  if (!isObj(raw)) return undefined;
  const balance: BalanceKind = oneOf(BALANCE_KINDS, raw['balance'], 'round-robin');
  const serversRaw = Array.isArray(raw['servers']) ? raw['servers'] : [];
  const servers: ServerConfig[] = [];
  const seen = new Map<string, number>();
  serversRaw.forEach((s, i) => {
    const server = compileServer(s, [...path, 'servers', i], issues);
    if (server === undefined) return;
    const first = seen.get(server.address.text);
    if (first !== undefined) issues.add([...path, 'servers', i], `server "${server.address.text}" is listed twice (also servers[${first}])`);
    else seen.set(server.address.text, i);
    servers.push(server);
  });
  const pool: { -readonly [K in keyof PoolConfig]: PoolConfig[K] } = {
    name,
    balance,
    retries: Number.isInteger(raw['retries']) ? (raw['retries'] as number) : Math.max(0, servers.length - 1),
    affinityTable: DEFAULT_AFFINITY_TABLE,
    servers,
  };
  const hashKey = raw['hash_key'];
  if (balance === 'hash' && !has(raw, 'hash_key')) {
    issues.add([...path, 'hash_key'], `required with balance: hash (one of ${HASH_KEYS.join(', ')})`, 'parent');
  } else if (balance !== 'hash' && has(raw, 'hash_key')) {
    issues.add([...path, 'hash_key'], `only used with balance: hash (balance is ${balance})`, 'key');
  } else if (typeof hashKey === 'string' && (HASH_KEYS as readonly string[]).includes(hashKey)) {
    pool.hashKey = hashKey as HashKey;
  }
  if (raw['affinity'] === 'tls') pool.affinity = 'tls';
  // Without affinity: tls there is no table to size and nothing to share: a key that does nothing is a
  // mistake in the file (the table keeps its defaults so PoolConfig stays total).
  for (const key of ['affinity_table', 'affinity_store']) {
    if (has(raw, key) && pool.affinity !== 'tls') issues.add([...path, key], 'only used with affinity: tls', 'key');
  }
  if (isObj(raw['affinity_table'])) pool.affinityTable = compileAffinityTable(raw['affinity_table'], [...path, 'affinity_table'], issues);
  if (isObj(raw['affinity_store'])) {
    const store = compileAffinityStore(raw['affinity_store'], [...path, 'affinity_store'], issues);
    if (store !== undefined) pool.affinityStore = store;
  }
  if (isObj(raw['health'])) {
    const health = compileHealth(raw['health'], [...path, 'health'], issues);
    if (health !== undefined) pool.health = health;
  }
  if (isObj(raw['passive_health'])) {
    const ph = raw['passive_health'];
    const pp = [...path, 'passive_health'];
    pool.passiveHealth = {
      fall: count(ph, 'fall', DEFAULT_PASSIVE_HEALTH.fall),
      downFor: duration(ph, 'down_for', pp, DEFAULT_PASSIVE_HEALTH.downFor, issues),
    };
  }
  const q = isObj(raw['queue']) ? raw['queue'] : {};
  pool.queue = {
    size: Number.isInteger(q['size']) ? (q['size'] as number) : DEFAULT_QUEUE.size,
    timeout: duration(q, 'timeout', [...path, 'queue'], DEFAULT_QUEUE.timeout, issues),
  };
  if (raw['on_down'] === 'close') {
    if (!isObj(raw['health']) && !isObj(raw['passive_health'])) {
      issues.add([...path, 'on_down'], 'only used with health or passive_health: without them no server is ever marked down', 'key');
    } else pool.onDown = 'close';
  }
  return pool;
}

/** An integer the schema bounds (rise, fall, size); a wrong value is the schema's message, here the default. */
function count(o: Obj, key: string, fallback: number): number {
  return Number.isInteger(o[key]) ? (o[key] as number) : fallback;
}

// origin-form (RFC 9112 §3.2.1): "/" then visible ASCII; a space or CR/LF would end the request line early.
const HTTP_PATH = /^\/[\x21-\x7e]*$/;
// Host = uri-host [ ":" port ] (RFC 9110 §7.2): a reg-name or IPv4 address, or an IPv6 literal in brackets.
const HTTP_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{1,5})?$/;

/** `200` or `"200-399"` → an inclusive range; the message says what is wrong. */
function statusRange(v: unknown): { from: number; to: number } | string | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 100 && v <= 599 ? { from: v, to: v } : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^([0-9]{3})(?:-([0-9]{3}))?$/.exec(v);
  if (m === null) return `"${v}" is not a status code or range: write 200 or "200-399"`;
  const from = Number(m[1]);
  const to = Number(m[2] ?? m[1]);
  if (from < 100 || to > 599) return `"${v}": status codes run from 100 to 599 (RFC 9110 §15)`;
  if (from > to) return `"${v}" is an empty range: the first code must not be larger than the second`;
  return { from, to };
}

function compileHealth(raw: Obj, path: KeyPath, issues: Issues): HealthCheckConfig | undefined {
  const type = raw['type'];
  if (typeof type !== 'string' || !(HEALTH_TYPES as readonly string[]).includes(type)) return undefined;
  const t = type as HealthCheckConfig['type'];

  // Keys of another check type would be silently ignored: say so at the key.
  const only: Record<string, HealthCheckConfig['type']> = { sni: 'tls', alpn: 'tls', path: 'http', host: 'http', expect_status: 'http' };
  for (const [key, owner] of Object.entries(only)) {
    if (Object.hasOwn(raw, key) && owner !== t) issues.add([...path, key], `only used with type: ${owner} (type is ${t})`, 'key');
  }

  let interval = duration(raw, 'interval', path, DEFAULT_HEALTH.interval, issues);
  if (interval < MIN_HEALTH_INTERVAL) {
    issues.add([...path, 'interval'], `${formatDuration(interval)} is too short: checks run at most every ${MIN_HEALTH_INTERVAL}ms`);
    interval = DEFAULT_HEALTH.interval;
  }
  // The default timeout follows a short interval down, so `interval: 500ms` alone is valid.
  const defaultTimeout = Math.min(DEFAULT_HEALTH.timeout, Math.floor(interval / 2));
  const timeout = duration(raw, 'timeout', path, defaultTimeout, issues);
  if (timeout >= interval) {
    // Checks of one server never overlap: the next starts `interval` after the previous one began.
    issues.add(
      has(raw, 'timeout') ? [...path, 'timeout'] : [...path, 'interval'],
      `timeout (${formatDuration(timeout)}) must be shorter than interval (${formatDuration(interval)}): a check must end before the next one is due`,
    );
  }

  const health: { -readonly [K in keyof HealthCheckConfig]: HealthCheckConfig[K] } = {
    type: t,
    interval,
    timeout,
    rise: count(raw, 'rise', DEFAULT_HEALTH.rise),
    fall: count(raw, 'fall', DEFAULT_HEALTH.fall),
    path: DEFAULT_HEALTH.path,
    expectStatus: DEFAULT_EXPECT_STATUS,
  };
  if (t === 'tls') {
    if (typeof raw['sni'] === 'string' && raw['sni'] !== '') {
      const sni = raw['sni'];
      if (isIP(sni) !== 0) issues.add([...path, 'sni'], `"${sni}" is an IP address: SNI carries host names only (RFC 6066 §3)`);
      else if (!isHostName(sni)) issues.add([...path, 'sni'], `"${sni}" is not a host name`);
      else health.sni = sni.replace(/\.$/, '');
    }
    if (Array.isArray(raw['alpn'])) health.alpn = raw['alpn'].filter((a): a is string => typeof a === 'string' && a !== '');
  }
  if (t === 'http') {
    if (typeof raw['path'] === 'string' && raw['path'] !== '') {
      if (HTTP_PATH.test(raw['path'])) health.path = raw['path'];
      else issues.add([...path, 'path'], `"${raw['path']}" must start with "/" and hold no spaces or control characters (RFC 9112 §3.2.1)`);
    }
    if (typeof raw['host'] === 'string' && raw['host'] !== '') {
      if (HTTP_HOST.test(raw['host'])) health.host = raw['host'];
      else issues.add([...path, 'host'], `"${raw['host']}" is not a Host header value: write host or host:port (RFC 9110 §7.2)`);
    }
    if (Array.isArray(raw['expect_status'])) {
      const ranges: { from: number; to: number }[] = [];
      raw['expect_status'].forEach((v, i) => {
        const r = statusRange(v);
        if (typeof r === 'string') issues.add([...path, 'expect_status', i], r);
        else if (r !== undefined) ranges.push(r);
      });
      if (ranges.length > 0) health.expectStatus = ranges;
    }
  }
  return health;
}

function compileAffinityTable(raw: Obj, path: KeyPath, issues: Issues): AffinityTableConfig {
  return {
    size: count(raw, 'size', DEFAULT_AFFINITY_TABLE.size),
    ttl: duration(raw, 'ttl', path, DEFAULT_AFFINITY_TABLE.ttl, issues),
    sidTtl: duration(raw, 'sid_ttl', path, DEFAULT_AFFINITY_TABLE.sidTtl, issues),
  };
}

/** `redis://host:port/db` or `rediss://…` (TLS); the database, when given, is a number. */
function redisUrlProblem(text: string): string | undefined {
  const example = 'write redis://host:port/db or rediss://host:port/db';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `"${text}" is not a URL: ${example}`;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `"${text}" is not a Redis URL (scheme ${url.protocol.slice(0, -1)}): ${example}`;
  if (url.hostname === '') return `"${text}" has no host: ${example}`;
  if (url.pathname !== '' && url.pathname !== '/' && !/^\/[0-9]{1,5}$/.test(url.pathname)) {
    return `"${text}": the database "${url.pathname.slice(1)}" must be a number`;
  }
  if (url.search !== '' || url.hash !== '') return `"${text}": query and fragment are not supported`;
  return undefined;
}

function compileAffinityStore(raw: Obj, path: KeyPath, issues: Issues): AffinityStoreConfig | undefined {
  let timeout = duration(raw, 'timeout', path, DEFAULT_AFFINITY_STORE.timeout, issues);
  if (timeout > MAX_AFFINITY_STORE_TIMEOUT) {
    issues.add(
      [...path, 'timeout'],
      `${formatDuration(timeout)} is too long: at most ${formatDuration(MAX_AFFINITY_STORE_TIMEOUT)}, since a new TLS connection may wait this long for the lookup`,
    );
    timeout = DEFAULT_AFFINITY_STORE.timeout;
  }
  const prefix = typeof raw['prefix'] === 'string' && raw['prefix'] !== '' ? raw['prefix'] : DEFAULT_AFFINITY_STORE.prefix;
  if (typeof raw['redis'] !== 'string' || raw['redis'] === '') return undefined;
  const problem = redisUrlProblem(raw['redis']);
  if (problem !== undefined) {
    issues.add([...path, 'redis'], problem);
    return undefined;
  }
  return { redis: raw['redis'], timeout, prefix };
}

function compileMigrationStore(raw: unknown, source: string, issues: Issues): MigrationStoreConfig {
  const text = typeof raw === 'string' && raw !== '' ? raw : DEFAULT_MIGRATION_STORE;
  if (/^rediss?:/i.test(text)) {
    const problem = redisUrlProblem(text);
    if (problem !== undefined) issues.add(['migration_store'], problem);
    return { kind: 'redis', url: text, text };
  }
  // Relative to the config file, not the working directory: a unit started from / finds the same file.
  const base = source.startsWith('<') ? process.cwd() : dirname(source);
  return { kind: 'sqlite', path: resolvePath(base, text), text };
}

function compileMigrationRecord(raw: Obj, issues: Issues): MigrationRecordConfig {
  const path: KeyPath = ['migration_record'];
  const d = DEFAULT_MIGRATION_RECORD;
  let retention = d.retention;
  if (raw['retention'] !== undefined) {
    const r = parsePeriod(raw['retention']);
    if (typeof r === 'string') issues.add([...path, 'retention'], r);
    else retention = r;
  }
  const int = (key: string, fallback: number): number => (Number.isInteger(raw[key]) ? (raw[key] as number) : fallback);
  return {
    flushInterval: duration(raw, 'flush_interval', path, d.flushInterval, issues),
    retention,
    maxClients: int('max_clients', d.maxClients),
    maxNames: int('max_names', d.maxNames),
    maxTlsStacks: int('max_tls_stacks', d.maxTlsStacks),
    redisPrefix: typeof raw['redis_prefix'] === 'string' && raw['redis_prefix'] !== '' ? raw['redis_prefix'] : d.redisPrefix,
  };
}

export interface CompileResult {
  readonly config: TwinportConfig;
  readonly issues: readonly PathIssue[];
}

/** Compiles what the schema check accepted (or as much of it as has the right types). */
export function compileConfig(raw: unknown, source: string): CompileResult {
  const issues = new Issues();
  const root = isObj(raw) ? raw : {};

  const pools: Record<string, PoolConfig> = {};
  if (isObj(root['pools'])) {
    for (const [name, p] of Object.entries(root['pools'])) {
      const pool = compilePool(name, p, issues);
      if (pool !== undefined) pools[name] = pool;
    }
  }
  const poolNames = new Set(isObj(root['pools']) ? Object.keys(root['pools']) : []);

  const listeners: ListenerConfig[] = [];
  const listenersRaw = Array.isArray(root['listeners']) ? root['listeners'] : [];
  const byName = new Map<string, number>();
  const bound: { index: number; bind: ListenerConfig['bind'] }[] = [];
  listenersRaw.forEach((raw, i) => {
    const path: KeyPath = ['listeners', i];
    const l = compileListener(raw, path, poolNames, issues);
    if (l === undefined) return;
    listeners.push(l);
    const named = isObj(raw) && typeof raw['name'] === 'string';
    const first = byName.get(l.name);
    if (first !== undefined && l.name !== '') {
      issues.add([...path, named ? 'name' : 'bind'], `duplicate listener name "${l.name}" (also listeners[${first}])`);
    } else byName.set(l.name, i);
    if (l.bind.fdName !== undefined) {
      const clash = bound.find((b) => b.bind.fdName === l.bind.fdName);
      if (clash !== undefined) issues.add([...path, 'bind'], `"${l.bind.text}" is also listeners[${clash.index}] bind: one inherited socket serves one listener`);
      bound.push({ index: i, bind: l.bind });
    } else if (l.bind.text !== '') {
      const clash = bound.find((b) => bindsConflict(b.bind, l.bind));
      if (clash !== undefined) issues.add([...path, 'bind'], `"${l.bind.text}" conflicts with listeners[${clash.index}] bind "${clash.bind.text}"`);
      bound.push({ index: i, bind: l.bind });
    }
  });

  const log = isObj(root['log']) ? root['log'] : {};
  const admin = isObj(root['admin']) ? compileAdmin(root['admin'], listeners, source, issues) : undefined;
  const migrationRecord = compileMigrationRecord(isObj(root['migration_record']) ? root['migration_record'] : {}, issues);
  const migrationStore = compileMigrationStore(root['migration_store'], source, issues);
  const config: TwinportConfig = {
    source,
    listeners,
    pools,
    shutdownTimeout: duration(root, 'shutdown_timeout', [], DEFAULT_SHUTDOWN_TIMEOUT, issues),
    ...(Number.isInteger(root['max_connections']) && { maxConnections: root['max_connections'] as number }),
    ioEngine: oneOf(IO_ENGINES, root['io_engine'], 'auto'),
    ...(isObj(root['limits']) && { limits: compileLimits(root['limits'], ['limits'], issues) }),
    ...(admin !== undefined && { admin }),
    log: {
      level: oneOf(LOG_LEVELS, log['level'], 'info'),
      rawBytes: log['raw_bytes'] === true,
      ja4: log['ja4'] === true,
    },
    migrationStore,
    migrationRecord,
  };
  return { config, issues: issues.list };
}

/**
 * Freezes objects and arrays all the way down; Buffers are leaves (a Buffer cannot be frozen), and so are
 * functions: a compiled regex is a `test` closure (OperatorRegex) whose engine state must stay mutable.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return value;
  for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}
