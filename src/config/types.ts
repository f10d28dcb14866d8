// The validated configuration: frozen, fully defaulted, typed (docs/config.md). Produced only by
// src/config/load.ts; nothing downstream re-checks it. Durations are milliseconds, sizes bytes.

import type { Protocol } from '../protocol/verdict.js';

export type MatchProtocol = Protocol | 'silent';

/**
 * A regex from the config, compiled by src/routing/operator-regex.ts for RE2 (linear time in the text):
 * case-insensitive, unanchored unless the author anchors it. `test` is a closure so that deep-freezing the
 * config leaves the engine's own objects alone.
 */
export interface OperatorRegex {
  readonly source: string; // as written, without the `~`
  readonly test: (text: string) => boolean;
}

/** An SNI / Host pattern, compiled from `"name"`, `"*.example.com"`, `"~regex"`. */
export type NamePattern =
  | { readonly kind: 'exact'; readonly name: string } // lower-cased, trailing dot removed
  | { readonly kind: 'wildcard'; readonly suffix: string } // ".example.com", lower-cased: exactly one more label
  | { readonly kind: 'regex'; readonly source: string; readonly regex: OperatorRegex };

export interface Cidr {
  readonly text: string; // as written, for logs
  readonly family: 4 | 6;
  readonly network: Buffer; // 4 or 16 bytes, host bits cleared
  readonly prefix: number;
}

export interface RouteMatch {
  readonly protocol?: readonly MatchProtocol[];
  /** `sni: null` → matches TLS without SNI; an array of patterns → any of them. */
  readonly sni?: null | readonly NamePattern[];
  readonly alpn?: readonly string[];
  readonly host?: readonly NamePattern[];
  readonly source?: readonly Cidr[];
  /** Recognised other protocols by name (ssh, socks5, openvpn, adb, xmpp). */
  readonly other?: readonly string[];
}

export interface RouteConfig {
  readonly index: number;
  readonly name?: string;
  readonly match: RouteMatch;
  readonly to: string; // pool name, checked to exist
}

export interface ServerAddress {
  /** "127.0.0.1:5080", "[::1]:5080" or "unix:/run/x.sock" as written */
  readonly text: string;
  readonly host?: string; // absent for unix sockets
  readonly port?: number;
  readonly path?: string; // unix socket path
}

export interface ServerConfig {
  readonly address: ServerAddress;
  readonly weight: number; // default 1; 0 drains
  readonly sendProxy?: 'v1' | 'v2';
  readonly backup: boolean;
  /** Connections at once (HAProxy maxconn); absent: unlimited. */
  readonly maxConnections?: number;
}

export type BalanceKind = 'round-robin' | 'least-conn' | 'random' | 'first' | 'hash';
export type HashKey = 'source-ip' | 'sni' | 'host' | 'sni+source-ip';

/** Active health checks (`pools.<name>.health`). */
export interface HealthCheckConfig {
  readonly type: 'tcp' | 'tls' | 'http';
  readonly interval: number; // default 2s
  readonly timeout: number; // default 1s
  readonly rise: number; // consecutive successes to mark up, default 2
  readonly fall: number; // consecutive failures to mark down, default 3
  /** tls: SNI to send (default: none); http: Host header (default: the server address). */
  readonly sni?: string;
  readonly alpn?: readonly string[]; // tls only
  readonly path: string; // http only, default "/"
  readonly host?: string; // http only
  /** http only: accepted status codes, default 200–399. */
  readonly expectStatus: readonly { readonly from: number; readonly to: number }[];
}

/** Passive health (`pools.<name>.passive_health`): consecutive connect failures take a server out. */
export interface PassiveHealthConfig {
  readonly fall: number; // default 3
  readonly downFor: number; // default 10s
}

export interface AffinityTableConfig {
  readonly size: number; // max entries per pool, default 100 000
  readonly ttl: number; // ticket key names, default 1h
  /** TLS ≤ 1.2 session IDs, default 5m: a server's session cache forgets them sooner than ticket keys rotate. */
  readonly sidTtl: number;
}

/** `pools.<name>.affinity_store`: the learned table shared through Redis. */
export interface AffinityStoreConfig {
  readonly redis: string; // "redis://host:port/db"
  readonly timeout: number; // read bound, default 5ms
  readonly prefix: string; // key prefix, default "twinport:affinity:"
}

export interface PoolConfig {
  readonly name: string;
  readonly balance: BalanceKind;
  readonly hashKey?: HashKey;
  readonly affinity?: 'tls';
  readonly affinityTable: AffinityTableConfig; // defaults even without `affinity`
  readonly affinityStore?: AffinityStoreConfig;
  readonly retries: number; // extra server attempts after the first, default: servers.length - 1
  readonly health?: HealthCheckConfig;
  readonly passiveHealth?: PassiveHealthConfig;
  /** `close`: when health marks a server down, its spliced connections are closed; absent: they run on. */
  readonly onDown?: 'close';
  /** Where connections wait when every usable server is at its max_connections. */
  readonly queue?: { readonly size: number; readonly timeout: number }; // compile sets it: size 1024, timeout 5s
  readonly servers: readonly ServerConfig[];
}

