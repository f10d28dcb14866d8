// Child processes of a benchmark run: spawned pinned to CPUs with taskset (so the load generator and the
// proxy never share a core), remembered, and all stopped at the end — also on Ctrl-C — so a run never
// leaves servers behind.
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import net from 'node:net';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last few KB of stderr (for error messages). */
  stderrTail(): string;
  /** Resolves with the exit code (null after a signal). */
  readonly exited: Promise<number | null>;
  stop(): Promise<void>;
}

const running = new Set<Child>();

const RAISE_NOFILE = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"';

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export const HAVE_TASKSET = hasCommand('taskset');

export interface SpawnOptions {
  /** taskset CPU list ("0", "0-2"); undefined: not pinned. */
  readonly cpus?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
  readonly stdio?: StdioOptions;
}

export function spawnChild(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const pinned = opts.cpus !== undefined && HAVE_TASKSET;
  // The soft fd limit goes up to the hard one (M1 holds thousands of sockets); taskset and sh both exec,
  // so the pid we get is the measured process itself, not a wrapper.
  const raised = ['sh', '-c', RAISE_NOFILE, cmd, ...args];
  const proc = pinned
    ? spawn('taskset', ['-c', opts.cpus!, ...raised], spawnOpts(opts))
    : spawn(raised[0]!, raised.slice(1), spawnOpts(opts));
  let tail = '';
  proc.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => resolve(code));
    proc.once('error', (err) => {
      tail += `\nspawn ${cmd}: ${err.message}`;
      resolve(-1);
    });
  });
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    stderrTail: () => tail,
    exited,
    async stop() {
      running.delete(child);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(child);
  void exited.then(() => running.delete(child));
  return child;
}

function spawnOpts(opts: SpawnOptions): { env: NodeJS.ProcessEnv; stdio: StdioOptions } {
  return { env: opts.env ?? process.env, stdio: opts.stdio ?? ['ignore', 'ignore', 'pipe'] };
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop()));
}

/** Runs a command to completion, collecting its output. */
export async function runToEnd(
  name: string,
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions & { timeoutMs: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnChild(name, cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.proc.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), opts.timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  return { code, stdout, stderr: child.stderrTail() };
}

/** A free loopback port (listen on 0, read it, close). Another process could take it before we do. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Waits until something accepts on `port`, or the child dies, or the deadline passes. */
export async function waitForPort(port: number, child: Child | undefined, deadlineMs = 10000): Promise<void> {
  const until = Date.now() + deadlineMs;
  let dead = false;
  void child?.exited.then(() => {
    dead = true;
  });
  for (;;) {
    if (await tryConnect(port)) return;
    if (dead) throw new Error(`${child!.name} exited before listening on ${port}: ${child!.stderrTail().trim()}`);
    if (Date.now() > until) throw new Error(`nothing listening on 127.0.0.1:${port} after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
