// Probes for protocols twinport does not route on by name, only recognises: they all land on
// `protocol: other` with a `name`. Each is strict the way sslh's probe table is not always: need-more on
// every strict prefix of a valid opening, never a match on fewer bytes than the protocol's first message,
// and a structural check (lengths, magic values, fixed keywords) so random bytes do not match.
//
// The table (createOtherProbes) runs in this order: ssh, socks5, openvpn, adb, xmpp.
import { ByteReader, ParseStop, runParser } from './byte-reader.js';
import { NEED_MORE, reject, type Match, type NeedMore, type Probe, type ProbeOptions, type Reject } from './verdict.js';

export interface OtherFields {
  readonly name: string;
}
export type OtherMatch = Match<'other', OtherFields>;
type Verdict = OtherMatch | NeedMore | Reject;

/** A reader with no enclosing length: running out of bytes means "need more", never "a length lies". */
function openEnded(bytes: Buffer): ByteReader {
  return new ByteReader(bytes, 0, Number.POSITIVE_INFINITY, bytes.length);
}

function matched(name: string, consumed: number): OtherMatch {
  return { kind: 'match', protocol: 'other', fields: { name }, consumed };
}

/** bytes and prefix agree on their common length. */
function startsLike(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.compare(prefix, 0, n, 0, n) === 0;
}

// ------------------------------------------------------------------------------------------------- SSH

const SSH_PREFIXES = [Buffer.from('SSH-2.0-', 'latin1'), Buffer.from('SSH-1.99-', 'latin1')];
/** RFC 4253 §4.2: "The maximum length of the string is 255 characters, including the Carriage Return and Line Feed." */
export const SSH_BANNER_MAX = 255;

/**
 * RFC 4253 §4.2: the client sends "SSH-protoversion-softwareversion SP comments CR LF" as soon as it
 * connects (it does not wait for the server's). "SSH-1.99-" is a server's way of saying "2.0 and 1.x"
 * (RFC 4253 §5.1); clients use it too. A bare LF ending is accepted, as §4.2 allows for old versions.
 */
export const sshProbe: Probe<OtherMatch> = {
  name: 'ssh',
  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    const prefix = SSH_PREFIXES.find((p) => startsLike(bytes, p));
    if (prefix === undefined) return reject('other.ssh.mismatch');
    if (bytes.length < prefix.length) return opts.final ? reject('other.ssh.mismatch') : NEED_MORE;
    const window = bytes.subarray(0, Math.min(bytes.length, SSH_BANNER_MAX));
    for (let i = prefix.length; i < window.length; i++) {
      const b = window[i]!;
      if (b === 0x0a || (b === 0x0d && window[i + 1] === 0x0a)) {
        const text = window.toString('latin1', prefix.length, i);
        // softwareversion is at least one printable, non-space character.
        if (text === '' || text.startsWith(' ')) return reject('other.ssh.bad-banner', 'other');
        return matched('ssh', b === 0x0a ? i + 1 : i + 2);
      }
      if (b === 0x0d && i + 1 < window.length) return reject('other.ssh.bad-banner', 'other');
      if (b !== 0x0d && (b < 0x20 || b > 0x7e)) return reject('other.ssh.bad-banner', 'other');
    }
    if (window.length >= SSH_BANNER_MAX) return reject('other.ssh.too-long', 'other');
    return opts.final ? reject('other.ssh.incomplete', 'other') : NEED_MORE;
  },
};

// ---------------------------------------------------------------------------------------------- SOCKS5

/**
 * RFC 1928 §3: the client's first message is VER(5) NMETHODS(1..255) METHODS[NMETHODS], and then it waits
 * for the server's choice, so the whole greeting is there before anything else. Methods: 0x00–0x09 are
 * IANA-assigned, 0x80–0xFE private; 0xFF means "no acceptable method" and is never offered. A client offers
 * each method once.
 */
export const socks5Probe: Probe<OtherMatch> = {
  name: 'socks5',
  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    const r = runParser(() => {
      const rd = openEnded(bytes);
      const no = 'other.socks5.mismatch';
      if (rd.u8(no) !== 0x05) throw new ParseStop(no);
      const n = rd.u8(no);
      if (n === 0) throw new ParseStop('other.socks5.mismatch');
      const seen = new Set<number>();
      for (let i = 0; i < n; i++) {
        const m = rd.u8(no);
        if ((m > 0x09 && m < 0x80) || m === 0xff || seen.has(m)) throw new ParseStop('other.socks5.mismatch');
        seen.add(m);
      }
      return rd.offset;
    });
    if (r.ok) return matched('socks5', r.value);
    if (r.reason !== undefined) return reject(r.reason);
    return opts.final ? reject('other.socks5.mismatch') : NEED_MORE;
  },
};

// --------------------------------------------------------------------------------------------- OpenVPN

const OPENVPN_HARD_RESET_CLIENT_V2 = 7;
const OPENVPN_HARD_RESET_CLIENT_V3 = 10;
/** op(1) + session id(8) + ack array length(1) + message packet id(4), without tls-auth/tls-crypt. */
const OPENVPN_PLAIN_RESET_LENGTH = 1 + 8 + 1 + 4;
const OPENVPN_MAX_RESET_LENGTH = 1536;

/**
 * OpenVPN over TCP: each packet is prefixed by a 16-bit length; the client's first packet is
 * P_CONTROL_HARD_RESET_CLIENT_V2/V3 with key id 0 (opcode in the high 5 bits). Without tls-auth it is
 * exactly 14 bytes whose ack count and packet id are 0; with tls-auth/tls-crypt it is longer and partly
 * opaque, so only the opcode and the length bound are checked. We wait for the whole packet.
 */
