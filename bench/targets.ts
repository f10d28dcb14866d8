// The targets a run compares, all routing plaintext → the HTTP backend and TLS → the HTTPS backend:
//   direct        no proxy: the client talks to backends' own ports (the ceiling)
//   twinport      this project, from its CLI (io_engine auto: native where the addon built, else libuv)
//   twinport-libuv    the same with io_engine: libuv (the native engine's fallback): the native gain, per cell
//   twinport-streams  the same with io_engine: streams (net.Socket), the fallback engine
//   twinport-admin    the same with an admin listener that the run scrapes (GET /metrics) once a second:
//                 the cost of metrics (docs/admin.md)
//   twinport-record   the same with `migration: { phase: observe }`: every connection recorded (SQLite store
//                 in the run's folder), the cost of the migration record (docs/migration.md)
//   haproxy       mode tcp, tcp-request inspect-delay, req.ssl_hello_type
//   nginx-stream  ssl_preread; $ssl_preread_protocol is "" for anything that is not a TLS hello
//   naive         bench/naive-proxy.ts: first byte + pipe() (the floor for a Node proxy)
//   twinport-w2   twinport --workers 2 (cluster, round-robin scheduling); twinport-w2-none: SCHED_NONE.
//                 Both run on every CPU: two workers pinned to one core would measure nothing.
//   twinport-base twinport from another checkout (`--baseline DIR`, built): before/after in one run
//   naive-raw     an experiment: bench/naive-raw-proxy.ts, the naive proxy on raw libuv handles (only with
//                 --only): what Node's net/stream layer costs
// Peers are used only when installed; otherwise the run says so.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backends } from './backends.js';
import { NGINX_MODULES, startBackends } from './backends.js';
import { freePort, hasCommand, spawnChild, waitForPort, type Child } from './children.js';

export const TARGET_NAMES = [
  'direct',
  'twinport',
  'twinport-libuv',
  'twinport-stage1',
  'twinport-streams',
  'twinport-record',
  'twinport-admin',
  'haproxy',
  'nginx-stream',
  'sslh',
  'naive',
  'twinport-w2',
  'twinport-w2-none',
  'twinport-base',
  'naive-raw',
] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface RunningTarget {
  readonly name: TargetName;
  /** Where plaintext clients connect. */
  readonly httpPort: number;
  /** Where TLS clients connect (the same port for every proxy: that is the point). */
  readonly tlsPort: number;
  /** The proxy process whose CPU and memory are measured; undefined for `direct`. */
  readonly child: Child | undefined;
  stop(): Promise<void>;
}

export interface TargetContext {
  readonly dir: string;
  readonly backends: Backends;
  readonly cpus: string | undefined;
  /** Descriptors the proxy may need: two per spliced connection (M1), plus slack. */
  readonly maxConnections: number;
  readonly nofile: number;
  /** Extra node flags for twinport (e.g. --cpu-prof). */
  readonly nodeFlags: readonly string[];
  /** Every CPU ("0-N"): where multi-process targets run. */
  readonly allCpus: string | undefined;
  /** A built twinport checkout to run as `twinport-base`. */
  readonly baselineDir?: string | undefined;
  /** Extra environment for `twinport-base` (`--base-env`). */
  readonly baseEnv?: Readonly<Record<string, string>>;
}

/** Why a target cannot run here, or undefined when it can. */
export function unavailable(name: TargetName): string | undefined {
  switch (name) {
    case 'haproxy':
      return hasCommand('haproxy') ? undefined : 'haproxy not installed (Debian: `apt-get install haproxy`)';
    case 'nginx-stream':
      if (!hasCommand('nginx')) return 'nginx not installed (Debian: `apt-get install nginx libnginx-mod-stream`)';
      return existsSync(join(NGINX_MODULES, 'ngx_stream_module.so'))
        ? undefined
        : `no ${NGINX_MODULES}/ngx_stream_module.so (Debian: \`apt-get install libnginx-mod-stream\`)`;
    case 'sslh':
      return hasCommand('sslh-select') ? undefined : 'sslh not installed (Debian: `apt-get install sslh`)';
    default:
      return undefined;
  }
}

