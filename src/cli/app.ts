// The `twinport` command (README.md), loaded by main.ts once the early signal handlers are in place.
import { Command, InvalidArgumentError, Option } from 'commander';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { checkConfigFile, ConfigError, formatIssue, loadConfigFile, buildDemoConfig } from '../config/load.js';
import type { TwinportConfig } from '../config/types.js';
import { TwinportError } from '../errors.js';
import { ProxyRuntime } from '../proxy/runtime.js';
import { runPrimary, type SchedulingPolicy } from './cluster.js';
import { setHangupHandler } from './early-signals.js';
import { runInspect } from './inspect.js';
import { runReport, type ReportCliOptions } from './report.js';
import { createLogger, type LogFormat } from './logger.js';
import { createHash } from 'node:crypto';
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
}

/** SHA-256 of the config file's text, first 16 hex digits (`/status`, metric twinport_config_info). */
function configHash(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
  } catch {
    return undefined;
  }
}

function fail(message: string, code = 1): never {
  process.stderr.write(message.endsWith('\n') ? message : `${message}\n`);
  process.exit(code);
}

function describeError(e: unknown): string {
  if (e instanceof ConfigError) return e.issues.map(formatIssue).join('\n') || e.message;
  if (e instanceof TwinportError) return `${e.code}: ${e.message}`;
  return String((e as Error)?.stack ?? e);
}

/** SIGTERM/SIGINT: graceful shutdown then exit 0. SIGHUP: reload the file, keep the old config on error. */
function wireSignals(
  runtime: ProxyRuntime,
  logger: Logger,
  configFile: string | undefined,
  onExit: () => Promise<void>,
  levelFromConfig: boolean,
): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, connections: runtime.activeConnections }, 'shutting down');
    void runtime
      .shutdown()
      .then(onExit)
      .then(() => {
        const migration = runtime.migrationRecordStats();
        logger.info(
          { closes: runtime.stats.closes, acceptErrors: runtime.stats.acceptErrors, affinity: runtime.affinityStats(), ...(migration !== undefined && { migration }) },
          'stopped',
        );
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  setHangupHandler(() => {
    if (configFile === undefined) {
      logger.warn('SIGHUP ignored: the demo has no config file to reload');
      return;
    }
    let next: TwinportConfig;
    try {
      next = loadConfigFile(configFile);
    } catch (e) {
      const issues = e instanceof ConfigError ? e.issues.map(formatIssue) : [describeError(e)];
      runtime.noteReloadFailure(issues);
      logger.error({ file: configFile, errors: issues }, 'reload failed: keeping the running config');
      return;
    }
    if (JSON.stringify(next.admin ?? null) !== JSON.stringify(runtime.currentConfig.admin ?? null)) {
      logger.warn({ file: configFile }, 'admin changes need a restart: keeping the running admin listener');
    }
    const hash = configHash(configFile);
    runtime.reload(next).then(
      () => {
        runtime.configHash = hash;
        // A reloaded `log.level` applies too, unless --log-level fixed it for the process's life.
        if (levelFromConfig) logger.level = next.log.level;
        logger.info({ file: configFile }, 'reloaded');
      },
      (e: unknown) => logger.error({ file: configFile, err: describeError(e) }, 'reload failed: keeping the running config'),
    );
  });
}

async function runProxy(opts: RunOptions): Promise<void> {
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
  const workers = opts.workers ?? 1;
  if (workers > 1 && cluster.isPrimary) {
    if (opts.config === undefined) fail('--workers needs --config (the demo runs in one process)');
    // The one admin listener of the group is the primary's, up before any worker forks: a bind error
    // stops the start here.
    if (fileConfig?.admin !== undefined) {
      try {
        await startAdminServer(fileConfig.admin, new ClusterAdmin(logger), logger);
      } catch (e) {
        fail(describeError(e));
      }
    }
    runPrimary({ workers, scheduling: opts.scheduling, logger });
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
  const runtime = new ProxyRuntime(config, logger);
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
  wireSignals(runtime, logger, opts.config, onExit, opts.logLevel === undefined);
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
    .addOption(new Option('--log-format <format>', 'log output').choices(['json', 'pretty']).default('json'));

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
    const r = checkConfigFile(file);
    if (r.ok) {
      process.stdout.write(`${r.summary}\n`);
      process.exit(0);
    }
    fail(r.lines.join('\n'));
  });

program
  .command('inspect [file]')
  .description('print what twinport would see in a captured first flight (raw bytes, or hex text with --hex; "-" or nothing reads stdin)')
  .option('--hex', 'the input is hex text')
  .option('--final', 'treat the input as complete (default for files)')
  .option('--no-final', 'the input may be a prefix: need-more is a possible answer')
  .action(async (file: string | undefined, opts: { hex?: boolean; final?: boolean }) => {
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