export interface ListenerTimeouts {
  readonly peek: number; // default 5s
  readonly connect: number; // default 3s
  readonly idle: number; // default 1h
  readonly silent: number; // default 3s; only acted on when a `protocol: silent` route exists
  /** After the client's FIN, how long the half-closed pair may live; absent: only `idle` bounds it. */
  readonly clientFin?: number;
  /** After the server's FIN, the same. */
  readonly serverFin?: number;
}

/** What a listener does with plaintext during an HTTP → HTTPS migration (docs/migration.md). */
export type MigrationPhase = 'observe' | 'redirect' | 'reject';

/** A User-Agent exemption: the whole value exactly (case-sensitive), or a `~regex` (RE2, operator-regex.ts). */
export type UserAgentPattern = { readonly kind: 'exact'; readonly value: string } | { readonly kind: 'regex'; readonly source: string; readonly regex: OperatorRegex };

export interface MigrationNameRule {
  readonly match: readonly NamePattern[];
  readonly phase: MigrationPhase;
}

/** `listeners[].migration`. */
export interface MigrationConfig {
  readonly phase: MigrationPhase; // default observe
  /** Port in the redirect's Location; absent = the port the client connected to (a trusted PROXY header's destination). */
  readonly httpsPort?: number;
  readonly redirectStatus: 301 | 302 | 307 | 308; // default 308
  readonly rejectStatus: number; // default 426
  /** Host for requests without one (HTTP/1.0 without Host), as a URI authority host (IPv6 in brackets). */
  readonly canonicalHost?: string;
  readonly exempt: { readonly sources: readonly Cidr[]; readonly userAgents: readonly UserAgentPattern[] };
  /** Per-Host phase overrides, first match wins. */
  readonly names: readonly MigrationNameRule[];
}

/** A token bucket: `rate` new connections per second, up to `burst` at once. */
export interface RateLimitConfig {
  readonly rate: number;
  readonly burst: number; // default: rate
}

/** `limits` at top level (the process) or on a listener (docs/config.md). */
export interface LimitsConfig {
  readonly rate?: RateLimitConfig;
  /** Per client source (after a trusted PROXY header, the address it names). */
  readonly perSource?: { readonly maxConnections?: number; readonly rate?: RateLimitConfig };
}

/** `admin`: the admin listener (docs/admin.md). */
export interface AdminConfig {
  /** `host:port`, or a unix socket path (`unix:/run/twinport/admin.sock`). */
  readonly bind: { readonly text: string; readonly host: string; readonly port: number } | { readonly text: string; readonly path: string };
  /** Absolute path of the bearer token's file, read when the admin listener starts. */
  readonly tokenFile?: string;
}

export interface ListenerConfig {
  readonly name: string; // default: the bind text
  /** `fdName`: "fd:NAME", the inherited socket systemd names NAME (host '' and port 0 then). */
  readonly bind: { readonly text: string; readonly host: string; readonly port: number; readonly fdName?: string };
  readonly timeouts: ListenerTimeouts;
  readonly proxyProtocol?: { readonly trusted: readonly Cidr[] };
  readonly maxClientHello: number; // default 64 KiB
  readonly maxConnections?: number; // absent = unlimited
  readonly limits?: LimitsConfig;
  readonly routes: readonly RouteConfig[];
  /** Absent: no migration block, plaintext is spliced as routed (the `observe` behaviour, without a phase in the close line). */
  readonly migration?: MigrationConfig;
  /** At the peek deadline with bytes but no verdict: close (peek-timeout) or route them as `protocol: other` (fail-open). Default close. */
  readonly onPeekTimeout: 'close' | 'route';
}

export interface TwinportConfig {
  /** Absolute path of the file it came from, or "<demo>". */
  readonly source: string;
  readonly listeners: readonly ListenerConfig[];
  readonly pools: Readonly<Record<string, PoolConfig>>;
  readonly shutdownTimeout: number; // default 30s
  /** Connections at once per process, all listeners together; absent = what RLIMIT_NOFILE allows. */
  readonly maxConnections?: number;
  /** How sockets are driven (docs/io-engine.md); default auto. */
  readonly ioEngine: 'auto' | 'native' | 'libuv' | 'streams';
  readonly log: { readonly level: string; readonly rawBytes: boolean; readonly ja4: boolean };
  readonly limits?: LimitsConfig;
  /** Absent: no admin listener. */
  readonly admin?: AdminConfig;
  /** Where migration listeners' record of clients is kept (docs/migration.md). */
  readonly migrationStore: MigrationStoreConfig;
  readonly migrationRecord: MigrationRecordConfig;
}

/** `migration_store`: an embedded SQLite file, or a Redis shared by a fleet. */
export type MigrationStoreConfig =
  | { readonly kind: 'sqlite'; readonly path: string; readonly text: string }
  | { readonly kind: 'redis'; readonly url: string; readonly text: string };

/** `migration_record`. */
export interface MigrationRecordConfig {
  readonly flushInterval: number; // default 1s
  readonly retention: number; // default 30d
  readonly maxClients: number; // default 100000
  readonly maxNames: number; // default 10000
  readonly maxTlsStacks: number; // default 10000
  readonly redisPrefix: string; // default twinport:migration:
}
