// The phase decision of issue 13 §1 (docs/migration.md): what twinport does with a connection's plaintext on
// a listener that has a `migration` block, decided from the peek alone, before any backend is chosen, so a
// connection is either answered by twinport or spliced, never both. Pure: facts in, decision out; the
// proxy writes the answer (src/proxy/connection.ts).
import type { MigrationConfig, MigrationPhase, TwinportConfig } from '../config/types.js';
import type { HttpFields } from '../protocol/http-head.js';
import { anyCidrContains } from '../routing/cidr.js';
import { matchName } from '../routing/name-pattern.js';
import { matchUserAgent } from './user-agent.js';
import { httpsLocation } from './response.js';
import { OVERFLOW_NAME } from './record.js';

/** Why a connection was answered with `migration-reject` (the close line's `detail`). */
export type RejectWhy =
  | 'http' // phase reject: HTTP/1 answered with reject_status
  | 'no-host' // phase redirect, but no Host and no canonical_host to redirect to: answered with reject_status
  | 'connect' // phase redirect, a CONNECT request: a tunnel has no https URL to go to, answered with reject_status
  | 'h2c' // h2c prior knowledge in redirect or reject: SETTINGS + GOAWAY(INADEQUATE_SECURITY)
  | 'not-http'; // other plaintext in redirect or reject: closed without a byte

export type MigrationDecision =
  /** Spliced as routed. `phase` is absent for connections phases never apply to (TLS, silent). */
  | { readonly kind: 'splice'; readonly phase?: MigrationPhase; readonly exempt?: 'source' | 'user-agent' }
  | { readonly kind: 'redirect'; readonly phase: 'redirect'; readonly location: string }
  /** `url`: the https URL the reject answer names, when there is a host to name. */
  | { readonly kind: 'reject'; readonly phase: MigrationPhase; readonly why: RejectWhy; readonly url?: string };

export interface MigrationFacts {
  readonly protocol: 'tls' | 'http' | 'h2c' | 'other' | 'silent';
  /** The HTTP/1 request head (protocol http only). */
  readonly http?: HttpFields;
  /** The client address after a trusted PROXY header; called only when an exempt source must be checked. */
  readonly clientIp: () => string;
  /** The port the client connected to (a trusted PROXY header's destination); called only for a URL without https_port. */
  readonly localPort: () => number;
}

const SPLICE_UNTOUCHED: MigrationDecision = Object.freeze({ kind: 'splice' });
const SPLICE: Readonly<Record<MigrationPhase, MigrationDecision>> = Object.freeze({
  observe: Object.freeze({ kind: 'splice', phase: 'observe' }),
  redirect: Object.freeze({ kind: 'splice', phase: 'redirect' }),
  reject: Object.freeze({ kind: 'splice', phase: 'reject' }),
});

/** The phase for a request: the first `names` rule matching its Host, else the listener's. */
export function phaseFor(m: MigrationConfig, host: string | undefined): MigrationPhase {
  if (host !== undefined) {
    for (const rule of m.names) if (rule.match.some((p) => matchName(p, host))) return rule.phase;
  }
  return m.phase;
}

export function decideMigration(m: MigrationConfig, f: MigrationFacts): MigrationDecision {
  // TLS is the destination of the migration and is never touched. A silent client sent no plaintext to
  // judge: a `protocol: silent` route is a deliberate server-speaks-first service (SSH, SMTP) on the port.
  if (f.protocol === 'tls' || f.protocol === 'silent') return SPLICE_UNTOUCHED;
  const http = f.http;
  // Names are matched against the request's Host (plaintext only; h2c's :authority is inside HPACK and
  // is not read, other protocols have none): those take the listener's phase.
  const phase = phaseFor(m, http?.host);
  if (phase === 'observe') return SPLICE.observe;
  const { sources, userAgents } = m.exempt;
  if (sources.length > 0 && anyCidrContains(sources, f.clientIp())) return { kind: 'splice', phase, exempt: 'source' };
  const ua = http?.userAgent;
  if (ua !== undefined && userAgents.some((p) => matchUserAgent(p, ua))) return { kind: 'splice', phase, exempt: 'user-agent' };
  if (f.protocol === 'h2c') return { kind: 'reject', phase, why: 'h2c' };
  if (http === undefined) return { kind: 'reject', phase, why: 'not-http' };
  const host = http.host ?? m.canonicalHost;
  const url = host === undefined ? undefined : httpsLocation(host, m.httpsPort ?? f.localPort(), http.target, http.targetForm);
  if (phase === 'reject') return url === undefined ? { kind: 'reject', phase, why: 'http' } : { kind: 'reject', phase, why: 'http', url };
  if (http.targetForm === 'authority') return url === undefined ? { kind: 'reject', phase, why: 'connect' } : { kind: 'reject', phase, why: 'connect', url };
  if (url === undefined) return { kind: 'reject', phase, why: 'no-host' };
  return { kind: 'redirect', phase, location: url };
}

/** The phase the running config gives a recorded name ('' = no Host: the listener's own phase). */
export function configPhaseOf(config: TwinportConfig): (listener: string, name: string) => MigrationPhase | undefined {
  return (listener, name) => {
    const m = config.listeners.find((l) => l.name === listener)?.migration;
    return m === undefined ? undefined : phaseFor(m, name === '' || name === OVERFLOW_NAME ? undefined : name);
  };
}
