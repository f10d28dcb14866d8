// The config `twinport` runs with no --config (README.md): one listener, TLS to the HTTPS backend,
// plaintext HTTP/1 and h2c to the HTTP backend. Built as YAML text and put through the same validator as a
// file, so a bad --listen value gets the same message a bad bind in a file would.
import { stringify } from 'yaml';
import type { TwinportConfig } from './types.js';
import { parseConfigText } from './validate.js';

export const DEMO_SOURCE = '<demo>';

export function buildDemoConfig(o: { listen: string; httpBackend: string; httpsBackend: string }): TwinportConfig {
  const text = stringify({
    listeners: [
      {
        name: 'demo',
        bind: o.listen,
        routes: [
          { match: { protocol: 'tls' }, to: 'https' },
          { match: { protocol: ['http', 'h2c'] }, to: 'http' },
        ],
      },
    ],
    pools: {
      // PROXY v2 lets the demo backends show the real client and what twinport saw (protocol, SNI/Host).
      http: { servers: [{ address: o.httpBackend, send_proxy: 'v2' }] },
      https: { servers: [{ address: o.httpsBackend, send_proxy: 'v2' }] },
    },
  });
  return parseConfigText(text, DEMO_SOURCE, DEMO_SOURCE);
}
