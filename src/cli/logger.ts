// pino on stdout: JSON lines by default (the close log of docs/reasons.md is a public interface), or
// pino-pretty when a human asks (`--log-format pretty`). Synchronous writes: a proxy that is killed must
// not lose the close lines of connections it already finished.
import pino, { type Logger } from 'pino';

export type LogFormat = 'json' | 'pretty';

export async function createLogger(level: string, format: LogFormat): Promise<Logger> {
  const opts = { level, base: { pid: process.pid } };
  if (format === 'pretty') {
    const { default: pretty } = await import('pino-pretty');
    return pino(opts, pretty({ colorize: process.stdout.isTTY, sync: true }));
  }
  return pino(opts, pino.destination({ dest: 1, sync: true }));
}