export const openvpnProbe: Probe<OtherMatch> = {
  name: 'openvpn',
  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    const r = runParser(() => {
      const rd = openEnded(bytes);
      const no = 'other.openvpn.mismatch';
      const len = rd.u16(no);
      if (len < OPENVPN_PLAIN_RESET_LENGTH || len > OPENVPN_MAX_RESET_LENGTH) throw new ParseStop('other.openvpn.mismatch');
      const op = rd.u8(no);
      const opcode = op >> 3;
      if ((opcode !== OPENVPN_HARD_RESET_CLIENT_V2 && opcode !== OPENVPN_HARD_RESET_CLIENT_V3) || (op & 0x07) !== 0) {
        throw new ParseStop('other.openvpn.mismatch');
      }
      const rest = rd.bytes(len - 1, no);
      if (len === OPENVPN_PLAIN_RESET_LENGTH && !rest.subarray(8).every((b) => b === 0)) {
        throw new ParseStop('other.openvpn.mismatch');
      }
      return rd.offset;
    });
    if (r.ok) return matched('openvpn', r.value);
    if (r.reason !== undefined) return reject(r.reason);
    return opts.final ? reject('other.openvpn.mismatch') : NEED_MORE;
  },
};

// ------------------------------------------------------------------------------------------------- ADB

const ADB_CNXN = 0x4e584e43; // "CNXN" read little-endian
const ADB_CNXN_TEXT = Buffer.from('CNXN', 'latin1');
const ADB_HEADER = 24;
const ADB_MAX_PAYLOAD = 4096;

/**
 * Android Debug Bridge (AOSP adb/protocol.txt): a 24-byte little-endian header { command, arg0, arg1,
 * data_length, data_crc32, magic = command ^ 0xffffffff }; the host opens with CNXN and a "host::…"
 * banner payload. The magic word makes this strict; we wait for the payload too.
 */
export const adbProbe: Probe<OtherMatch> = {
  name: 'adb',
  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    if (!startsLike(bytes, ADB_CNXN_TEXT)) return reject('other.adb.mismatch');
    if (bytes.length < ADB_HEADER) return opts.final ? reject('other.adb.mismatch') : NEED_MORE;
    const dataLength = bytes.readUInt32LE(12);
    const magic = bytes.readUInt32LE(20);
    if ((magic ^ 0xffffffff) >>> 0 !== ADB_CNXN || dataLength > ADB_MAX_PAYLOAD) return reject('other.adb.mismatch');
    const total = ADB_HEADER + dataLength;
    if (bytes.length < total) return opts.final ? reject('other.adb.incomplete', 'other') : NEED_MORE;
    return matched('adb', total);
  },
};

// ------------------------------------------------------------------------------------------------ XMPP

const XML_DECL = Buffer.from('<?xml', 'latin1');
const STREAM_OPEN = Buffer.from('<stream:stream', 'latin1');
const XMPP_MAX_OPENING = 2048;

/**
 * XMPP (RFC 6120 §4.2, §4.8.2): the initiating entity sends an optional XML declaration then the opening
 * <stream:stream …> tag, whose default namespace is jabber:client (c2s) or jabber:server (s2s). We wait
 * for the end of that tag (bounded) and require the namespace.
 */
export const xmppProbe: Probe<OtherMatch> = {
  name: 'xmpp',
  probe(bytes: Buffer, opts: ProbeOptions): Verdict {
    const window = bytes.subarray(0, Math.min(bytes.length, XMPP_MAX_OPENING));
    let at = 0;
    if (window.length < XML_DECL.length && (startsLike(window, XML_DECL) || startsLike(window, STREAM_OPEN))) {
      return opts.final ? reject('other.xmpp.mismatch') : NEED_MORE;
    }
    if (startsLike(window, XML_DECL)) {
      const end = window.indexOf('?>', XML_DECL.length, 'latin1');
      if (end < 0) return more(window, opts);
      at = end + 2;
      while (at < window.length && isXmlSpace(window[at]!)) at++;
    }
    const tag = window.subarray(at);
    if (!startsLike(tag, STREAM_OPEN)) return reject('other.xmpp.mismatch');
    if (tag.length <= STREAM_OPEN.length) return more(window, opts);
    const next = tag[STREAM_OPEN.length]!;
    if (!isXmlSpace(next) && next !== 0x3e) return reject('other.xmpp.mismatch');
    const close = tag.indexOf(0x3e, STREAM_OPEN.length);
    if (close < 0) return more(window, opts);
    const attrs = tag.toString('latin1', STREAM_OPEN.length, close);
    if (!/\bxmlns\s*=\s*(['"])jabber:(?:client|server)\1/.test(attrs)) return reject('other.xmpp.mismatch');
    return matched('xmpp', at + close + 1);
  },
};

function more(window: Buffer, opts: ProbeOptions): Verdict {
  if (window.length >= XMPP_MAX_OPENING) return reject('other.xmpp.mismatch');
  return opts.final ? reject('other.xmpp.mismatch') : NEED_MORE;
}

function isXmlSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;
}

/** The "other" probe table, in the order the detector should run it. */
/** The names the other-protocol probes recognise (a route's `match.other`, the close line's `other`). */
export const OTHER_PROTOCOL_NAMES = ['ssh', 'socks5', 'openvpn', 'adb', 'xmpp'] as const;

export function createOtherProbes(): Probe<OtherMatch>[] {
  return [sshProbe, socks5Probe, openvpnProbe, adbProbe, xmppProbe];
}
