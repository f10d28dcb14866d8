// The one definition of the YAML config's shape (docs/config.md). ajv validates the structure against it
// (src/config/schema-issues.ts); the published docs/twinport.schema.json is generated from it by
// scripts/write-schema.mjs; test/config/schema-file.test.ts fails when the two differ. Values whose meaning
// needs more than a JSON Schema can say (durations, sizes, addresses, name patterns, CIDRs, cross-references)
// are compiled and checked in src/config/compile.ts, which reports the precise message for them.
import { Type, type TSchema } from '@sinclair/typebox';
import { OTHER_PROTOCOL_NAMES } from '../protocol/other-probes.js';

/** A string enum as `{ type: "string", enum }`: ajv then reports one "must be one of" instead of N consts. */
function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

export const MATCH_PROTOCOLS = ['tls', 'http', 'h2c', 'other', 'silent'] as const;
export const BALANCE_KINDS = ['round-robin', 'least-conn', 'random', 'first', 'hash'] as const;
export const HASH_KEYS = ['source-ip', 'sni', 'host', 'sni+source-ip'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const IO_ENGINES = ['auto', 'native', 'libuv', 'streams'] as const;
export const MIGRATION_PHASES = ['observe', 'redirect', 'reject'] as const;
export const REDIRECT_STATUSES = [301, 302, 307, 308] as const;

// The patterns are a courtesy to editors; compile.ts is stricter and words the error.
const Duration = (description: string) =>
  Type.String({ description: `${description} A number and a unit: ms, s, m, h (250ms, 5s, 1.5s, 10m, 1h).`, pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' });

const Size = (description: string) =>
  Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: '^[0-9]+(B|KiB|MiB)?$' })], {
    description: `${description} Bytes as an integer, or with a binary unit: B, KiB (1024), MiB (1048576).`,
  });

const NamePatterns = (what: string) =>
  Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
    description: `${what}: exact name (case-insensitive, trailing dot ignored), "*.example.com" (one label), "~regex" (RE2 syntax, case-insensitive); or a list of them.`,
  });

const CidrList = (description: string) => Type.Array(Type.String(), { minItems: 1, description });

const Match = Type.Object(
  {
    protocol: Type.Optional(
      Type.Union([StringEnum(MATCH_PROTOCOLS), Type.Array(StringEnum(MATCH_PROTOCOLS), { minItems: 1, uniqueItems: true })], {
        description: 'tls | http | h2c | other | silent, or a list of them.',
      }),
    ),
    sni: Type.Optional(
      Type.Union([Type.Null(), Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
        description: 'TLS server name: exact, "*.example.com", "~regex" (RE2 syntax, case-insensitive), or a list; null matches TLS without SNI.',
      }),
    ),
    alpn: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 255 }), {
        minItems: 1,
        description: 'ALPN protocol names; matches when the client offers any of them (RFC 7301).',
      }),
    ),
    host: Type.Optional(NamePatterns('Plaintext HTTP/1 Host header without port')),
    source: Type.Optional(CidrList('CIDR blocks the client address must be in.')),
    other: Type.Optional(
      Type.Union([StringEnum(OTHER_PROTOCOL_NAMES), Type.Array(StringEnum(OTHER_PROTOCOL_NAMES), { minItems: 1, uniqueItems: true })], {
        description: 'A recognised non-TLS, non-HTTP protocol by name: ssh, socks5, openvpn, adb, xmpp, or a list. Only with protocol other.',
      }),
    ),
  },
  { additionalProperties: false, description: 'All given keys must hold. {} matches every connection.' },
);

const Route = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, description: 'Shown in logs instead of the route index.' })),
    match: Match,
    to: Type.String({ minLength: 1, description: 'The pool that receives matching connections.' }),
  },
  { additionalProperties: false },
);

const Timeouts = Type.Object(
  {
    peek: Type.Optional(Duration('Time allowed to get enough bytes for a verdict. Default 5s.')),
    connect: Type.Optional(Duration('Per server attempt. Default 3s.')),
    idle: Type.Optional(Duration('No bytes either way for this long closes the connection. Default 1h.')),
    silent: Type.Optional(Duration('Client sent nothing this long: the protocol: silent route. Default 3s.')),
    client_fin: Type.Optional(Duration('Once the client has sent its FIN, the half-closed pair lives at most this long. Default: no bound but idle.')),
    server_fin: Type.Optional(Duration('Once the server has sent its FIN, the half-closed pair lives at most this long. Default: no bound but idle.')),
  },
  { additionalProperties: false },
);

const MigrationPhase = (description: string) => StringEnum(MIGRATION_PHASES, { description });

