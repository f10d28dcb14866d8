// What routing gets to know about a connection, derived once from the detector's verdict.
import type { DetectMatch } from '../protocol/detector.js';

export interface PeekFacts {
  readonly protocol: 'tls' | 'http' | 'h2c' | 'other' | 'silent';
  readonly sni?: string;
  readonly alpn?: readonly string[];
  readonly host?: string;
  /** Host header as sent (with port): logged, not routed on. */
  readonly hostHeader?: string;
}

export function factsFromMatch(m: DetectMatch): PeekFacts {
  switch (m.protocol) {
    case 'tls': {
      const f = m.fields;
      return {
        protocol: 'tls',
        ...(f.sni !== undefined && { sni: f.sni }),
        ...(f.alpn !== undefined && { alpn: f.alpn }),
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
      return { protocol: 'other' };
  }
}
