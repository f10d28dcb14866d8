// HTTP/1.x request head probe (RFC 9112 §2–§5; field syntax RFC 9110 §5; Host RFC 9110 §7.2).
//
//   HTTP-message  = start-line CRLF *( field-line CRLF ) CRLF          (RFC 9112 §2.1)
//   request-line  = method SP request-target SP HTTP-version           (RFC 9112 §3)
//   method        = token                                              (RFC 9110 §9.1)
//   HTTP-version  = "HTTP/" DIGIT "." DIGIT                            (RFC 9112 §2.3)
//   field-line    = field-name ":" OWS field-value OWS                 (RFC 9112 §5)
//
// We are a router, not the server: the backend receives exactly these bytes and parses them itself. So the
// probe accepts only heads that every conforming server reads the same way, and rejects the ambiguous ones
// (bare LF, bare CR, obs-fold, space before the colon, two Host fields, Host disagreeing with an
// absolute-form target) instead of guessing: a verdict that differs from the backend's reading is how a
// request for one virtual host gets routed to another (request smuggling at the routing layer).
//
// The probe is one byte-wise state machine with a cursor kept across calls (the stream is append-only), so
// feeding a 64 KiB head one byte at a time costs 64 Ki steps, not 2 Gi.
import { isIPv6 } from './ip-address.js';
import { NEED_MORE, reject, type Match, type NeedMore, type Probe, type ProbeOptions, type Reject } from './verdict.js';

export interface HttpFields {
  readonly method: string;
  readonly target: string;
  readonly targetForm: 'origin' | 'absolute' | 'authority' | 'asterisk';
  /** "HTTP/1.1" or "HTTP/1.0". */
  readonly version: string;
  /** Routing host: from Host (or the absolute/authority-form target, RFC 9112 §3.2.2), port stripped, as sent. */
  readonly host?: string;
  /** The Host field value as sent (with port), for logs. */
  readonly hostHeader?: string;
  readonly port?: number;
  /**
   * The first User-Agent field value (RFC 9110 §10.1.5), OWS trimmed, cut at HTTP_MAX_USER_AGENT_BYTES
   * (latin1): for migration exemptions and the record of who still speaks plaintext, never routed on.
   */
  readonly userAgent?: string;
  readonly headerCount: number;
  /** Bytes up to and including the empty line (and the empty lines before the request line, if any). */
  readonly headBytes: number;
}

export type HttpMatch = Match<'http', HttpFields>;

export interface HttpProbeOptions {
  /** Cap on the whole head; beyond it `http.head.too-large`. Default 64 KiB. */
  readonly maxHeadBytes?: number;
  /** Cap on the request line; beyond it the bytes are "not mine". Default 8 KiB. */
  readonly maxRequestLineBytes?: number;
}

export const HTTP_DEFAULT_MAX_HEAD_BYTES = 64 * 1024;
export const HTTP_DEFAULT_MAX_REQUEST_LINE_BYTES = 8 * 1024;
/** Longest method we consider (the longest registered method, UPDATEREDIRECTREF, has 17 characters). */
export const HTTP_MAX_METHOD_LENGTH = 32;
/**
 * Longest host we route on (Host, or the authority of an absolute-form or CONNECT target): a DNS name is at
 * most 255 octets (RFC 1035 §2.3.4), the bound SNI already has. Without it a 64 KiB Host reached the
 * outgoing PROXY v2 AUTHORITY TLV (one request crashed the process) and made every regex route quadratic.
 */
export const HTTP_MAX_HOST_BYTES = 255;
/**
 * The User-Agent kept: enough for every product token that matters (python-requests/2.31.0 CPython/3.11…)
 * and a fixed bound whatever a client sends (field values may reach the whole 64 KiB head).
 */
export const HTTP_MAX_USER_AGENT_BYTES = 256;
const USER_AGENT = Buffer.from('user-agent', 'latin1');

/** The field name at [start, start + 10) is "User-Agent", case-insensitively (RFC 9110 §5.1). */
function isUserAgentName(buf: Buffer, start: number): boolean {
  // Field names are tchars: OR-ing 0x20 lower-cases A-Z and maps no other tchar onto a letter or "-".
  for (let k = 0; k < 10; k++) if ((buf[start + k]! | 0x20) !== USER_AGENT[k]) return false;
  return true;
}

/** The Host field value may add ":" and five port digits to the host. */
const MAX_HOST_FIELD_BYTES = HTTP_MAX_HOST_BYTES + ':65535'.length;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

