// IP address syntax, without node:net: the pure layers must not reach for the socket module, even for its
// string checks. Same answers as net.isIPv4 / net.isIPv6 (a property test holds them together).

const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]\\d|\\d)';
const IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);
const GROUP = /^[0-9a-fA-F]{1,4}$/;
const ZONE = /^[0-9a-zA-Z\-.:]+$/;

/** Dotted quad, no leading zeros (RFC 3986 §3.2.2 IPv4address). */
export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

/** RFC 4291 §2.2 text forms, with an optional embedded IPv4 tail and an RFC 6874 zone (`%eth0`). */
export function isIPv6(s: string): boolean {
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) {
    if (!ZONE.test(text.slice(zone + 1))) return false;
    text = text.slice(0, zone);
  }
  const lastColon = text.lastIndexOf(':');
  if (lastColon < 0) return false;
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!isIPv4(tail)) return false;
    text = `${text.slice(0, lastColon + 1)}0:0`; // the quad stands for two groups
  }
  const gap = text.indexOf('::');
  if (gap !== text.lastIndexOf('::')) return false;
  if (gap < 0) {
    const groups = text.split(':');
    return groups.length === 8 && groups.every((g) => GROUP.test(g));
  }
  const head = text.slice(0, gap);
  const rest = text.slice(gap + 2);
  const groups = [...(head === '' ? [] : head.split(':')), ...(rest === '' ? [] : rest.split(':'))];
  return groups.length <= 7 && groups.every((g) => GROUP.test(g));
}

export function isIP(s: string): 0 | 4 | 6 {
  return isIPv4(s) ? 4 : isIPv6(s) ? 6 : 0;
}
