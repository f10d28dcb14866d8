// `twinport inspect [FILE|-] [--hex] [--final]`: what the detector sees in a captured first flight.
import { readFileSync } from 'node:fs';
import { TwinportError } from '../errors.js';
import { detect } from '../protocol/detector.js';
import { inspectView } from './inspect-view.js';

export interface InspectOptions {
  readonly hex?: boolean;
  /** Treat the input as complete; default true for files, false for stdin. */
  readonly final?: boolean;
}

/** Hex text as produced by `xxd -p`, `od`-less dumps, or "16 03 01 …"; `0x` prefixes and `:` allowed. */
export function decodeHex(text: string): Buffer {
  // Walked once by hand so an error can say which character, and where (line:column of the input).
  let digits = '';
  let line = 1;
  let col = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    col++;
    if (c === '\n') {
      line++;
      col = 0;
      continue;
    }
    if (/\s|[:,]/.test(c)) continue;
    if (c === '0' && (text[i + 1] === 'x' || text[i + 1] === 'X')) {
      i++;
      col++;
      continue;
    }
    if (!/[0-9a-fA-F]/.test(c)) {
      const shown = JSON.stringify(c);
      throw new TwinportError('TWP_ERR_INSPECT_INPUT', `the --hex input has ${shown} at line ${line}, column ${col}: not a hex digit`);
    }
    digits += c;
  }
  if (digits.length % 2 !== 0) {
    throw new TwinportError('TWP_ERR_INSPECT_INPUT', `the --hex input has an odd number of hex digits (${digits.length}): the last byte is half a byte`);
  }
  return Buffer.from(digits, 'hex');
}

export async function readInput(file: string | undefined): Promise<Buffer> {
  try {
    if (file !== undefined && file !== '-') return readFileSync(file);
    // Streamed: readFileSync(0) fails with EAGAIN when stdin is a pipe that has no data yet.
    const parts: Buffer[] = [];
    for await (const chunk of process.stdin) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  } catch (e) {
    throw new TwinportError('TWP_ERR_INSPECT_INPUT', `${file ?? 'stdin'}: ${(e as Error).message}`, { cause: e });
  }
}

export function inspectBytes(raw: Buffer, final: boolean): Record<string, unknown> {
  return inspectView(detect(raw, { final }), raw.length);
}

export async function runInspect(file: string | undefined, opts: InspectOptions): Promise<string> {
  const input = await readInput(file);
  const bytes = opts.hex === true ? decodeHex(input.toString('latin1')) : input;
  const fromStdin = file === undefined || file === '-';
  const final = opts.final ?? !fromStdin;
  return JSON.stringify(inspectBytes(bytes, final));
}