// tchar (RFC 9110 §5.6.2): "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
// "~" / DIGIT / ALPHA
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-vchar (RFC 9110 §5.5): VCHAR / obs-text; SP and HTAB are allowed between them. */
function isFieldByte(b: number): boolean {
  return (b >= 0x21 && b <= 0x7e) || b >= 0x80 || b === SP || b === HTAB;
}

const VERSION_PREFIX = Buffer.from('HTTP/1.', 'latin1');

// States of the machine. The bytes are HTTP's (the probe "claims" them, and every later failure is a
// refused HTTP request, never "not mine") once they start like a request line: a method token and a space,
// or an empty line and then a token. Before that, failures mean "not HTTP/1". Claiming that early is what
// keeps a request that a lenient backend would still serve (two spaces, a non-ASCII target) from being
// routed as `protocol: other`, past every Host rule.
const S = {
  start: 0,
  leadingLf: 1,
  method: 2,
  target: 3,
  version: 4,
  versionMinor: 5,
  requestLineCr: 6,
  requestLineLf: 7,
  lineStart: 8,
  name: 9,
  value: 10,
  valueLf: 11,
  endLf: 12,
} as const;
type State = (typeof S)[keyof typeof S];

type Verdict = HttpMatch | NeedMore | Reject;

export function createHttpProbe(opts: HttpProbeOptions = {}): Probe<HttpMatch> {
  return new HttpHeadProbe(opts);
}

class HttpHeadProbe implements Probe<HttpMatch> {
  readonly name = 'http';
  private readonly maxHead: number;
  private readonly maxRequestLine: number;

  private pos = 0;
  private state: State = S.start;
  private result: HttpMatch | Reject | undefined;

  private lineStart = 0; // start of the request line (after an optional leading CRLF)
  private methodEnd = 0;
  private targetStart = 0;
  private targetEnd = 0;
  private versionIndex = 0;
  private recognised = false;
  /** A bare LF among the empty lines before the request line. */
  private bareLf = false;
  /** maxHeadBytes were scanned without the end of the head. */
  private atCap = false;

  private nameStart = 0;
  private nameEnd = 0;
  private valueStart = -1;
  private valueEnd = -1;
  private headerCount = 0;
  private hostStart = -1;
  private hostEnd = -1;
  private userAgentStart = -1;
  private userAgentEnd = -1;