/** Why a target is not part of this run unless asked for by name, or undefined when it is. */
export function notByDefault(name: TargetName, baselineDir: string | undefined): string | undefined {
  if (name === 'twinport-base' && baselineDir === undefined) return 'needs --baseline DIR';
  if (name === 'naive-raw') return 'an experiment on deprecated internals: only with --only';
  return undefined;
}

/** Why a target cannot run in this run even when named, or undefined when it can. */
export function cannotRun(name: TargetName, baselineDir: string | undefined): string | undefined {
  if (name === 'twinport-base' && baselineDir === undefined) return 'needs --baseline DIR';
  return unavailable(name);
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

function twinportYaml(port: number, b: Backends, engine: 'libuv' | 'streams' | undefined, record?: string, adminPort?: number): string {
  return `# generated by bench/targets.ts
${adminPort !== undefined ? `admin: { bind: "127.0.0.1:${adminPort}" }\n` : ''}${engine !== undefined ? `io_engine: ${engine}\n` : ''}${record !== undefined ? `migration_store: ${JSON.stringify(record)}\n` : ''}listeners:
  - name: bench
    bind: "127.0.0.1:${port}"
${record !== undefined ? '    migration: { phase: observe }\n' : ''}    routes:
      - match: { protocol: tls }
        to: https
      - match: { protocol: [http, h2c] }
        to: http
shutdown_timeout: 2s
pools:
  http:
    servers: ["127.0.0.1:${b.httpPort}"]
  https:
    servers: ["127.0.0.1:${b.httpsPort}"]
`;
}

function haproxyCfg(port: number, b: Backends, maxconn: number): string {
  return `# generated by bench/targets.ts
global
  maxconn ${maxconn}
  nbthread 1

defaults
  mode tcp
  timeout connect 3s
  timeout client 10m
  timeout server 10m

frontend bench
  bind 127.0.0.1:${port}
  # Wait (up to 5s) for a whole TLS hello or a whole HTTP request head before choosing.
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  tcp-request content accept if HTTP
  use_backend https if { req.ssl_hello_type 1 }
  default_backend http

backend http
  server http 127.0.0.1:${b.httpPort}

backend https
  server https 127.0.0.1:${b.httpsPort}
`;
}

function nginxStreamConf(dir: string, port: number, b: Backends, nofile: number): string {
  return `# generated by bench/targets.ts
load_module ${NGINX_MODULES}/ngx_stream_module.so;
user root;
worker_processes 1;
pid ${join(dir, 'stream-nginx.pid')};
error_log ${join(dir, 'stream-nginx.error.log')} warn;
worker_rlimit_nofile ${nofile};
events { worker_connections ${Math.max(1024, nofile - 100)}; }
stream {
  # ssl_preread leaves $ssl_preread_protocol empty when the first bytes are not a TLS ClientHello.
  map $ssl_preread_protocol $bench_upstream {
    ""      127.0.0.1:${b.httpPort};
    default 127.0.0.1:${b.httpsPort};
  }
  server {
    listen 127.0.0.1:${port};
    ssl_preread on;
    preread_timeout 5s;
    proxy_timeout 10m;
    proxy_pass $bench_upstream;
  }
}
`;
}

/** How a checkout starts twinport: its `bin` launcher when it has one, else node on the compiled CLI. */
function twinportCommand(root: string, nodeFlags: readonly string[], args: readonly string[]): [string, string[]] {
  const launcher = join(root, 'bin', 'twinport');
  if (nodeFlags.length === 0 && existsSync(launcher)) return [launcher, [...args]];
  return [process.execPath, [...nodeFlags, join(root, 'dist', 'src', 'cli', 'main.js'), ...args]];
}

async function spawnProxy(name: TargetName, ctx: TargetContext, port: number, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<RunningTarget> {
  const child = spawnChild(name, cmd, args, env === undefined ? { cpus: ctx.cpus } : { cpus: ctx.cpus, env });
  await waitForPort(port, child);
  return { name, httpPort: port, tlsPort: port, child, stop: () => child.stop() };
}

export async function startTarget(name: TargetName, ctx: TargetContext): Promise<RunningTarget> {
  const b = ctx.backends;
  if (name === 'direct') {
    // Its own backends, on the proxy's CPU: without a proxy the backends would otherwise share one core
    // with the load generator while every proxied target gets a second core, and direct would look slow.
    const own = await startBackends(join(ctx.dir, 'direct'), ctx.cpus, ctx.nofile, ctx.backends.kind === 'node');
    return { name, httpPort: own.httpPort, tlsPort: own.httpsPort, child: undefined, stop: () => own.child.stop() };
  }
  const port = await freePort();
  switch (name) {
    case 'twinport':
    case 'twinport-libuv':
    case 'twinport-stage1':
    case 'twinport-streams':
    case 'twinport-record':
    case 'twinport-admin':
    case 'twinport-w2':
    case 'twinport-w2-none':
    case 'twinport-base': {
      const file = join(ctx.dir, `${name}.yaml`);
      const adminPort = name === 'twinport-admin' ? await freePort() : undefined;
      writeFileSync(
        file,
        twinportYaml(
          port,
          b,
          name === 'twinport-streams' ? 'streams' : name === 'twinport-libuv' ? 'libuv' : undefined,
          name === 'twinport-record' ? join(ctx.dir, 'migration.db') : undefined,
          adminPort,
        ),
      );
      const root = name === 'twinport-base' ? ctx.baselineDir! : repoRoot;
      const args = ['--config', file, '--log-level', 'warn'];
      if (name === 'twinport-w2') args.push('--workers', '2', '--scheduling', 'rr');
      if (name === 'twinport-w2-none') args.push('--workers', '2', '--scheduling', 'none');
      const multi = name === 'twinport-w2' || name === 'twinport-w2-none';
      // twinport-stage1: the native engine with the connection path in JavaScript (only the splice in C).
      const env =
        name === 'twinport-base' && ctx.baseEnv !== undefined
          ? { ...process.env, ...ctx.baseEnv }
          : name === 'twinport-stage1'
            ? { ...process.env, TWINPORT_NATIVE_ACCEPT: 'off' }
            : undefined;
      const running = await spawnProxy(name, multi ? { ...ctx, cpus: ctx.allCpus } : ctx, port, ...twinportCommand(root, ctx.nodeFlags, args), env);
      if (adminPort === undefined) return running;
      // Scraped as a Prometheus server would, once a second, for the target's whole life: the proxy's
      // CPU then includes building every scrape.
      await waitForPort(adminPort, running.child);
      const scrape = setInterval(() => {
        fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text(), () => undefined).catch(() => undefined);
      }, 1000);
      return {
        ...running,
        stop: async () => {
          clearInterval(scrape);
          await running.stop();
        },
      };
    }
    case 'haproxy': {
      const file = join(ctx.dir, 'haproxy.cfg');
      // HAProxy refuses to start when it cannot get 2 × maxconn descriptors (plus a few): stay under.
      writeFileSync(file, haproxyCfg(port, b, Math.min(ctx.maxConnections + 20, Math.floor((ctx.nofile - 64) / 2))));
      return spawnProxy(name, ctx, port, 'haproxy', ['-db', '-f', file]);
    }
    case 'nginx-stream': {
      const file = join(ctx.dir, 'stream-nginx.conf');
      writeFileSync(file, nginxStreamConf(ctx.dir, port, b, ctx.nofile));
      return spawnProxy(name, ctx, port, 'nginx', ['-p', ctx.dir, '-c', file, '-g', 'daemon off;']);
    }
    case 'sslh': {
      // sslh-select: one process, select(2); sslh (sslh-fork) forks a process per connection. It cannot
      // hold more than FD_SETSIZE (1 024) descriptors, so M1 fails for it by design.
      return spawnProxy(name, ctx, port, 'sslh-select', ['-f', '-n', '-p', `127.0.0.1:${port}`, '--tls', `127.0.0.1:${b.httpsPort}`, '--http', `127.0.0.1:${b.httpPort}`]);
    }
    case 'naive':
    case 'naive-raw': {
      const script = fileURLToPath(new URL(name === 'naive' ? './naive-proxy.js' : './naive-raw-proxy.js', import.meta.url));
      const flags = name === 'naive' ? [] : ['--no-deprecation'];
      return spawnProxy(name, ctx, port, process.execPath, [...flags, script, String(port), String(b.httpPort), String(b.httpsPort)]);
    }
  }
}
