// A stand-in for the service manager's NOTIFY_SOCKET: a real unix datagram socket (python3, since Node
// cannot bind one) that records every datagram, in order of arrival. systemd-notify's BARRIER=1 datagram
// carries a descriptor that recv() discards, which closes it: that is the answer the barrier waits for.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const RECEIVER = `
import socket, sys, os, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps(data.decode("utf-8", "replace")), flush=True)
`;

export interface NotifySocket {
  readonly path: string;
  /** Every datagram's KEY=VALUE lines, BARRIER=1 left out. */
  readonly messages: string[][];
  /** Resolves with the index of the first message at or after `from` that has `line`. */
  waitFor(line: string | RegExp, from?: number): Promise<number>;
  close(): void;
}

export async function startNotifySocket(): Promise<NotifySocket> {
  const path = join(mkdtempSync(join(tmpdir(), 'twp-notify-')), 'notify.sock');
  const child: ChildProcess = spawn('python3', ['-c', RECEIVER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[][] = [];
  let waiters: (() => void)[] = [];
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    lines.once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`notify receiver exited ${code}`)));
  });
  lines.on('line', (l) => {
    const fields = (JSON.parse(l) as string).split('\n').filter((f) => f !== '' && f !== 'BARRIER=1');
    if (fields.length === 0) return;
    messages.push(fields);
    for (const w of waiters) w();
  });
  const has = (m: string[], line: string | RegExp): boolean => m.some((f) => (typeof line === 'string' ? f === line : line.test(f)));
  return {
    path,
    messages,
    waitFor(line, from = 0) {
      return new Promise((resolve) => {
        const check = (): boolean => {
          const i = messages.findIndex((m, j) => j >= from && has(m, line));
          if (i < 0) return false;
          resolve(i);
          return true;
        };
        if (check()) return;
        const w = (): void => {
          if (check()) waiters = waiters.filter((x) => x !== w);
        };
        waiters.push(w);
      });
    },
    close: () => child.kill('SIGKILL'),
  };
}
