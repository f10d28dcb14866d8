// The `twinport` command (README.md), loaded by main.ts once the early signal handlers are in place.
import { Command, InvalidArgumentError, Option } from 'commander';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { checkConfigFile, ConfigError, formatIssue, loadConfigFile, buildDemoConfig } from '../config/load.js';
import type { TwinportConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { describeListenFds, INHERITED_ENV, takeListenFds, type InheritedSocket } from '../proxy/listen-fds.js';
import { PrimarySockets } from './primary-sockets.js';
import { runPrimary, type SchedulingPolicy } from './cluster.js';
import { exitOnStopSignals } from './early-signals.js';
import { configHash, describeError, wireLifecycle } from './lifecycle.js';
import { Notifier } from './notify.js';
import { takeStateFile } from './state-handoff.js';
import { runReloadCommand, runUpgradeCommand } from './upgrade-command.js';
import { runInspect } from './inspect.js';
import { runReport, type ReportCliOptions } from './report.js';
import { createLogger, type LogFormat } from './logger.js';
import { LocalAdmin } from '../admin/api.js';
import { ClusterAdmin, serveWorkerAdmin } from '../admin/cluster-admin.js';
import { createProxyMetrics } from '../admin/metrics.js';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import { addAdminCommands } from './admin-commands.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

interface RunOptions {
  readonly config?: string;
  readonly listen: string;
  /** Only when given: otherwise the config's `log.level` (default info) applies. */
  readonly logLevel?: string;
  readonly logFormat: LogFormat;
  readonly workers?: number;
  readonly scheduling: SchedulingPolicy;
  readonly pidFile?: string;
}

/** Made first thing in runProxy: a startup failure is also told to an upgrading parent (upgrade.ts). */
let notifier: Notifier | undefined;

function fail(message: string, code = 1): never {
  void notifier?.send({ ERROR: message.trim().replace(/\n/g, ' | ') });
  process.stderr.write(message.endsWith('\n') ? message : `${message}\n`);
  process.exit(code);
}


/**
 * The listening sockets this process inherited (systemd socket activation, or the twinport that spawned
 * it for an upgrade), or undefined. A cluster worker reads the primary's list: the descriptors are the
 * primary's, and net in a worker sends `listen({ fd })` to the primary, which opens its own.
 */
function inheritedSockets(): InheritedSocket[] | undefined {
  if (cluster.isWorker) {
    const text = process.env[INHERITED_ENV];
    return text === undefined ? undefined : (JSON.parse(text) as InheritedSocket[]);
  }
  const fds = takeListenFds(process.env, process.pid);
  if (fds === undefined) return undefined;
  const inherited = describeListenFds(fds);
  process.env[INHERITED_ENV] = JSON.stringify(inherited);
  return inherited;
}

async function runProxy(opts: RunOptions): Promise<void> {
  // A worker tells the primary, never the service manager (the primary speaks for the cluster).
  notifier = new Notifier(undefined, cluster.isWorker ? {} : process.env);
  // The config is read first: its `log.level` is the level unless --log-level was given.
  let fileConfig: TwinportConfig | undefined;
  if (opts.config !== undefined) {
    try {
      fileConfig = loadConfigFile(opts.config); // with --workers: fail fast, once, before forking
    } catch (e) {
      fail(describeError(e));
    }
  }
  const logger = await createLogger(opts.logLevel ?? fileConfig?.log.level ?? 'info', opts.logFormat);
  notifier.logger = logger;
  const inherited = inheritedSockets();
  const workers = opts.workers ?? 1;
  if (workers > 1 && cluster.isPrimary) {
    if (opts.config === undefined) fail('--workers needs --config (the demo runs in one process)');
    // Checked and bound once here, before forking, rather than as one identical error per worker.
    const sockets = new PrimarySockets(inherited);
    try {
      await sockets.ensure(fileConfig!.listeners, true);
    } catch (e) {
      fail(describeError(e));
    }
    // The one admin listener of the group is the primary's, up before any worker forks: a bind error
    // stops the start here.
    let adminServer: AdminServer | undefined;
    const admin = fileConfig?.admin;
    const clusterAdmin = admin === undefined ? undefined : new ClusterAdmin(logger);
    if (admin !== undefined && clusterAdmin !== undefined) {
      try {
        adminServer = await startAdminServer(admin, clusterAdmin, logger);
      } catch (e) {
        fail(describeError(e));
      }
    }
    runPrimary({
      workers,
      scheduling: opts.scheduling,
      logger,
      notifier,
      config: fileConfig!,
      configFile: opts.config,
      sockets,
      upgradeArgs: process.argv.slice(2),
      ...(opts.pidFile !== undefined && { pidFile: opts.pidFile }),
      ...(admin !== undefined &&
        clusterAdmin !== undefined && {
          adminForUpgrade: {
            release: async () => {
              await adminServer?.close();
              adminServer = undefined;
            },
            reclaim: async () => {
              adminServer = await startAdminServer(admin, clusterAdmin, logger);
            },
          },
        }),
    });
    logger.info({ version: pkg.version, node: process.version }, 'primary running');
    return;
  }
  let config: TwinportConfig;
  let closeDemo: () => Promise<void> = async () => {};
  if (fileConfig !== undefined) {
    config = fileConfig;
  } else {
    // Loaded only for the demo: certificate generation pulls in a large ASN.1 stack.
    const { startDemoBackends } = await import('../demo/backends.js');
    const backends = await startDemoBackends();
    closeDemo = () => backends.close();
    try {
      config = buildDemoConfig({ listen: opts.listen, httpBackend: backends.http, httpsBackend: backends.https });
    } catch (e) {
      fail(describeError(e));
    }
  }
  const handed = takeStateFile();
  if (handed.problem !== undefined) logger.warn({ problem: handed.problem }, 'upgrade state not read: health and affinity start over');
  else if (handed.state !== undefined) {
    logger.info({ servers: handed.state.health.length, affinityPools: Object.keys(handed.state.affinity).length }, 'upgrade state taken over');
  }
  const runtime = new ProxyRuntime(config, logger, { ...(inherited !== undefined && { inherited }), ...(handed.state !== undefined && { state: handed.state }) });
  runtime.configHash = configHash(opts.config);
  // Before start: the metrics count every connection's outcome from the first one on.
  const metrics = config.admin === undefined ? undefined : createProxyMetrics(runtime);
  let adminServer: AdminServer | undefined;
  try {
    await runtime.start();
    if (config.admin !== undefined && metrics !== undefined) {
      const local = new LocalAdmin(runtime, metrics.registry, { version: pkg.version, configFile: opts.config ?? '<demo>', workers });
      if (cluster.isWorker) serveWorkerAdmin(local);
      else adminServer = await startAdminServer(config.admin, local, logger);
    }
  } catch (e) {
    await closeDemo();
    fail(describeError(e));
  }
  const onExit = async (): Promise<void> => {
    await adminServer?.close();
    await closeDemo();
  };
  const admin = config.admin;
  wireLifecycle({
    runtime,
    logger,
    configFile: opts.config,
    onExit,
    levelFromConfig: opts.logLevel === undefined,
    notifier,
    ...(opts.config !== undefined && { upgradeArgs: process.argv.slice(2) }),
    ...(opts.pidFile !== undefined && !cluster.isWorker && { pidFile: opts.pidFile }),
    ...(admin !== undefined &&
      metrics !== undefined &&
      !cluster.isWorker && {
        adminForUpgrade: {
          release: async () => {
            await adminServer?.close();
            adminServer = undefined;
          },
          reclaim: async () => {
            const local = new LocalAdmin(runtime, metrics.registry, { version: pkg.version, configFile: opts.config ?? '<demo>', workers });
            adminServer = await startAdminServer(admin, local, logger);
          },
        },
      }),
  });
  // Which build serves: after a binary upgrade, the new process's line says so.
  logger.info({ version: pkg.version, node: process.version, connections: runtime.activeConnections }, 'ready');
  if (opts.config === undefined) {
    const a = runtime.addresses().get('demo');
    const where = a === undefined ? opts.listen : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    process.stderr.write(
      [
        '',
        `twinport demo: one port (${where}), two backends. Try:`,
        `  curl http://${where}/`,
        `  curl -k https://${where}/`,
        `  curl --http2-prior-knowledge http://${where}/   (h2c)`,
        `  curl -k https://localhost:${a?.port ?? ''}/   (SNI "localhost")`,
        'Each backend answers which one it is and what twinport saw. Ctrl-C stops.',
        '',
      ].join('\n'),
    );
  }
}

function parseWorkers(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError('a whole number from 1 to 256');
  return n;
}

const logOptions = (cmd: Command): Command =>
  cmd
    .addOption(new Option('--workers <n>', 'proxy processes sharing the listeners (node:cluster)').argParser(parseWorkers))
    .addOption(new Option('--scheduling <policy>', 'with --workers: rr (primary hands out connections) or none (workers accept)').choices(['rr', 'none']).default('rr'))
    .addOption(new Option('--log-level <level>', 'pino log level (default: the config\'s log.level, else info)').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .addOption(new Option('--log-format <format>', 'log output').choices(['json', 'pretty']).default('json'))
    .addOption(new Option('--pid-file <file>', 'write the serving pid here once ready (after an upgrade: the new pid); `twinport upgrade --pid-file` reads it'));

const program = new Command();
program
  .name('twinport')
  .description('One port, both protocols: peeks TLS / HTTP / h2c / PROXY and splices each connection to its pool, never decrypting.')
  .version(pkg.version)
  .option('-c, --config <file>', 'run the proxy from this YAML file (without it: the embedded demo)')
  .option('--listen <host:port>', 'demo listen address', '127.0.0.1:8080')
  .enablePositionalOptions();
logOptions(program).action(async (opts: RunOptions) => runProxy(opts));

logOptions(program.command('run').description('run the proxy from a config file').requiredOption('-c, --config <file>', 'YAML config file'))
  .option('--listen <host:port>', 'ignored with --config', '127.0.0.1:8080')
  .action(async (opts: RunOptions) => runProxy(opts));

program
  .command('check <file>')
  .description('validate a config file: exit 0 with a summary, or 1 with every error as FILE:LINE:COL key.path: message')
  .action((file: string) => {
    exitOnStopSignals();
    const r = checkConfigFile(file);
    if (r.ok) {
      process.stdout.write(`${r.summary}\n`);
      process.exit(0);
    }
    fail(r.lines.join('\n'));
  });

program
  .command('upgrade')
  .description('binary upgrade of a running twinport: SIGUSR2, then wait until the new process is ready (with --pid-file) and report its pid')
  .option('--pid-file <file>', 'the running twinport\'s --pid-file: the outcome is awaited and reported')
  .option('--pid <pid>', 'the running twinport\'s pid: the signal is sent, the outcome is in its log')
  .option('--timeout <seconds>', 'how long to wait for the outcome', '90')
  .action(async (opts: { pidFile?: string; pid?: string; timeout: string }) => {
    exitOnStopSignals();
    const r = await runUpgradeCommand(opts);
    process.stdout.write(`${r.message}\n`);
    process.exit(r.code);
  });

program
  .command('reload')
  .description('SIGHUP a running twinport and wait for the outcome; --restart-workers replaces a cluster\'s workers one at a time')
  .requiredOption('--pid-file <file>', 'the running twinport\'s --pid-file')
  .option('--restart-workers', 'replace every worker even when the config did not change (e.g. after a Node update)')
  .option('--timeout <seconds>', 'how long to wait for the outcome', '120')
  .action(async (opts: { pidFile: string; restartWorkers?: boolean; timeout: string }) => {
    exitOnStopSignals();
    const r = await runReloadCommand(opts);
    process.stdout.write(`${r.message}\n`);
    process.exit(r.code);
  });

program
  .command('inspect [file]')
  .description('print what twinport would see in a captured first flight (raw bytes, or hex text with --hex; "-" or nothing reads stdin)')
  .option('--hex', 'the input is hex text')
  .option('--final', 'treat the input as complete (default for files)')
  .option('--no-final', 'the input may be a prefix: need-more is a possible answer')
  .action(async (file: string | undefined, opts: { hex?: boolean; final?: boolean }) => {
    exitOnStopSignals();
    try {
      process.stdout.write(`${await runInspect(file, { ...(opts.hex !== undefined && { hex: opts.hex }), ...(opts.final !== undefined && { final: opts.final }) })}\n`);
    } catch (e) {
      fail(describeError(e));
    }
  });

addAdminCommands(program, fail);
program
  .command('report')
  .description('who still speaks plaintext on migration listeners, and whether it is safe to turn it off: exit 0 when every name is safe (or has no traffic), 3 when not')
  .option('-c, --config <file>', 'read the store of this config (migration_store)')
  .option('--store <path|url>', 'read this SQLite file or redis:// URL')
  .option('--admin <url>', "read a running instance's admin API (GET /migration)")
  .option('--token-file <file>', 'bearer token for --admin (default: $TWINPORT_ADMIN_TOKEN)')
  .option('--since <period>', 'window for counts and clients (units ms, s, m, h, d)', '24h')
  .option('--quiet-for <period>', 'how long without non-exempt plaintext makes a name safe', '24h')
  .option('--name <name>', 'only this Host/SNI (repeatable)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
  .addOption(new Option('--format <format>', 'output').choices(['table', 'json', 'csv']).default('table'))
  .action(async (opts: ReportCliOptions) => {
    try {
      const { text, exitCode } = await runReport(opts);
      // Not process.exit: a long report on a pipe must be written out before the process ends.
      process.exitCode = exitCode;
      process.stdout.write(`${text}\n`);
    } catch (e) {
      fail(describeError(e));
    }
  });

program.parseAsync(process.argv).catch((e: unknown) => fail(describeError(e)));
