// How many connections this process can hold with the descriptors it may open (HAProxy derives `maxconn`
// from `ulimit -n` the same way). Past that, accept(2) fails with EMFILE, and libuv answers EMFILE by
// accepting and closing pending connections itself (its reserve-descriptor trick): clients dropped with
// no close line and no counter. Kept under the ceiling, twinport closes the excess itself, counted.
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Descriptors kept free beyond those open at start: health checks in flight, Redis connections, a reload
 * reading the config, DNS lookups, log files, and the accept-then-close of a connection shed at the ceiling.
 */
export const FD_SPARE = 32;
/** A spliced connection holds two descriptors: the client's and the server's. */
export const FDS_PER_CONNECTION = 2;

/** The soft RLIMIT_NOFILE, from /proc/self/limits (Linux); undefined where it cannot be read. */
export function softNofileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (m === null) return undefined;
  const soft = m[1] === 'unlimited' ? Infinity : Number(m[1]);
  return Number.isFinite(soft) || soft === Infinity ? soft : undefined;
}

/** Descriptors this process has open now (/proc/self/fd); undefined where it cannot be read. */
export function openDescriptors(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

export interface ConnectionCeiling {
  /** Connections (accepted, not yet closed) allowed at once in this process. */
  readonly limit: number;
  /** For the close line's detail and the start-up log. */
  readonly why: string;
}

/**
 * The process's connection ceiling: the descriptor-derived one, or the configured `max_connections` when
 * that is lower. Undefined when neither applies (no readable limit, none configured).
 */
export function connectionCeiling(
  configured: number | undefined,
  soft: number | undefined,
  openAtStart: number | undefined,
): ConnectionCeiling | undefined {
  const derived =
    soft === undefined || soft === Infinity || openAtStart === undefined
      ? undefined
      : Math.max(1, Math.floor((soft - openAtStart - FD_SPARE) / FDS_PER_CONNECTION));
  if (derived !== undefined && (configured === undefined || derived < configured)) {
    return { limit: derived, why: `${derived} connections: RLIMIT_NOFILE ${soft}` };
  }
  if (configured !== undefined) return { limit: configured, why: `max_connections ${configured}` };
  return undefined;
}