const Migration = Type.Object(
  {
    phase: Type.Optional(
      MigrationPhase('observe: splice plaintext as routed; redirect: answer HTTP/1 with a redirect to https; reject: answer with an error. Default observe.'),
    ),
    https_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Port in the redirect Location (omitted when 443). Default: the port the client connected to.' })),
    redirect_status: Type.Optional(
      Type.Unsafe<(typeof REDIRECT_STATUSES)[number]>({ type: 'integer', enum: [...REDIRECT_STATUSES], description: '301 | 302 | 307 | 308. Default 308 (keeps method and body).' }),
    ),
    reject_status: Type.Optional(Type.Integer({ minimum: 400, maximum: 599, description: 'Status of the reject answer. Default 426 (Upgrade Required).' })),
    canonical_host: Type.Optional(Type.String({ minLength: 1, description: 'Host for the redirect of a request without Host (HTTP/1.0). Default: none, such requests are rejected.' })),
    exempt: Type.Optional(
      Type.Object(
        {
          sources: Type.Optional(CidrList('Client CIDRs (after a trusted PROXY header) still spliced in redirect and reject.')),
          user_agents: Type.Optional(
            Type.Array(Type.String({ minLength: 1 }), {
              minItems: 1,
              description: 'User-Agent values still spliced in redirect and reject: the whole value exactly, or "~regex" (RE2, case-insensitive).',
            }),
          ),
        },
        { additionalProperties: false, description: 'Known stragglers: spliced whatever the phase, logged as exempt.' },
      ),
    ),
    names: Type.Optional(
      Type.Array(
        Type.Object(
          {
            match: NamePatterns('The request Host without port'),
            phase: MigrationPhase('The phase for requests to these names.'),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, description: 'Per-Host phase overrides; the first match wins.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'Moving this port from plaintext HTTP to HTTPS (docs/migration.md). TLS is never touched.' },
);

const RateFields = {
  rate: Type.Optional(Type.Integer({ minimum: 1, description: 'New connections per second (token bucket).' })),
  burst: Type.Optional(Type.Integer({ minimum: 1, description: 'Connections the bucket lets through at once. Default: rate. Only with rate.' })),
};

const Limits = Type.Object(
  {
    ...RateFields,
    per_source: Type.Optional(
      Type.Object(
        {
          max_connections: Type.Optional(Type.Integer({ minimum: 1, description: 'Open connections allowed at once from one source.' })),
          ...RateFields,
        },
        { additionalProperties: false, description: 'Per client address (after a trusted PROXY header, the address it names).' },
      ),
    ),
  },
  { additionalProperties: false, description: 'Connection rate limits and per-source limits; refused connections close with reason limit.' },
);

const Admin = Type.Object(
  {
    bind: Type.String({ description: '"127.0.0.1:9901", "[::1]:9901" or "unix:/run/twinport/admin.sock". Never a data listener\'s address.' }),
    token_file: Type.Optional(Type.String({ minLength: 1, description: 'File holding the bearer token; when set, every request needs it.' })),
  },
  { additionalProperties: false, description: 'The admin listener: metrics, status, control API and dashboard (docs/admin.md). Off when absent.' },
);

const Listener = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, description: 'Unique; used in logs and metrics. Default: the bind text.' })),
    bind: Type.String({ description: '"host:port" or "[v6]:port"; port 0 picks a free port. "fd:NAME": the inherited socket named NAME (systemd FileDescriptorName=).' }),
    timeouts: Type.Optional(Timeouts),
    proxy_protocol: Type.Optional(
      Type.Object(
        { trusted: CidrList('Sources allowed (and required) to send a PROXY v1/v2 header.') },
        { additionalProperties: false },
      ),
    ),
    max_client_hello: Type.Optional(Size('Cap on bytes buffered while peeking: 512 bytes to 1MiB. Default 64KiB.')),
    max_connections: Type.Optional(Type.Integer({ minimum: 1, description: 'Open connections allowed at once. Default: unlimited.' })),
    limits: Type.Optional(Limits),
    routes: Type.Array(Route, { minItems: 1, description: 'First match wins; no match closes with reason no-route.' }),
    migration: Type.Optional(Migration),
    on_peek_timeout: Type.Optional(
      StringEnum(['close', 'route'] as const, {
        description: 'At the peek deadline, bytes that got no verdict: close (reason peek-timeout) or route them to the protocol: other route (fail-open). Default close.',
      }),
    ),
  },
  { additionalProperties: false },
);

