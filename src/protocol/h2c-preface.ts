// HTTP/2 with prior knowledge (RFC 9113 §3.3): the client opens with the connection preface, the exact 24
// octets below (RFC 9113 §3.4), then its SETTINGS frame. The preface was chosen so HTTP/1 servers reject
// it ("PRI * HTTP/2.0" is not an HTTP/1.x request line), which is also why the HTTP/1 probe says "not mine".
import { NEED_MORE, reject, type Match, type NeedMore, type Probe, type ProbeOptions, type Reject } from './verdict.js';

/** The preface carries nothing to route on; SETTINGS come after it and are not read. */
export type H2cFields = {};
export type H2cMatch = Match<'h2c', H2cFields>;

/** RFC 9113 §3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n". */
export const H2C_PREFACE: Buffer = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function createH2cProbe(): Probe<H2cMatch> {
  return { name: 'h2c', probe: probeH2cPreface };
}

/**
 * The preface's first line, "PRI * HTTP/2.0\r\n": no HTTP/1 request, so bytes that start with it are an h2c
 * client's (the probe claims them), and a mismatch or a stop after it is a broken h2c preface, refused
 * rather than routed as `other`. Before it, a mismatch is "not mine".
 */
export const H2C_PREFACE_LINE_BYTES = 16;

/** Stateless: at most 24 bytes are ever compared, so re-checking on each call is constant work. */
export function probeH2cPreface(bytes: Buffer, opts: ProbeOptions): H2cMatch | NeedMore | Reject {
  const n = Math.min(bytes.length, H2C_PREFACE.length);
  const claimed = (): boolean => bytes.length >= H2C_PREFACE_LINE_BYTES && bytes.compare(H2C_PREFACE, 0, H2C_PREFACE_LINE_BYTES, 0, H2C_PREFACE_LINE_BYTES) === 0;
  if (bytes.compare(H2C_PREFACE, 0, n, 0, n) !== 0) return claimed() ? reject('h2c.preface.mismatch', 'h2c') : reject('h2c.preface.mismatch');
  if (n === H2C_PREFACE.length) return { kind: 'match', protocol: 'h2c', fields: {}, consumed: H2C_PREFACE.length };
  if (!opts.final) return NEED_MORE;
  return claimed() ? reject('h2c.preface.incomplete', 'h2c') : reject('h2c.preface.incomplete');
}
