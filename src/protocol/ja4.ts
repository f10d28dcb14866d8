// JA4 TLS client fingerprint (FoxIO, technical_details/JA4.md, v0.18):
//
//   t 13 d 15 16 h2 _ 8daaf6152771 _ e5627efa2ab1
//   │ │  │ │  │  │    │              └ sha256("sorted extensions_sigalgs in wire order")[0..12]
//   │ │  │ │  │  │    └ sha256("sorted cipher suites")[0..12]
//   │ │  │ │  │  └ first and last character of the first ALPN value ("00" if none)
//   │ │  │ │  └ extension count (incl. SNI and ALPN), capped at 99
//   │ │  │ └ cipher suite count, capped at 99
//   │ │  └ "d" when the SNI extension is present, "i" otherwise
//   │ └ highest supported_versions value, else ClientHello.legacy_version
//   └ "t": TLS over TCP (we never see QUIC or DTLS)
//
// GREASE values (RFC 8701) are ignored everywhere. Values are 4-digit lower-case hex, comma separated.
// A pure function of parsed fields: the parser calls it once per hello.

import crypto from 'node:crypto';
import { ExtensionType, isGrease } from './tls-constants.js';

/** The ClientHello fields JA4 reads (a subset of TlsFields). */
export interface Ja4Input {
  readonly legacyVersion: number;
  readonly cipherSuites: readonly number[];
  /** In wire order. */
  readonly extensionTypes: readonly number[];
  /** ALPN names decoded latin1 (one char per byte). */
  readonly alpn?: readonly string[];
  readonly supportedVersions?: readonly number[];
  readonly signatureAlgorithms?: readonly number[];
}

const VERSION_LABELS: ReadonlyMap<number, string> = new Map([
  [0x0304, '13'],
  [0x0303, '12'],
  [0x0302, '11'],
  [0x0301, '10'],
  [0x0300, 's3'],
  [0x0002, 's2'],
  [0x0100, 's1'],
]);

const EMPTY_HASH = '000000000000';

/**
 * 4-digit hex of every u16, built on the first JA4: 65 536 strings cost about 20 ms and a few MB, which a
 * process that never fingerprints (the proxy routes on SNI and ALPN) should not pay at import.
 */
let hex4Table: string[] | undefined;

function hex4(n: number): string {
  hex4Table ??= Array.from({ length: 0x10000 }, (_, v) => v.toString(16).padStart(4, '0'));
  return hex4Table[n & 0xffff]!;
}

function count2(n: number): string {
  return String(Math.min(n, 99)).padStart(2, '0');
}

// crypto.hash (Node ≥ 20.12) is the one-shot form: no Hash object per call.
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;

function truncatedSha256(s: string): string {
  const hex = oneShot !== undefined ? oneShot('sha256', s, 'hex') : crypto.createHash('sha256').update(s, 'latin1').digest('hex');
  return hex.slice(0, 12);
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function versionLabel(f: Ja4Input): string {
  let version = f.legacyVersion;
  // supported_versions, when present, supersedes legacy_version (RFC 8446 §4.2.1); JA4 takes its maximum.
  if (f.extensionTypes.includes(ExtensionType.supportedVersions) && f.supportedVersions !== undefined) {
    const offered = f.supportedVersions.filter((v) => !isGrease(v));
    if (offered.length > 0) version = Math.max(...offered);
  }
  return VERSION_LABELS.get(version) ?? '00';
}

function alpnLabel(alpn: readonly string[] | undefined): string {
  const first = alpn?.[0];
  if (first === undefined || first.length === 0) return '00';
  const a = first.charCodeAt(0) & 0xff;
  const z = first.charCodeAt(first.length - 1) & 0xff;
  // A 2-byte GREASE ALPN value (RFC 8701 §2 reserves them for ALPN too) counts as no value.
  if (first.length === 2 && isGrease((a << 8) | z)) return '00';
  // Non-alphanumeric ends: first hex digit of the first byte, last hex digit of the last byte.
  if (!isAlnum(a) || !isAlnum(z)) return (a >> 4).toString(16) + (z & 0x0f).toString(16);
  return String.fromCharCode(a, z);
}

export function computeJa4(f: Ja4Input): string {
  const ciphers = f.cipherSuites.filter((c) => !isGrease(c));
  const extensions = f.extensionTypes.filter((e) => !isGrease(e));
  const sni = extensions.includes(ExtensionType.serverName) ? 'd' : 'i';
  const a = `t${versionLabel(f)}${sni}${count2(ciphers.length)}${count2(extensions.length)}${alpnLabel(f.alpn)}`;

  const b =
    ciphers.length === 0
      ? EMPTY_HASH
      : truncatedSha256(
          ciphers
            .map(hex4)
            .sort()
            .join(','),
        );

  const hashed = extensions
    .filter((e) => e !== ExtensionType.serverName && e !== ExtensionType.alpn)
    .map(hex4)
    .sort();
  const sigalgs = (f.signatureAlgorithms ?? []).filter((s) => !isGrease(s)).map(hex4);
  const c =
    hashed.length === 0
      ? EMPTY_HASH
      : truncatedSha256(sigalgs.length === 0 ? hashed.join(',') : `${hashed.join(',')}_${sigalgs.join(',')}`);

  return `${a}_${b}_${c}`;
}
