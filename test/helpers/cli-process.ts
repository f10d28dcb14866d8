// Runs the real `twinport` command (dist/src/cli/main.js) as a child process and follows its JSON log.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { LogLine } from './proxy-harness.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface TwinportProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[];
  stderr(): string;
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine>;
  waitForStderr(re: RegExp): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnTwinport(args: string[], opts: { prefix?: string[]; env?: NodeJS.ProcessEnv; command?: string[] } = {}): TwinportProcess {
  // prefix: a program that execs the command (systemd-socket-activate); command: node + main.js by default.
  const full = [...(opts.prefix ?? []), ...(opts.command ?? [process.execPath, MAIN]), ...args];
  const child = spawn(full[0]!, full.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.env !== undefined && { env: opts.env }),
  });
  const lines: LogLine[] = [];
  let err = '';
  let waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let errWaiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    waiters = waiters.filter((w) => {
      if (!w.pred(line)) return true;
      w.resolve(line);
      return false;
    });
  });
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
    errWaiters = errWaiters.filter((w) => {
      const m = err.match(w.re);
      if (m === null) return true;
      w.resolve(m);
      return false;
    });
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    stderr: () => err,
    waitFor(pred) {
      const found = lines.find(pred);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    waitForStderr(re) {
      const m = err.match(re);
      if (m !== null) return Promise.resolve(m);
      return new Promise((resolve) => errWaiters.push({ re, resolve }));
    },
    exited,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** Runs the command to completion. */
export function runTwinport(args: string[], input?: Buffer | string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}
