// What routing gets to know about a connection, derived once from the detector's verdict.
import type { DetectMatch } from '../protocol/detector.js';
import { escapeName, isHostName } from '../protocol/host-name.js';

export interface PeekFacts {
  readonly protocol: 'tls' | 'http' | 'h2c' | 'other' | 'silent';
  readonly sni?: string;
  /** A server name that is not a DNS host name, escaped (protocol/host-name.ts): logged, never routed on. */
  readonly sniInvalid?: string;
  readonly alpn?: readonly string[];
  readonly host?: string;
  /** Host header as sent (with port): logged, not routed on. */
  readonly hostHeader?: string;
  /** `other` recognised by a probe: ssh, socks5, openvpn, adb, xmpp (routes' `match.other`). */
  readonly other?: string;
  /** The hello carried encrypted_client_hello (close line `ech`). */
  readonly ech?: true;
}

export function factsFromMatch(m: DetectMatch): PeekFacts {
  switch (m.protocol) {
    case 'tls': {
      const f = m.fields;
      // A server name that is not a host name is not routed on: the hello routes as one without SNI
      // (`sni: null` routes), and the close line shows what was sent, escaped.
      const valid = f.sni === undefined || isHostName(f.sni);
      return {
        protocol: 'tls',
        ...(f.sni !== undefined && valid && { sni: f.sni }),
        ...(!valid && { sniInvalid: escapeName(f.sni!) }),
        ...(f.alpn !== undefined && { alpn: f.alpn }),
        ...(f.ech && { ech: true as const }),
      };
    }
    case 'http': {
      const f = m.fields;
      return {
        protocol: 'http',
        ...(f.host !== undefined && { host: f.host }),
        ...(f.hostHeader !== undefined && { hostHeader: f.hostHeader }),
      };
    }
    case 'h2c':
      return { protocol: 'h2c' };
    case 'other':
      return { protocol: 'other', other: m.fields.name };
  }
}
