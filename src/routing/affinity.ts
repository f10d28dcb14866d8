// TLS affinity decisions (docs/affinity.md): which keys of a ClientHello may name the server holding its
// session, and what a server's first flight teaches about which server holds which key. Pure: the table
// that remembers the answers (lru-cache, a clock) and the sockets that feed it live in src/proxy/.
//
// Three kinds of resumption, two kinds of key:
//  - `sid`: a TLS ≤ 1.2 session ID assigned by the server (RFC 5246 §7.4.1.3). Meaningful only when the
//    server chose it: a TLS 1.3 ServerHello echoes the client's legacy_session_id, which a 1.3 client
//    fills with 32 random bytes for middlebox compatibility (RFC 8446 §4.1.2, §D.4). Learning those
//    would fill the table with keys no client ever offers again.
//  - `tkt`: the key name of a session ticket. The ticket is opaque to everyone but its issuer (RFC 5077
//    §4, RFC 8446 §4.6.1), but OpenSSL (and so Node) starts it with the 16-byte name of the ticket key
//    that sealed it (RFC 5077 §4's recommended format). One name per server while servers have distinct
//    keys, so a name learned once routes every later ticket of that server. A TLS 1.2 ticket (extension
//    35, RFC 5077 §3.2) and a TLS 1.3 PSK identity (RFC 8446 §4.2.11) from the same key share the name.
//
// The inputs are declared structurally here (routing/ does not import protocol/): the ClientHello's
// `TlsFields` and the server flight parser's `ServerFlight` satisfy them as they are.

/** The first bytes of an OpenSSL-format ticket: key_name[16] (RFC 5077 §4). */
export const TICKET_KEY_NAME_BYTES = 16;

const TLS12 = 0x0303;
const TLS13 = 0x0304;

export type AffinityKind = 'sid' | 'tkt';

export interface AffinityKey {
  readonly kind: AffinityKind;
  /** Lower-case hex of the session ID, or of the ticket key name. */
  readonly hex: string;
}

/** What affinity reads of a ClientHello (a subset of protocol/tls-client-hello's TlsFields). */
export interface AffinityHello {
  readonly sessionId: Buffer;
  readonly supportedVersions?: readonly number[];
  /** Extension 35; empty means "supports tickets, has none" (RFC 5077 §3.2). */
  readonly sessionTicket?: Buffer;
  /** Extension 41 identities, in the order offered. */
  readonly pskIdentities?: readonly Buffer[];
}

/** What affinity reads of a server's first flight (a subset of protocol/tls-server-hello's ServerFlight). */
export interface AffinityFlight {
  /** The selected version. */
  readonly version: number;
  readonly sessionId: Buffer;
  readonly helloRetryRequest: boolean;
  readonly pskSelectedIdentity?: number;
  /**
   * The first bytes of TLS 1.2 NewSessionTicket tickets (sent in the clear before CCS, RFC 5077 §3.3):
   * at least TICKET_KEY_NAME_BYTES of each ticket that long, which is all a lesson reads.
   */
  readonly newSessionTicketPrefixes: readonly Buffer[];
}

export interface AffinityLessons {
  /** Keys now known to be held by the server that answered. */
  readonly learn: readonly AffinityKey[];
  /** Keys the answering server refused: forget them if they still point to it. */
  readonly unlearn: readonly AffinityKey[];
}

/** Table and store key text: kind and hex, e.g. "tkt:0a1b…". */
export function keyText(k: AffinityKey): string {
  return `${k.kind}:${k.hex}`;
}

/** GREASE versions (RFC 8701 §2: 0x?a?a) say nothing about what the client supports. */
function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

/**
 * A hello whose supported_versions lists nothing below TLS 1.3 cannot resume a TLS 1.2 session: its
 * legacy_session_id is the random compatibility value of RFC 8446 §4.1.2, not a key worth a lookup.
 */
export function offersOnlyTls13(hello: AffinityHello): boolean {
  const vs = hello.supportedVersions;
  if (vs === undefined) return false;
  return !vs.some((v) => !isGrease(v) && v <= TLS12);
}

/** The key name of an OpenSSL-format ticket or PSK identity; undefined when too short to carry one. */
export function ticketKeyName(ticket: Buffer): AffinityKey | undefined {
  if (ticket.length < TICKET_KEY_NAME_BYTES) return undefined;
  return { kind: 'tkt', hex: ticket.toString('hex', 0, TICKET_KEY_NAME_BYTES) };
}

/**
 * How many PSK identities of one hello are looked up. A client offers one identity per ticket it holds
 * for the server, usually one (RFC 8446 §4.2.11 lets it offer many, and a 64 KiB hello carries over a
 * thousand): the keys of a hello become a Redis MGET, so an unbounded list lets one client multiply the
 * cost of its lookups (and, with a stalled Redis, the memory they hold) by a thousand.
 */
export const MAX_PSK_IDENTITIES_LOOKED_UP = 2;

/** At most this many keys per hello: the ticket, the first PSK identities, the session ID. */
export const MAX_HELLO_KEYS = 1 + MAX_PSK_IDENTITIES_LOOKED_UP + 1;

/**
 * The keys of a hello to look up, best first, without duplicates: the ticket's key name (it outlives
 * any server's session cache), then the key names of the first MAX_PSK_IDENTITIES_LOOKED_UP PSK
 * identities in offered order, then the session ID. Never more than MAX_HELLO_KEYS.
 */
