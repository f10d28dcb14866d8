// A throwaway redis-server on a free loopback port, for the affinity store tests. It can be paused with
// SIGSTOP: the TCP connection stays up (the kernel still accepts and buffers) while nothing answers,
// which is how a long DEBUG SLEEP, a fork stall or a network black hole looks to a client.
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './proxy-harness.js';

export interface RedisServer {
  readonly port: number;
  /** SIGSTOP: Redis keeps its sockets but reads and answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  stop(): Promise<void>;
}

/** redis-server does not report a port it picked itself: take a free one, then wait for "Ready". */
export async function startRedis(t: ExecutionContext): Promise<RedisServer> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const kill = (): void => {
    // A stopped process keeps a SIGTERM pending until it is continued.
    if (running()) child.kill('SIGCONT');
    child.kill();
  };
  process.once('exit', kill);
  t.teardown(async () => {
    process.off('exit', kill);
    if (running()) {
      kill();
      await exited;
    }
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('Ready to accept connections')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  child.stdout.resume();
  child.stderr.resume();
  return {
    port,
    pause: () => {
      child.kill('SIGSTOP');
    },
    resume: () => {
      child.kill('SIGCONT');
    },
    stop: async () => {
      if (!running()) return;
      kill();
      await exited;
    },
  };
}
