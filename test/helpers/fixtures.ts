// The captured first flights in test/fixtures/: which client made each one, which decoder reads it, and
// the facts its capture command guarantees (test/fixtures/capture.sh sets them; README.md lists the
// commands). Facts come from the command line, never from decoding the file: they are what a decoder —
// tshark, ours — must find.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DecodeAs } from './tshark-oracle.js';

/** The TLS name every TLS capture asks for (capture.sh NAME). */
export const TLS_NAME = 'a.example.com';
/** The Host of every plaintext capture (capture.sh PLAIN). */
export const PLAIN_HOST = 'plain.example.com';

/** X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem), the post-quantum hybrid group Chromium offers. */
export const X25519_MLKEM768 = 0x11ec;

export interface FixtureFacts {
  /** SNI as sent; null: no server_name extension. */
  sni?: string | null;
  alpn?: string[];
  legacyVersion?: number;
  /** null: no supported_versions extension. */
  supportedVersions?: number[] | null;
  /** The hello spans at least this many records. */
  minRecords?: number;
  /** No record of the hello is longer (`-max_send_frag`). */
  maxRecordLength?: number;
  /** The file is longer than this many bytes. */
  minBytes?: number;
  sessionIdLength?: number;
  /** 'none': no session_ticket extension; 'offered': one carrying a ticket (RFC 5077 §3.2). */
  ticket?: 'none' | 'offered';
  /** pre_shared_key with at least one identity (RFC 8446 §4.2.11). */
  psk?: boolean;
  earlyData?: boolean;
  /** Bytes follow the hello (0-RTT data, RFC 8446 §2.3). */
  trailing?: boolean;
  keyShareGroup?: number;
  http?: { method: string; target: string; version: string; hostName: string };
  h2?: { method: string; path: string; hostName: string };
  proxy?: { version: 1 | 2; source: string; destination: string };
}

export interface Fixture {
  /** File name without `.bin`. */
  name: string;
  /** The program that sent these bytes. */
  client: string;
  /** What follows the optional PROXY header. */
  decodeAs: DecodeAs;
  facts: FixtureFacts;
}

const TLS13_ONLY = [0x0304];

export const FIXTURES: readonly Fixture[] = [
  { name: 'openssl-tls10', client: 'openssl s_client -tls1', decodeAs: 'tls',
    facts: { sni: TLS_NAME, legacyVersion: 0x0301, supportedVersions: null, minRecords: 1 } },
  { name: 'openssl-tls11', client: 'openssl s_client -tls1_1', decodeAs: 'tls',
    facts: { sni: TLS_NAME, legacyVersion: 0x0302, supportedVersions: null } },
  { name: 'openssl-tls12', client: 'openssl s_client -tls1_2', decodeAs: 'tls',
    facts: { sni: TLS_NAME, legacyVersion: 0x0303, supportedVersions: null } },
  { name: 'openssl-tls13', client: 'openssl s_client -tls1_3', decodeAs: 'tls',
    facts: { sni: TLS_NAME, legacyVersion: 0x0303, supportedVersions: TLS13_ONLY } },
  { name: 'openssl-nosni', client: 'openssl s_client -noservername', decodeAs: 'tls',
    facts: { sni: null } },
  { name: 'openssl-alpn', client: 'openssl s_client -alpn h2,http/1.1', decodeAs: 'tls',
    facts: { sni: TLS_NAME, alpn: ['h2', 'http/1.1'] } },
  { name: 'openssl-frag512', client: 'openssl s_client -max_send_frag 512', decodeAs: 'tls',
    facts: { sni: TLS_NAME, minRecords: 3, maxRecordLength: 512, minBytes: 1024 } },
  { name: 'openssl-tls12-resume-id', client: 'openssl s_client -tls1_2 -no_ticket -sess_in', decodeAs: 'tls',
    facts: { sni: TLS_NAME, sessionIdLength: 32, ticket: 'none', supportedVersions: null } },
  { name: 'openssl-tls12-resume-ticket', client: 'openssl s_client -tls1_2 -sess_in', decodeAs: 'tls',
    facts: { sni: TLS_NAME, ticket: 'offered', supportedVersions: null } },
  { name: 'openssl-tls13-psk', client: 'openssl s_client -tls1_3 -sess_in', decodeAs: 'tls',
    facts: { sni: TLS_NAME, psk: true, earlyData: false, supportedVersions: TLS13_ONLY, trailing: false } },
  { name: 'openssl-tls13-early-data', client: 'openssl s_client -tls1_3 -sess_in -early_data', decodeAs: 'tls',
    facts: { sni: TLS_NAME, psk: true, earlyData: true, supportedVersions: TLS13_ONLY, trailing: true } },
  { name: 'curl-http', client: 'curl http://', decodeAs: 'http',
    facts: { http: { method: 'GET', target: '/index.html?q=1', version: 'HTTP/1.1', hostName: PLAIN_HOST } } },
  { name: 'curl-https', client: 'curl -k https://', decodeAs: 'tls',
    facts: { sni: TLS_NAME, alpn: ['h2', 'http/1.1'] } },
  { name: 'curl-h2c-prior-knowledge', client: 'curl --http2-prior-knowledge', decodeAs: 'http2',
    facts: { h2: { method: 'GET', path: '/', hostName: PLAIN_HOST } } },
  { name: 'curl-haproxy-protocol', client: 'curl --haproxy-protocol', decodeAs: 'http',
    facts: {
      proxy: { version: 1, source: '127.0.0.1', destination: '127.0.0.1' },
      http: { method: 'GET', target: '/', version: 'HTTP/1.1', hostName: PLAIN_HOST },
    } },
  { name: 'node-tls', client: 'node tls.connect', decodeAs: 'tls',
    facts: { sni: TLS_NAME, alpn: ['h2', 'http/1.1'] } },
  { name: 'node-http', client: 'node http.get', decodeAs: 'http',
    facts: { http: { method: 'GET', target: '/node?x=1', version: 'HTTP/1.1', hostName: PLAIN_HOST } } },
  { name: 'python-ssl', client: 'python3 ssl.create_default_context().wrap_socket', decodeAs: 'tls',
    facts: { sni: TLS_NAME } },
  { name: 'gnutls-cli', client: 'gnutls-cli --insecure', decodeAs: 'tls',
    facts: { sni: TLS_NAME } },
  { name: 'chromium', client: 'chromium --headless', decodeAs: 'tls',
    facts: { sni: TLS_NAME, alpn: ['h2', 'http/1.1'], minBytes: 1500, keyShareGroup: X25519_MLKEM768 } },
  { name: 'haproxy-proxy-v2-tls', client: 'curl -k https:// through haproxy send-proxy-v2', decodeAs: 'tls',
    facts: { proxy: { version: 2, source: '127.0.0.1', destination: '127.0.0.1' }, sni: TLS_NAME } },
];

/** test/fixtures/ in the source tree (the tests run from dist/, the captures are not compiled). */
export function fixturesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'test', 'fixtures');
    const up = dirname(dir);
    if (up === dir) throw new Error('fixtures: no package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function readFixture(name: string): Buffer {
  return readFileSync(join(fixturesDir(), `${name}.bin`));
}

/** Every capture file present, without `.bin`. */
export function fixtureFiles(): string[] {
  return readdirSync(fixturesDir())
    .filter((f) => f.endsWith('.bin'))
    .map((f) => f.slice(0, -'.bin'.length))
    .sort();
}

/** A Host header value (or :authority) without its port; these captures hold no IPv6 literals. */
export function hostName(host: string): string {
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