export function helloKeys(hello: AffinityHello): AffinityKey[] {
  const out: AffinityKey[] = [];
  const seen = new Set<string>();
  const add = (k: AffinityKey | undefined): void => {
    if (k === undefined) return;
    const text = keyText(k);
    if (seen.has(text)) return;
    seen.add(text);
    out.push(k);
  };
  if (hello.sessionTicket !== undefined && hello.sessionTicket.length > 0) add(ticketKeyName(hello.sessionTicket));
  const ids = hello.pskIdentities ?? [];
  for (let i = 0; i < ids.length && i < MAX_PSK_IDENTITIES_LOOKED_UP; i++) add(ticketKeyName(ids[i]!));
  if (hello.sessionId.length > 0 && !offersOnlyTls13(hello)) add({ kind: 'sid', hex: hello.sessionId.toString('hex') });
  return out;
}

/**
 * How many NewSessionTickets of one flight are learned. A TLS 1.2 server sends one, just before its
 * ChangeCipherSpec (RFC 5077 §3.3); nothing in the record layer stops a hostile backend from sending
 * thousands (9000 measured: 9001 table entries and Redis SETs from one connection). Two leaves room for
 * a server that renews a ticket under a new key while it also reissues, and keeps a flight's lessons O(1).
 */
export const MAX_TICKETS_LEARNED_PER_FLIGHT = 2;

/**
 * What the answering server's first flight teaches, given the hello it answered and the key the
 * connection was routed by (undefined when the balance chose the server).
 *
 * TLS 1.3 (selected version ≥ 0x0304): the ServerHello's pre_shared_key names the accepted identity
 * (RFC 8446 §4.2.11) → learn its key name. NewSessionTicket is encrypted in 1.3 (§4.6.1), so a full
 * handshake teaches nothing. After a HelloRetryRequest the second ClientHello may drop identities
 * (§4.1.2), so the index is trusted only when a single identity was offered.
 *
 * TLS ≤ 1.2: resumption echoes the client's session ID (RFC 5246 §7.4.1.3; RFC 5077 §3.4 for tickets).
 * A different ID is a full handshake: learn the new ID. Tickets in the clear teach their key names (also
 * renewed ones on a resumption), at most MAX_TICKETS_LEARNED_PER_FLIGHT of them.
 *
 * Refusals (a 1.3 ServerHello without pre_shared_key, a 1.2 ServerHello with a new session ID, on a
 * hello routed by affinity) unlearn the routing key only when it is a session ID: a session ID names one
 * session of one server's cache, and the server that held it has just said it no longer does. A ticket
 * key name is never unlearned on a refusal. Any client can build an identity that starts with a real key
 * name (the first 16 bytes of its own ticket) followed by junk, and the server refuses it; an expired
 * ticket is refused too. Neither shows that the name stopped naming that server: only the issuer can
 * open that name's tickets, so routing them there is never wrong, and a rotated key simply stops being
 * offered and expires (affinity_table.ttl). With an empty ID on both sides a ticket resumption cannot
 * be told from a full handshake, so nothing is unlearned.
 */
export function lessonsFromFlight(hello: AffinityHello, flight: AffinityFlight, routedBy: AffinityKey | undefined): AffinityLessons {
  const learn: AffinityKey[] = [];
  const unlearn: AffinityKey[] = [];
  const refusedSid = routedBy !== undefined && routedBy.kind === 'sid' ? routedBy : undefined;
  if (flight.version >= TLS13) {
    const offered = hello.pskIdentities ?? [];
    const selected = flight.pskSelectedIdentity;
    if (selected !== undefined) {
      const identity = offered[selected];
      const trusted = !flight.helloRetryRequest || offered.length === 1;
      const k = identity === undefined || !trusted ? undefined : ticketKeyName(identity);
      if (k !== undefined) learn.push(k);
    } else if (refusedSid !== undefined) {
      unlearn.push(refusedSid);
    }
    return { learn, unlearn };
  }
  const clientId = hello.sessionId;
  const serverId = flight.sessionId;
  const resumed = clientId.length > 0 ? serverId.equals(clientId) : serverId.length === 0 ? undefined : false;
  const learned = new Set<string>();
  const add = (k: AffinityKey): void => {
    const text = keyText(k);
    if (learned.has(text)) return;
    learned.add(text);
    learn.push(k);
  };
  if (resumed === false) {
    if (refusedSid !== undefined) unlearn.push(refusedSid);
    if (serverId.length > 0) add({ kind: 'sid', hex: serverId.toString('hex') });
  }
  const tickets = flight.newSessionTicketPrefixes;
  for (let i = 0; i < tickets.length && i < MAX_TICKETS_LEARNED_PER_FLIGHT; i++) {
    const k = ticketKeyName(tickets[i]!);
    if (k !== undefined) add(k);
  }
  // The refused ID is the client's and the learned one differs from it: nothing to reconcile.
  return { learn, unlearn };
}

/** Why a learned server cannot take the connection now; undefined when it can. */
export type StaleReason = 'gone' | 'down' | 'drained';

/** The pool view affinity needs: PoolState satisfies it. */
export interface AffinityPoolView {
  isUp(i: number): boolean;
  weight(i: number): number;
}

/**
 * Index of the learned server in the pool (addresses are stored as their text, stable across instances
 * and reloads), or why it is unusable: removed from the pool, down, or drained (weight 0).
 */
export function resolveLearned(
  servers: readonly { readonly address: { readonly text: string } }[],
  view: AffinityPoolView,
  serverText: string,
): { index: number } | { stale: StaleReason } {
  const index = servers.findIndex((s) => s.address.text === serverText);
  if (index < 0) return { stale: 'gone' };
  if (!view.isUp(index)) return { stale: 'down' };
  if (view.weight(index) <= 0) return { stale: 'drained' };
  return { index };
}