const ServerObject = Type.Object(
  {
    address: Type.String({ description: '"host:port", "[v6]:port" or "unix:/absolute/path".' }),
    weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 256, description: '0 to 256; 0 drains. Default 1.' })),
    send_proxy: Type.Optional(StringEnum(['v1', 'v2'] as const, { description: 'Send a PROXY header of this version first.' })),
    backup: Type.Optional(Type.Boolean({ description: 'Used only when no other server is available. Default false.' })),
    max_connections: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Connections at once to this server (HAProxy maxconn); a full server is skipped, and when every server is full new connections wait in the pool queue. Default unlimited.' }),
    ),
  },
  { additionalProperties: false, title: 'a mapping { address, weight, send_proxy, backup, max_connections }' },
);

/** Bounds shared with compile.ts, which words the errors for what the schema cannot say. */
export const HEALTH_TYPES = ['tcp', 'tls', 'http'] as const;
export const HEALTH_COUNT_MAX = 100;
export const AFFINITY_TABLE_MAX = 10_000_000;

const HealthCount = (description: string) => Type.Integer({ minimum: 1, maximum: HEALTH_COUNT_MAX, description });

const Health = Type.Object(
  {
    type: StringEnum(HEALTH_TYPES, { description: 'tcp: connect; tls: a full TLS handshake; http: GET path, status in expect_status.' }),
    interval: Type.Optional(Duration('Time between two checks of one server; at least 100ms. Default 2s.')),
    timeout: Type.Optional(Duration('Bound on one check; shorter than interval. Default 1s, or half the interval when that is shorter.')),
    rise: Type.Optional(HealthCount('Consecutive successes that mark a down server up. Default 2.')),
    fall: Type.Optional(HealthCount('Consecutive failures that mark an up server down. Default 3.')),
    sni: Type.Optional(Type.String({ minLength: 1, description: 'type: tls only. The server name to send (RFC 6066 §3). Default: none.' })),
    alpn: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { minItems: 1, description: 'type: tls only. ALPN protocols to offer (RFC 7301).' }),
    ),
    path: Type.Optional(Type.String({ minLength: 1, description: 'type: http only. Request target, starting with "/". Default "/".' })),
    host: Type.Optional(Type.String({ minLength: 1, description: 'type: http only. Host header. Default: the server address.' })),
    expect_status: Type.Optional(
      Type.Array(
        Type.Union(
          [
            Type.Integer({ minimum: 100, maximum: 599, title: 'a status code' }),
            Type.String({ pattern: '^[0-9]{3}(-[0-9]{3})?$', title: 'a range such as "200-399"' }),
          ],
          {
            description: 'A status code (100 to 599) or a range "200-399".',
          },
        ),
        { minItems: 1, description: 'type: http only. Accepted status codes and ranges. Default ["200-399"].' },
      ),
    ),
  },
  { additionalProperties: false, description: 'Active health checks of every server of the pool, backups too.' },
);

const PassiveHealth = Type.Object(
  {
    fall: Type.Optional(HealthCount('Consecutive connect failures that take a server out. Default 3.')),
    down_for: Type.Optional(Duration('How long it stays out before it is tried again. Default 10s.')),
  },
  { additionalProperties: false, description: 'Take a server out after consecutive failed connects by client connections.' },
);

const AffinityTable = Type.Object(
  {
    size: Type.Optional(Type.Integer({ minimum: 1, maximum: AFFINITY_TABLE_MAX, description: 'Most entries kept for the pool. Default 100000.' })),
    ttl: Type.Optional(Duration('How long a ticket key name entry is kept after its last use. Default 1h.')),
    sid_ttl: Type.Optional(Duration('How long a TLS <= 1.2 session ID entry is kept after its last use (locally and in Redis). Default 5m.')),
  },
  { additionalProperties: false, description: 'Only with affinity: tls.' },
);

const AffinityStore = Type.Object(
  {
    redis: Type.String({ minLength: 1, description: 'redis://host:port/db or rediss://host:port/db.' }),
    timeout: Type.Optional(Duration('Bound on one lookup; at most 1s. Default 5ms.')),
    prefix: Type.Optional(Type.String({ minLength: 1, description: 'Key prefix. Default "twinport:affinity:".' })),
  },
  { additionalProperties: false, description: 'Only with affinity: tls. Share the learned table through Redis.' },
);