  constructor(opts: HttpProbeOptions) {
    this.maxHead = opts.maxHeadBytes ?? HTTP_DEFAULT_MAX_HEAD_BYTES;
    this.maxRequestLine = Math.min(opts.maxRequestLineBytes ?? HTTP_DEFAULT_MAX_REQUEST_LINE_BYTES, this.maxHead);
  }

  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    if (this.result === undefined && !this.atCap) this.result = this.scan(bytes);
    if (this.result !== undefined) return this.result;
    if (!opts.final) return NEED_MORE;
    if (this.atCap) return (this.result = this.fail('http.head.too-large'));
    return this.fail(this.state < S.lineStart ? 'http.request-line.incomplete' : 'http.head.incomplete');
  }

  private isProxyV1(buf: Buffer): boolean {
    return this.methodEnd - this.lineStart === 5 && buf.toString('latin1', this.lineStart, this.methodEnd) === 'PROXY';
  }

  /** The request line so far is the h2c preface's: method "PRI", target "*". */
  private isPrefaceLine(buf: Buffer): boolean {
    return (
      this.methodEnd - this.lineStart === 3 &&
      buf.toString('latin1', this.lineStart, this.methodEnd) === 'PRI' &&
      this.targetEnd - this.targetStart === 1 &&
      buf[this.targetStart] === 0x2a
    );
  }

  /** Not HTTP/1 (before the request line is recognised) or a refused HTTP request (after). */
  private fail(reason: string): Reject {
    return this.recognised ? reject(reason, 'http') : reject(reason);
  }

  private scan(buf: Buffer): HttpMatch | Reject | undefined {
    const end = Math.min(buf.length, this.maxHead);
    for (let i = this.pos; i < end; i++) {
      const b = buf[i]!;
      // Bound the request line (and the empty lines before it), byte by byte so any chunking gives the same
      // answer.
      if (this.state < S.lineStart && i - this.lineStart >= this.maxRequestLine) {
        return this.stop(i, this.fail('http.request-line.too-long'));
      }
      switch (this.state) {
        case S.start:
          // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before the request-line, and
          // nginx, HAProxy and llhttp skip any number: so do we, bounded by the request-line cap, so that we
          // route such a request by the Host its server will read. A bare LF is refused like everywhere else.
          if (b === CR) {
            this.state = S.leadingLf;
          } else if (b === LF) {
            this.bareLf = true;
          } else if (TCHAR[b] === 1) {
            this.lineStart = i;
            this.state = S.method;
            // An empty line and then a token: an HTTP request with leading empty lines.
            if (i > 0) this.recognised = true;
            if (this.bareLf) return this.stop(i, this.fail('http.line.bare-lf'));
          } else {
            return this.stop(i, this.fail('http.request-line.invalid'));
          }
          break;
        case S.leadingLf:
          if (b !== LF) return this.stop(i, this.fail('http.request-line.invalid'));
          this.state = S.start;
          break;
        case S.method:
          if (b === SP) {
            // A method token and a space: from here on these bytes are an HTTP request (module comment),
            // unless the token is "PROXY", the PROXY v1 signature, which is the PROXY probe's.
            this.methodEnd = i;
            this.recognised ||= !this.isProxyV1(buf);
            this.targetStart = i + 1;
            this.state = S.target;
          } else if (TCHAR[b] !== 1) {
            return this.stop(i, this.fail('http.request-line.invalid'));
          } else if (i + 1 - this.lineStart > HTTP_MAX_METHOD_LENGTH) {
            return this.stop(i, this.fail('http.method.too-long'));
          }
          break;
        case S.target:
          if (b === SP) {
            if (i === this.targetStart || targetFormOf(buf.subarray(this.targetStart, i)) === undefined) {
              return this.stop(i, this.fail('http.request-line.invalid'));
            }
            this.targetEnd = i;
            this.versionIndex = 0;
            this.state = S.version;
          } else if (b < 0x21 || b > 0x7e) {
            // RFC 9112 §3.2: request-target is URI syntax, visible ASCII only.
            return this.stop(i, this.fail('http.request-line.invalid'));
          }
          break;
        case S.version:
          if (b !== VERSION_PREFIX[this.versionIndex]) {
            // "PRI * HTTP/2.0" is the h2c preface's first line (RFC 9113 §3.4): not ours, whatever the h2c
            // probe makes of the rest.
            if (this.versionIndex === 5) {
              return this.stop(i, this.isPrefaceLine(buf) ? reject('http.version.not-http1') : this.fail('http.version.not-http1'));
            }
            return this.stop(i, this.fail('http.request-line.invalid'));
          }
          this.versionIndex++;
          if (this.versionIndex === VERSION_PREFIX.length) this.state = S.versionMinor;
          break;
        case S.versionMinor:
          if (b < 0x30 || b > 0x39) return this.stop(i, this.fail('http.request-line.invalid'));
          // HTTP/1.2–1.9 do not exist; servers disagree on whether to read them as 1.1 (RFC 9110 §2.5) or
          // refuse them, so we refuse rather than guess which the backend does.
          if (b !== 0x30 && b !== 0x31) return this.stop(i, this.fail('http.version.unsupported'));
          this.state = S.requestLineCr;
          break;
        case S.requestLineCr:
          if (b !== CR) return this.stop(i, this.fail(b === LF ? 'http.line.bare-lf' : 'http.request-line.invalid'));
          this.state = S.requestLineLf;
          break;
        case S.requestLineLf:
          if (b !== LF) return this.stop(i, this.fail('http.line.bare-cr'));
          this.state = S.lineStart;
          break;
        case S.lineStart:
          if (b === CR) {
            this.state = S.endLf;
          } else if (b === SP || b === HTAB) {
            // RFC 9112 §5.2 obs-fold; before the first field line, RFC 9112 §2.2 whitespace after the start
            // line. Both MAY be rejected, and servers that accept them unfold differently.
            return this.stop(i, this.fail(this.headerCount === 0 ? 'http.header.leading-whitespace' : 'http.header.obs-fold'));
          } else if (b === LF) {
            return this.stop(i, this.fail('http.line.bare-lf'));
          } else if (TCHAR[b] === 1) {
            this.nameStart = i;
            this.state = S.name;
          } else {
            return this.stop(i, this.fail('http.header.invalid-name'));
          }
          break;
        case S.name:
          if (b === COLON) {
            this.nameEnd = i;
            this.valueStart = -1;
            this.valueEnd = -1;
            this.state = S.value;
          } else if (b === SP || b === HTAB) {
            // RFC 9112 §5.1: a server MUST reject whitespace between the field name and the colon.
            return this.stop(i, this.fail('http.header.space-before-colon'));
          } else if (TCHAR[b] !== 1) {
            return this.stop(i, this.fail('http.header.invalid-name'));
          }
          break;
        case S.value:
          if (b === CR) {
            this.state = S.valueLf;
          } else if (b === LF) {
            return this.stop(i, this.fail('http.line.bare-lf'));
          } else if (!isFieldByte(b)) {
            // RFC 9110 §5.5: NUL and other controls in a field value are invalid.
            return this.stop(i, this.fail('http.header.invalid-value'));
          } else if (b !== SP && b !== HTAB) {
            if (this.valueStart < 0) this.valueStart = i;
            this.valueEnd = i + 1;
          }
          break;
        case S.valueLf: {
          if (b !== LF) return this.stop(i, this.fail('http.line.bare-cr'));
          this.headerCount++;
          this.state = S.lineStart;
          const stop = this.endFieldLine(buf);
          if (stop !== undefined) return this.stop(i, stop);
          break;
        }
        case S.endLf:
          if (b !== LF) return this.stop(i, this.fail('http.line.bare-cr'));
          return this.stop(i, this.complete(buf, i + 1));
      }
    }
    this.pos = end;
    if (buf.length >= this.maxHead) {
      if (!this.recognised) return this.fail('http.request-line.too-long');
      // A request whose head does not end within the cap: still a valid prefix, so need-more until the
      // caller stops (final, which the proxy sets at this same cap: peek-too-large), then too-large.
      this.atCap = true;
    }
    return undefined;
  }

  private stop(at: number, v: HttpMatch | Reject): HttpMatch | Reject {
    this.pos = at + 1;
    return v;
  }

  private endFieldLine(buf: Buffer): Reject | undefined {
    if (this.nameEnd - this.nameStart === 10) {
      // Offsets only (no string until the head is complete). Two User-Agent fields are not an error for a
      // router (nothing is routed on it); the first one is kept.
      if (this.userAgentStart < 0 && isUserAgentName(buf, this.nameStart)) {
        this.userAgentStart = this.valueStart < 0 ? this.nameEnd + 1 : this.valueStart;
        this.userAgentEnd = this.valueStart < 0 ? this.userAgentStart : Math.min(this.valueEnd, this.userAgentStart + HTTP_MAX_USER_AGENT_BYTES);
      }
      return undefined;
    }
    if (this.nameEnd - this.nameStart !== 4 || buf.toString('latin1', this.nameStart, this.nameEnd).toLowerCase() !== 'host') {
      return undefined;
    }
    // RFC 9112 §3.2: a request with more than one Host field line MUST be rejected.
    if (this.hostStart >= 0) return this.fail('http.host.duplicate');
    this.hostStart = this.valueStart < 0 ? this.nameEnd + 1 : this.valueStart;
    this.hostEnd = this.valueStart < 0 ? this.hostStart : this.valueEnd;
    if (this.hostEnd - this.hostStart > MAX_HOST_FIELD_BYTES) return this.fail('http.host.too-long');
    const parsed = parseAuthority(buf.toString('latin1', this.hostStart, this.hostEnd), false);
    return typeof parsed === 'string' ? this.fail(parsed) : undefined;
  }

  private complete(buf: Buffer, headBytes: number): HttpMatch | Reject {
    const method = buf.toString('latin1', this.lineStart, this.methodEnd);
    const target = buf.toString('latin1', this.targetStart, this.targetEnd);
    const version = buf.toString('latin1', this.targetEnd + 1, this.targetEnd + 1 + VERSION_PREFIX.length + 1);
    const targetForm = targetFormOf(buf.subarray(this.targetStart, this.targetEnd))!;

    // RFC 9112 §3.2.3 / §3.2.4: authority-form is only for CONNECT, asterisk-form only for OPTIONS, and
    // CONNECT only takes authority-form (RFC 9110 §9.3.6).
    if ((targetForm === 'authority') !== (method === 'CONNECT') || (targetForm === 'asterisk' && method !== 'OPTIONS')) {
      return this.fail('http.target.form-mismatch');
    }

    const hostHeader = this.hostStart >= 0 ? buf.toString('latin1', this.hostStart, this.hostEnd) : undefined;
    // RFC 9112 §3.2: an HTTP/1.1 request without Host MUST be rejected, even in absolute-form (the client
    // MUST send Host anyway). HTTP/1.0 predates Host.
    if (hostHeader === undefined && version === 'HTTP/1.1') return this.fail('http.host.missing');
    const fromHeader = hostHeader === undefined ? undefined : parseAuthority(hostHeader, false);
    if (typeof fromHeader === 'string') return this.fail(fromHeader); // already checked at the line; kept total

    let routing: Authority | undefined = fromHeader;
    if (targetForm === 'absolute' || targetForm === 'authority') {
      const fromTarget = targetForm === 'absolute' ? parseAbsoluteTarget(target) : parseAuthority(target, true);
      if (typeof fromTarget === 'string') return this.fail(fromTarget);
      // RFC 9112 §3.2.2: the target's authority replaces Host. A backend that follows the RFC routes by
      // the target, one that does not routes by Host: when they disagree we cannot know which, so refuse.
      if (fromHeader !== undefined && !sameAuthority(fromTarget, fromHeader)) return this.fail('http.host.mismatch');
      routing = fromTarget;
    }

    const fields: HttpFields = {
      method,
      target,
      targetForm,
      version,
      ...(routing?.host !== undefined ? { host: routing.host } : {}),
      ...(hostHeader !== undefined ? { hostHeader } : {}),
      ...(routing?.port !== undefined ? { port: routing.port } : {}),
      ...(this.userAgentStart >= 0 ? { userAgent: buf.toString('latin1', this.userAgentStart, this.userAgentEnd) } : {}),
      headerCount: this.headerCount,
      headBytes,
    };
    return { kind: 'match', protocol: 'http', fields, consumed: headBytes };
  }
}

