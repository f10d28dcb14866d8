// What counts as a DNS host name where twinport routes on one (SNI): RFC 6066 §3 says a HostName is "the
// fully qualified DNS hostname of the server", with IDNs as A-labels (RFC 5890 §2.3.2.1). That is the
// LDH syntax (RFC 1123 §2.1, RFC 5890): labels of letters, digits and hyphens, 1–63 octets, no hyphen at
// either end, at most 253 octets in all (255 on the wire), optionally a trailing dot. ASCII only.
//
// The ClientHello parser keeps the name exactly as sent (UTF-8 text is accepted, bytes that are not UTF-8
// are refused); whether it is a host name is decided here, so that a name like "bad name!.example.com" or
// a raw-UTF-8 "bücher.example" is never matched against host-name routes (a wildcard would take it) nor
// forwarded as a PROXY v2 AUTHORITY.

/** RFC 1035 §2.3.4 via RFC 1123: 253 characters of text (255 octets on the wire). */
export const MAX_HOST_NAME_CHARS = 253;
const MAX_LABEL_CHARS = 63;

function isLdh(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
}

/** True when `name` is a DNS host name in LDH form (trailing dot allowed). */
export function isHostName(name: string): boolean {
  const end = name.endsWith('.') ? name.length - 1 : name.length;
  if (end === 0 || end > MAX_HOST_NAME_CHARS) return false;
  let labelStart = 0;
  for (let i = 0; i <= end; i++) {
    if (i === end || name.charCodeAt(i) === 0x2e) {
      const n = i - labelStart;
      if (n === 0 || n > MAX_LABEL_CHARS) return false;
      if (name.charCodeAt(labelStart) === 0x2d || name.charCodeAt(i - 1) === 0x2d) return false;
      labelStart = i + 1;
      continue;
    }
    if (!isLdh(name.charCodeAt(i))) return false;
  }
  return true;
}

/**
 * `name` for a log line or `inspect`, every byte that is not printable ASCII (and the backslash) as
 * `\xHH` of its UTF-8 encoding: what the client sent, readable, one line, no control characters.
 */
export function escapeName(name: string): string {
  let out = '';
  for (const b of Buffer.from(name, 'utf8')) {
    out += b > 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}