const Pool = Type.Object(
  {
    balance: Type.Optional(StringEnum(BALANCE_KINDS, { description: 'Default round-robin.' })),
    hash_key: Type.Optional(StringEnum(HASH_KEYS, { description: 'Required with balance: hash, and only then.' })),
    affinity: Type.Optional(StringEnum(['tls'] as const, { description: 'Learn TLS session IDs / ticket key names → server.' })),
    affinity_table: Type.Optional(AffinityTable),
    affinity_store: Type.Optional(AffinityStore),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'Extra server attempts. Default: servers − 1.' })),
    health: Type.Optional(Health),
    passive_health: Type.Optional(PassiveHealth),
    on_down: Type.Optional(
      StringEnum(['keep', 'close'] as const, {
        description: 'When health marks a server down: keep its spliced connections (default) or close them. Only with health or passive_health.',
      }),
    ),
    queue: Type.Optional(
      Type.Object(
        {
          size: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Connections that may wait for a server slot; past it they close with reason limit. Default 1024.' })),
          timeout: Type.Optional(Duration('How long a connection waits for a slot before it closes with queue-timeout (HAProxy timeout queue). Default 5s.')),
        },
        { additionalProperties: false, description: 'Only used when some server has max_connections.' },
      ),
    ),
    servers: Type.Array(Type.Union([Type.String({ title: 'a "host:port" string' }), ServerObject]), { minItems: 1 }),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    listeners: Type.Array(Listener, { minItems: 1 }),
    pools: Type.Object({}, { additionalProperties: Pool, minProperties: 1, description: 'Pool name → pool.' }),
    shutdown_timeout: Type.Optional(Duration('On SIGTERM, how long spliced connections may finish. Default 30s.')),
    max_connections: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Open connections allowed at once in each process, all listeners together. Default: what RLIMIT_NOFILE allows.' }),
    ),
    limits: Type.Optional(Limits),
    admin: Type.Optional(Admin),
    io_engine: Type.Optional(
      StringEnum(IO_ENGINES, { description: 'native (the C splice addon once a pair is connected), libuv (Node stream handles driven directly), streams (net.Socket) or auto (native where it built, else libuv where available, else streams). Default auto.' }),
    ),
    migration_store: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'Where the record of clients of migration listeners is kept: a SQLite file path (relative to the config file) or redis://host:port/db to share one record across a fleet. Default ./twinport-state/migration.db.',
      }),
    ),
    migration_record: Type.Optional(
      Type.Object(
        {
          flush_interval: Type.Optional(Duration('How often the record is written to the store (a kill -9 loses at most this much). Default 1s.')),
          retention: Type.Optional(
            Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$', description: 'How long per-minute counts and clients are kept. Units ms, s, m, h, d. Default 30d.' }),
          ),
          max_clients: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'Plaintext clients kept (least recently seen evicted first). Default 100000.' })),
          max_names: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Distinct names per listener a process records; names beyond are counted under "*". Default 10000.' }),
          ),
          max_tls_stacks: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'TLS client stacks (name, JA4) kept. Default 10000.' })),
          redis_prefix: Type.Optional(Type.String({ minLength: 1, description: 'Key prefix in a Redis store. Default "twinport:migration:".' })),
        },
        { additionalProperties: false, description: 'The record of clients of migration listeners (docs/migration.md).' },
      ),
    ),
    log: Type.Optional(
      Type.Object(
        {
          level: Type.Optional(StringEnum(LOG_LEVELS, { description: 'Default info.' })),
          raw_bytes: Type.Optional(Type.Boolean({ description: 'Log peeked bytes (hex) at debug level. Default false.' })),
          ja4: Type.Optional(Type.Boolean({ description: 'Put the JA4 fingerprint of every TLS hello in its close line (costs 4–6 µs a hello). Default false.' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);


/** The text of docs/twinport.schema.json. */
export function renderSchemaJson(): string {
  const doc = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'twinport configuration',
    ...(ConfigSchema as object),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Every key path the schema allows, as written in docs/config.md: `listeners[].timeouts.peek`,
 * `pools.<name>.servers[].weight`. Object forms inside unions contribute their keys.
 */
export function schemaKeyPaths(schema: TSchema = ConfigSchema, prefix = ''): string[] {
  const out: string[] = [];
  const s = schema as Record<string, unknown>;
  const props = s['properties'] as Record<string, TSchema> | undefined;
  if (props !== undefined) {
    for (const [key, sub] of Object.entries(props)) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      out.push(path, ...schemaKeyPaths(sub, path));
    }
  }
  const additional = s['additionalProperties'];
  if (typeof additional === 'object' && additional !== null) out.push(...schemaKeyPaths(additional as TSchema, `${prefix}.<name>`));
  const items = s['items'];
  if (typeof items === 'object' && items !== null) out.push(...schemaKeyPaths(items as TSchema, `${prefix}[]`));
  const anyOf = s['anyOf'] as TSchema[] | undefined;
  if (anyOf !== undefined) for (const branch of anyOf) out.push(...schemaKeyPaths(branch, prefix));
  return [...new Set(out)];
}