/**
 * RFC 9112 §3.2 request-target forms, judged from shape only (details are checked once the request line is
 * known to be HTTP/1): origin "/…", asterisk "*", absolute "scheme://…", authority "host:port".
 */
function targetFormOf(t: Buffer): HttpFields['targetForm'] | undefined {
  const first = t[0];
  if (first === 0x2f) return 'origin';
  if (first === 0x2a) return t.length === 1 ? 'asterisk' : undefined;
  const text = t.toString('latin1');
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) return 'absolute';
  if (text.includes(':')) return 'authority';
  return undefined;
}

interface Authority {
  /** undefined for an empty Host (RFC 9110 §7.2 allows it when the target has no authority). */
  readonly host: string | undefined;
  readonly port?: number;
  /** Scheme default port, for comparing `http://a/` with `Host: a:80`. */
  readonly defaultPort?: number;
}

// reg-name characters (RFC 3986 §3.2.2): unreserved / pct-encoded / sub-delims.
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;

/** uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2). Returns a reason code on failure. */
function parseAuthority(text: string, portRequired: boolean): Authority | string {
  if (text.includes('@')) return 'http.host.userinfo'; // RFC 9110 §4.2.4: userinfo is deprecated
  if (text === '') return portRequired ? 'http.host.invalid' : { host: undefined };
  let host: string;
  let rest: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'http.host.invalid';
    host = text.slice(0, close + 1);
    // IP-literal; zone identifiers would need "%25" (RFC 6874) and IPvFuture is unused: refuse both.
    const inner = host.slice(1, -1);
    if (inner.includes('%') || !isIPv6(inner)) return 'http.host.invalid';
    rest = text.slice(close + 1);
  } else {
    const colon = text.indexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    rest = colon < 0 ? '' : text.slice(colon);
    if (host.length > HTTP_MAX_HOST_BYTES) return 'http.host.too-long';
    if (!REG_NAME.test(host)) return 'http.host.invalid';
  }
  if (rest === '') return portRequired ? 'http.host.invalid' : { host };
  if (!/^:[0-9]{0,5}$/.test(rest)) return 'http.host.invalid';
  if (rest === ':') return portRequired ? 'http.host.invalid' : { host }; // port = *DIGIT may be empty
  const port = Number(rest.slice(1));
  if (port > 65535) return 'http.host.invalid';
  return { host, port };
}

