// The bytes twinport answers plaintext with during a migration (docs/migration.md). Pure: no sockets.
//
// Every value put in a header here is either from the config (checked by compile.ts) or from a request head
// the HTTP/1 probe accepted: its host is a reg-name, IPv4 address or [IPv6] literal of at most 255 bytes
// and its target is visible ASCII (RFC 9112 §3.2), so no CR, LF or space can reach a header line.
import type { HttpFields } from '../protocol/http-head.js';

/** Reason phrases (RFC 9110 §15) for the statuses a migration answers with; others get an empty phrase. */
const REASON_PHRASES: Readonly<Record<number, string>> = {
  301: 'Moved Permanently',
  302: 'Found',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  421: 'Misdirected Request',
  426: 'Upgrade Required',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/**
 * The https URL for a request: `https://<host>[:<port>]<path-and-query>`, the port left out when it is 443
 * (the https default, RFC 9110 §4.2.2).
 *
 * - origin-form (`/a?b`): kept as is;
 * - absolute-form (`http://h:80/a?b#f`, RFC 9112 §3.2.2): its path and query, "/" when it has no path;
 *   a fragment (which a request target may not carry) is dropped;
 * - asterisk-form (`OPTIONS *`, RFC 9112 §3.2.4): "*" names the server, not a resource, and is no URI
 *   path: the https origin's root "/";
 * - authority-form (CONNECT): a tunnel, no resource: "/".
 *
 * `host` is as sent (an IPv6 literal keeps its brackets); the scheme's host is case-insensitive anyway.
 */
export function httpsLocation(host: string, port: number, target: string, form: HttpFields['targetForm']): string {
  const authority = port === 443 ? host : `${host}:${port}`;
  return `https://${authority}${pathOf(target, form)}`;
}

function pathOf(target: string, form: HttpFields['targetForm']): string {
  switch (form) {
    case 'origin':
      return target;
    case 'absolute': {
      const afterScheme = target.indexOf('://') + 3;
      const rest = target.slice(afterScheme);
      const start = rest.search(/[/?#]/);
      if (start < 0) return '/';
      let tail = rest.slice(start);
      const hash = tail.indexOf('#');
      if (hash >= 0) tail = tail.slice(0, hash);
      if (tail === '') return '/';
      return tail.startsWith('/') ? tail : `/${tail}`;
    }
    case 'asterisk':
    case 'authority':
      return '/';
  }
}

/** RFC 9110 §5.6.7 IMF-fixdate, which Date.toUTCString() writes. */
function httpDate(now: Date): string {
  return now.toUTCString();
}

function response(status: number, headers: readonly string[], body: string, method: string, now: Date): Buffer {
  const phrase = REASON_PHRASES[status] ?? '';
  const head =
    `HTTP/1.1 ${status} ${phrase}\r\n` +
    // RFC 9110 §6.6.1: an origin server with a clock sends Date in 2xx, 3xx and 4xx responses.
    `Date: ${httpDate(now)}\r\n` +
    headers.map((h) => `${h}\r\n`).join('') +
    'Content-Type: text/plain; charset=us-ascii\r\n' +
    `Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    '\r\n';
  // RFC 9110 §9.3.2: a response to HEAD carries no content; Content-Length says what GET would have got.
  return Buffer.from(method === 'HEAD' ? head : head + body, 'latin1');
}

/**
 * `redirect_status` (308 by default: RFC 9110 §15.4.9, the client repeats the same method and body at the
 * new URL; 307 is the temporary form, 301/302 let clients turn a POST into a GET) with `Location`, and
 * `Connection: close` (RFC 9112 §9.6): twinport closes after this response, whatever else the client sent.
 */
export function redirectResponse(status: number, location: string, method: string, now: Date): Buffer {
  const body = `This service has moved to HTTPS: plaintext HTTP on this port is being retired.\nGo to ${location}\n`;
  return response(status, [`Location: ${location}`, 'Connection: close'], body, method, now);
}

/**
 * `reject_status` (426 Upgrade Required by default, RFC 9110 §15.5.22, which requires the Upgrade field:
 * RFC 2817 §4.2's "TLS/1.2, HTTP/1.1" form says TLS is what is wanted). twinport does not perform an
 * in-place upgrade: the body names the https URL to use instead. A sender of Upgrade also lists it in
 * Connection (RFC 9110 §7.8), and `close` ends the connection after this response (RFC 9112 §9.6).
 */
export function rejectResponse(status: number, url: string | undefined, method: string, now: Date): Buffer {
  const where = url === undefined ? 'Use https:// on this port.' : `Use ${url}`;
  const body = `This service requires HTTPS: plaintext HTTP on this port is closed.\n${where}\n`;
  return response(status, ['Upgrade: TLS/1.2, HTTP/1.1', 'Connection: Upgrade, close'], body, method, now);
}

/** RFC 9113 §7: INADEQUATE_SECURITY, "the underlying transport has properties that do not meet minimum security requirements". */
export const H2_INADEQUATE_SECURITY = 0xc;
export const H2C_GOAWAY_TEXT = 'plaintext HTTP/2 (h2c) is not served on this port: use https';

/**
 * The answer to an h2c prior-knowledge client: the server connection preface, an empty SETTINGS frame
 * (RFC 9113 §3.4: it MUST come first), then GOAWAY (RFC 9113 §6.8) with last-stream-id 0 (no stream was
 * or will be processed, so the client may retry every request elsewhere), INADEQUATE_SECURITY, and the
 * reason as debug data, which clients such as curl and nghttp show. No :authority was read (it is inside
 * HPACK), so it cannot name the https URL the way the HTTP/1 answers do.
 */
export function h2cGoaway(text: string = H2C_GOAWAY_TEXT): Buffer {
  const debug = Buffer.from(text, 'latin1');
  const out = Buffer.alloc(9 + 9 + 8 + debug.length);
  // SETTINGS: length 0, type 0x4, flags 0, stream 0.
  out.writeUIntBE(0, 0, 3);
  out[3] = 0x4;
  // GOAWAY: length 8 + debug, type 0x7, flags 0, stream 0; last-stream-id 0, error code, debug data.
  out.writeUIntBE(8 + debug.length, 9, 3);
  out[12] = 0x7;
  out.writeUInt32BE(0, 18);
  out.writeUInt32BE(H2_INADEQUATE_SECURITY, 22);
  debug.copy(out, 26);
  return out;
}
