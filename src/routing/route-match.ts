// Route matching (docs/config.md): a listener's routes are tried in order and the first whose every given
// key holds wins. Pure: facts in, route out. Never throws, whatever bytes a client put in its SNI or Host.
import type { MatchProtocol, NamePattern, RouteConfig, RouteMatch } from '../config/types.js';
import { anyCidrContains } from './cidr.js';
import { matchName } from './name-pattern.js';

/** What the peek learned about one connection, as far as routing cares. */
export interface ConnectionFacts {
  readonly protocol: MatchProtocol;
  /** As sent; absent = TLS without SNI (or not TLS). */
  readonly sni?: string;
  /** ALPN protocol names the client offered (RFC 7301 §3.1), in its order. */
  readonly alpn?: readonly string[];
  /** Plaintext HTTP/1 Host without port. */
  readonly host?: string;
  /** Client address (after a trusted PROXY header). */
  readonly sourceIp: string;
  /** The recognised other protocol (ssh, socks5, …); absent for unrecognised bytes. */
  readonly other?: string;
}

export function matchRoute(routes: readonly RouteConfig[], facts: ConnectionFacts): RouteConfig | undefined {
  for (const route of routes) if (routeMatches(route.match, facts)) return route;
  return undefined;
}

export function routeMatches(match: RouteMatch, facts: ConnectionFacts): boolean {
  if (match.protocol !== undefined && !match.protocol.includes(facts.protocol)) return false;
  if (match.sni !== undefined && !sniMatches(match.sni, facts)) return false;
  if (match.alpn !== undefined && !alpnMatches(match.alpn, facts.alpn)) return false;
  if (match.host !== undefined) {
    // Host is an HTTP/1 header (RFC 9112 §3.2). An h2c preface carries no Host before its HEADERS frame,
    // and we never look inside TLS, so `host` can only ever hold for plaintext HTTP/1.
    if (facts.protocol !== 'http' || facts.host === undefined || !anyName(match.host, facts.host)) return false;
  }
  if (match.source !== undefined && !anyCidrContains(match.source, facts.sourceIp)) return false;
  // A recognised protocol by name: `other: ssh` holds only for streams the ssh probe claimed.
  if (match.other !== undefined && (facts.protocol !== 'other' || facts.other === undefined || !match.other.includes(facts.other))) return false;
  return true;
}

function sniMatches(sni: null | readonly NamePattern[], facts: ConnectionFacts): boolean {
  // SNI only exists inside a TLS ClientHello (RFC 6066 §3); a plaintext connection never matches an sni
  // rule, not even `sni: null`, which means "TLS, without SNI".
  if (facts.protocol !== 'tls') return false;
  if (sni === null) return facts.sni === undefined;
  return facts.sni !== undefined && anyName(sni, facts.sni);
}

function anyName(patterns: readonly NamePattern[], name: string): boolean {
  return patterns.some((p) => matchName(p, name));
}

// ALPN protocol IDs are opaque byte strings compared exactly (RFC 7301 §3.1: no case folding).
function alpnMatches(wanted: readonly string[], offered: readonly string[] | undefined): boolean {
  if (offered === undefined) return false;
  return wanted.some((w) => offered.includes(w));
}