/** `scheme "://" authority path-abempty [ "?" query ]` (RFC 9112 §3.2.2, RFC 3986 §3). */
function parseAbsoluteTarget(target: string): Authority | string {
  const sep = target.indexOf('://');
  const scheme = target.slice(0, sep).toLowerCase();
  const afterSlashes = target.slice(sep + 3);
  const endMatch = /[/?#]/.exec(afterSlashes);
  const authorityText = endMatch === null ? afterSlashes : afterSlashes.slice(0, endMatch.index);
  const parsed = parseAuthority(authorityText, false);
  if (typeof parsed === 'string') return parsed;
  // RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected as invalid.
  if (parsed.host === undefined) return 'http.host.invalid';
  const defaultPort = scheme === 'http' ? 80 : scheme === 'https' ? 443 : undefined;
  return defaultPort === undefined ? parsed : { ...parsed, defaultPort };
}

function sameAuthority(target: Authority, header: Authority): boolean {
  if (header.host === undefined || target.host === undefined) return false;
  // Hosts compare case-insensitively (RFC 3986 §3.2.2); a missing port means the scheme's default.
  if (target.host.toLowerCase() !== header.host.toLowerCase()) return false;
  const targetPort = target.port ?? target.defaultPort;
  const headerPort = header.port ?? target.defaultPort;
  return targetPort === headerPort;
}
