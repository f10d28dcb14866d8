// The PROXY header twinport sends to a server with `send_proxy` (docs/proxy-protocol.md). v2 carries what
// we peeked: PP2_TYPE_AUTHORITY (SNI, or Host for plaintext HTTP), PP2_TYPE_ALPN (the client's first ALPN
// offer) and a twinport TLV with the protocol.
import { buildProxyV1, buildProxyV2 } from '../protocol/proxy-header-build.js';
import type { ProxyTlv } from '../protocol/proxy-header.js';
import type { PeekFacts } from './facts.js';

/** PP2_TYPE_ALPN, proxy-protocol.txt §2.2.1: "the upper layer protocol in use over the connection". */
export const PP2_TYPE_ALPN = 0x01;
/** PP2_TYPE_AUTHORITY, proxy-protocol.txt §2.2.2 */
export const PP2_TYPE_AUTHORITY = 0x02;
/** First of the custom range 0xE0–0xEF (§2.2.8): the protocol twinport detected, as ASCII. */
export const PP2_TYPE_TWINPORT_PROTOCOL = 0xe0;

/** The longest AUTHORITY sent: a DNS name's 255 octets (RFC 1035 §2.3.4). */
export const MAX_AUTHORITY_BYTES = 255;

export interface ProxyEnds {
  readonly clientIp: string;
  readonly clientPort: number;
  readonly localIp: string;
  readonly localPort: number;
  readonly facts: PeekFacts;
}

export function buildServerProxyHeader(version: 'v1' | 'v2', ends: ProxyEnds): Buffer {
  const source = { address: ends.clientIp, port: ends.clientPort };
  const destination = { address: ends.localIp, port: ends.localPort };
  if (version === 'v1') return buildProxyV1(source, destination);
  const tlvs: ProxyTlv[] = [];
  const authority = ends.facts.sni ?? ends.facts.host;
  // A host name (SNI and Host are both capped at 255 bytes by their probes). The check keeps the header
  // within its 64 KiB whatever a future probe lets through: a name that long is left out, not sent.
  const value = authority === undefined ? undefined : Buffer.from(authority, 'utf8');
  if (value !== undefined && value.length <= MAX_AUTHORITY_BYTES) tlvs.push({ type: PP2_TYPE_AUTHORITY, value });
  // twinport never sees the negotiated protocol (it does not decrypt): it sends the client's first offer,
  // which HAProxy behind it can route on (fc_pp_tlv(0x01)). ALPN names are at most 255 bytes (RFC 7301).
  const alpn = ends.facts.alpn?.[0];
  if (alpn !== undefined) tlvs.push({ type: PP2_TYPE_ALPN, value: Buffer.from(alpn, 'latin1') });
  tlvs.push({ type: PP2_TYPE_TWINPORT_PROTOCOL, value: Buffer.from(ends.facts.protocol, 'ascii') });
  return buildProxyV2({ command: 'PROXY', source, destination, tlvs });
}
