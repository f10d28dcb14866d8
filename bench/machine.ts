// The machine and the versions a run was made with, for the report header.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly kernel: string;
  readonly memoryGiB: number;
  readonly versions: Readonly<Record<string, string>>;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error !== undefined) return 'not installed';
  // nginx -v and wrk -v print on stderr (and wrk exits 1).
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return text.split('\n')[0] ?? '';
}

function packageVersion(name: string): string {
  try {
    const file = new URL(`../../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

export function describeMachine(): Machine {
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    versions: {
      node: process.version,
      haproxy: firstLine('haproxy', ['-v']),
      nginx: firstLine('nginx', ['-v']),
      autocannon: packageVersion('autocannon'),
      wrk: firstLine('wrk', ['-v']).replace(/ Copyright.*/, ''),
      'read-tls-client-hello': packageVersion('read-tls-client-hello'),
    },
  };
}
