// The JSON shape of `twinport inspect` (docs/protocol.md). Field names are a public interface: extend, never
// rename. Hex versions as "0x0304", session IDs and identities as lower-case hex.
import type { Detection } from '../protocol/detector.js';
import { escapeName, isHostName } from '../protocol/host-name.js';
import type { ProxyHeader, ProxyAddress } from '../protocol/proxy-header.js';
import type { TlsFields } from '../protocol/tls-client-hello.js';

const hex16 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

function address(a: ProxyAddress | undefined): string | undefined {
  if (a === undefined) return undefined;
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export function proxyView(h: ProxyHeader): Record<string, unknown> {
  const out: Record<string, unknown> = { version: h.version, command: h.command, family: h.family };
  const src = address(h.source);
  const dst = address(h.destination);
  if (src !== undefined) out['source'] = src;
  if (dst !== undefined) out['destination'] = dst;
  if (h.authority !== undefined) out['authority'] = h.authority;
  if (h.alpn !== undefined) out['alpn'] = h.alpn;
  if (h.tlvs.length > 0) out['tlvs'] = h.tlvs.map((t) => ({ type: hex8(t.type), length: t.value.length }));
  out['length'] = h.length;
  return out;
}

const hex8 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

export function tlsView(f: TlsFields): Record<string, unknown> {
  const tls: Record<string, unknown> = {
    records: f.records,
    helloLength: f.helloLength,
    versions: (f.supportedVersions ?? [f.legacyVersion]).map(hex16),
    ticket: f.sessionTicket !== undefined && f.sessionTicket.length > 0,
    psk: f.pskIdentities !== undefined && f.pskIdentities.length > 0,
    ech: f.ech,
    earlyData: f.earlyData,
  };
  if (f.sslv2 === true) tls['sslv2'] = true;
  if (f.keyShareGroups !== undefined) tls['keyShareGroups'] = f.keyShareGroups.map(hex16);
  if (f.sessionTicket !== undefined && f.sessionTicket.length > 0) tls['ticketLength'] = f.sessionTicket.length;
  if (f.pskIdentities !== undefined && f.pskIdentities.length > 0) {
    tls['pskIdentities'] = f.pskIdentities.map((b) => b.toString('hex'));
  }
  tls['ja4'] = f.ja4;
  return tls;
}

/** `total` is the number of input bytes, so `remaining` (early data, pipelined bytes) can be shown. */
export function inspectView(d: Detection, total: number): Record<string, unknown> {
  switch (d.kind) {
    case 'need-more':
      return { verdict: 'need-more', length: total };
    case 'reject': {
      const out: Record<string, unknown> = { verdict: 'reject' };
      if (d.protocol !== undefined) out['protocol'] = d.protocol;
      out['reason'] = d.reason;
      if (d.incomplete) out['incomplete'] = true;
      if (d.protocol === undefined && !d.incomplete && d.reasons.length > 0) out['reasons'] = d.reasons;
      if (d.proxy !== undefined) out['proxy'] = proxyView(d.proxy);
      return out;
    }
    case 'match': {
      const out: Record<string, unknown> = { verdict: 'match', protocol: d.protocol };
      switch (d.protocol) {
        case 'tls': {
          const f = d.fields;
          if (f.sni !== undefined) out['sni'] = f.sni;
          // Routed as a hello without SNI: not a DNS host name (protocol/host-name.ts).
          if (f.sni !== undefined && !isHostName(f.sni)) out['sniInvalid'] = escapeName(f.sni);
          if (f.alpn !== undefined) out['alpn'] = f.alpn;
          out['sessionId'] = f.sessionId.toString('hex');
          out['tls'] = tlsView(f);
          break;
        }
        case 'http': {
          const f = d.fields;
          out['method'] = f.method;
          out['target'] = f.target;
          out['version'] = f.version;
          if (f.host !== undefined) out['host'] = f.host;
          if (f.port !== undefined) out['port'] = f.port;
          out['targetForm'] = f.targetForm;
          break;
        }
        case 'h2c':
          break;
        case 'other':
          out['name'] = d.fields.name;
          break;
      }
      if (d.proxy !== undefined) out['proxy'] = proxyView(d.proxy);
      out['consumed'] = d.consumed;
      if (total > d.consumed) out['remaining'] = total - d.consumed;
      return out;
    }
  }
}
