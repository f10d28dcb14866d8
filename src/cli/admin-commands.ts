// `twinport status | pools | drain POOL SERVER | ready POOL SERVER | maint POOL SERVER`: the admin API
// from a shell (docs/admin.md). The target is --admin URL, else the `admin.bind` of --config FILE, else
// http://127.0.0.1:9901; the token is --token-file FILE, else $TWINPORT_ADMIN_TOKEN, else the config's
// admin.token_file.
import type { Command } from 'commander';
import { readToken } from '../admin/server.js';
import { adminRequest, type AdminTarget } from '../admin/client.js';
import { loadConfigFile } from '../config/load.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9901';

interface TargetOptions {
  readonly admin?: string;
  readonly tokenFile?: string;
  readonly config?: string;
  readonly json?: boolean;
}

function resolveTarget(opts: TargetOptions): AdminTarget {
  let url = opts.admin;
  let tokenFile = opts.tokenFile;
  if (opts.config !== undefined && (url === undefined || tokenFile === undefined)) {
    const admin = loadConfigFile(opts.config).admin;
    if (admin !== undefined) {
      const b = admin.bind;
      url ??= 'path' in b ? b.text : `http://${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port}`;
      if (process.env['TWINPORT_ADMIN_TOKEN'] === undefined) tokenFile ??= admin.tokenFile;
    }
  }
  const token = tokenFile !== undefined ? readToken(tokenFile) : process.env['TWINPORT_ADMIN_TOKEN']?.trim() || undefined;
  return { url: url ?? DEFAULT_ADMIN_URL, ...(token !== undefined && { token }) };
}

/** The API's error as one line; the process's exit code is the caller's (the CLI's `fail`). */
function errorLine(status: number, body: unknown, text: string): string {
  const b = body as { code?: string; message?: string } | undefined;
  return typeof b === 'object' && b?.message !== undefined ? `${status} ${b.code ?? ''}: ${b.message}` : `${status}: ${text.trim()}`;
}

interface ServerRow {
  address: string;
  weight: number;
  state: string;
  backup: boolean;
  health: { up: boolean; checked: boolean; active?: { lastCheck?: { detail: string } } };
  activeConnections: number;
  totalConnections: number;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function poolsText(pools: { name: string; balance: string; servers: ServerRow[] }[]): string {
  const rows = [['POOL', 'SERVER', 'STATE', 'HEALTH', 'WEIGHT', 'ACTIVE', 'TOTAL', 'LAST CHECK']];
  for (const p of pools) {
    for (const s of p.servers) {
      rows.push([
        p.name,
        s.address + (s.backup ? ' (backup)' : ''),
        s.state,
        s.health.checked ? (s.health.up ? 'up' : 'DOWN') : 'up (unchecked)',
        String(s.weight),
        String(s.activeConnections),
        String(s.totalConnections),
        s.health.active?.lastCheck?.detail ?? '',
      ]);
    }
  }
  return table(rows);
}

function statusText(s: Record<string, unknown>): string {
  const listeners = (s['listeners'] as { name: string; address: string; active: number; accepted: number }[]) ?? [];
  const last = s['lastReload'] as { at: string; ok: boolean } | null;
  return [
    `twinport ${String(s['version'])}  pid ${String(s['pid'])}  up ${String(s['uptimeSeconds'])}s  engine ${String(s['engine'])}  workers ${String(s['workers'])}`,
    `config ${String(s['configFile'])}  hash ${String(s['configHash'] ?? '-')}  last reload ${last === null ? 'none' : `${last.ok ? 'ok' : 'FAILED'} at ${last.at}`}`,
    `connections open ${String(s['activeConnections'])}`,
    table([['LISTENER', 'ADDRESS', 'ACTIVE', 'ACCEPTED'], ...listeners.map((l) => [l.name, l.address, String(l.active), String(l.accepted)])]),
  ].join('\n');
}

type Fail = (message: string, code?: number) => never;

export function addAdminCommands(program: Command, fail: Fail): void {
  const targetOptions = (cmd: Command): Command =>
    cmd
      .option('--admin <url>', `admin listener: http://host:port or unix:/path (default: admin.bind of --config, else ${DEFAULT_ADMIN_URL})`)
      .option('--token-file <file>', 'file holding the admin bearer token (default: $TWINPORT_ADMIN_TOKEN, else admin.token_file of --config)')
      .option('-c, --config <file>', 'read the admin listener address and token file from this config')
      .option('--json', 'print the API answer as JSON');

  const call = async (opts: TargetOptions, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> => {
    let target: AdminTarget;
    try {
      target = resolveTarget(opts);
    } catch (e) {
      fail(String((e as Error)?.message ?? e));
    }
    let a;
    try {
      a = await adminRequest(target, method, path, body);
    } catch (e) {
      fail(`twinport: cannot reach the admin listener: ${(e as Error).message}`);
    }
    if (a.status !== 200) fail(errorLine(a.status, a.body, a.text));
    return a.body;
  };

  targetOptions(program.command('status').description('show the running proxy: version, uptime, config hash, last reload, listeners (admin API)')).action(
    async (opts: TargetOptions) => {
      const body = (await call(opts, 'GET', '/status')) as Record<string, unknown>;
      process.stdout.write(`${opts.json === true ? JSON.stringify(body, null, 2) : statusText(body)}\n`);
    },
  );
  targetOptions(program.command('pools').description('list every pool\'s servers: state, health, weight, connections (admin API)')).action(async (opts: TargetOptions) => {
    const body = (await call(opts, 'GET', '/pools')) as { pools: { name: string; balance: string; servers: ServerRow[] }[] };
    process.stdout.write(`${opts.json === true ? JSON.stringify(body, null, 2) : poolsText(body.pools)}\n`);
  });
  const stateVerb = (verb: 'drain' | 'ready' | 'maint', description: string): void => {
    const cmd = targetOptions(program.command(`${verb} <pool> <server>`).description(description));
    if (verb === 'maint') cmd.option('--deadline <duration>', 'close the server\'s open connections after this long (default: at once)');
    cmd.action(async (pool: string, server: string, opts: TargetOptions & { deadline?: string }) => {
      const path = `/pools/${encodeURIComponent(pool)}/servers/${encodeURIComponent(server)}/state`;
      const body = await call(opts, 'POST', path, { state: verb, ...(opts.deadline !== undefined && { deadline: opts.deadline }) });
      const b = body as { pool: string; server: string; state: string; weight: number };
      process.stdout.write(`${opts.json === true ? JSON.stringify(body, null, 2) : `${b.pool} ${b.server}: ${b.state} (weight ${b.weight})`}\n`);
    });
  };
  stateVerb('drain', 'stop sending new connections to a server; open ones finish (admin API)');
  stateVerb('ready', 'send new connections to a server again (admin API)');
  stateVerb('maint', 'take a server out and close its open connections, at once or after --deadline (admin API)');
}
