// The SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2; RFC 4346 / 2246 Appendix E): the one
// SSLv2 message a TLS client may still send, so that one hello reaches SSLv2 and TLS servers alike.
//
//   uint8 msg_length[2];        high bit set; the other 15 bits: bytes after these two
//   uint8 msg_type;             1 (CLIENT-HELLO)
//   Version version;            the highest TLS version the client supports: 0x0300..0x0303
//   uint16 cipher_spec_length;  non-zero multiple of 3 (V2CipherSpec is 3 bytes)
//   uint16 session_id_length;   0 (TLS 1.2 clients MUST send 0) or 16 (SSLv2 session IDs)
//   uint16 challenge_length;    16..32
//   V2CipherSpec cipher_specs[cipher_spec_length];
//   opaque session_id[session_id_length];
//   opaque challenge[challenge_length];
//
// We recognise it strictly and answer a TLS match with `sslv2: true` (no extensions, so no SNI/ALPN) so
// `protocol: tls` routes still carry legacy clients. Anything else with the high bit set is "not mine":
// pure SSLv2 (version 0x0002) is dead (RFC 6176) and binary protocols often start with such bytes.

import { ByteReader, ParseStop, runParser } from './byte-reader.js';
import { computeJa4 } from './ja4.js';
import type { TlsFields, TlsMatch } from './tls-client-hello.js';
import { NEED_MORE, reject, type NeedMore, type Reject } from './verdict.js';

/** msg_type(1) + version(2) + three u16 lengths (RFC 5246 Appendix E.2). */
const SSLV2_FIXED_BYTES = 1 + 2 + 2 + 2 + 2;
const HEADER_BYTES = 2;
const V2_CIPHER_SPEC_BYTES = 3;
/** As MAX_CIPHER_SUITES for a TLS hello: 21 845 specs fit in the u16 length, no client sends 1 000. */
export const MAX_SSLV2_CIPHER_SPECS = 1024;

function fail(reason: string): never {
  throw new ParseStop(reason);
}

interface Sslv2Header {
  readonly version: number;
  readonly cipherSpecLength: number;
  readonly sessionIdLength: number;
  readonly challengeLength: number;
}

function readHeader(r: ByteReader, msgLength: number): Sslv2Header {
  if (r.u8('tls.sslv2.bad-length') !== 1) fail('tls.sslv2.bad-type');
  const version = r.u16('tls.sslv2.bad-length');
  if (version < 0x0300 || version > 0x0303) fail('tls.sslv2.bad-version');
  const cipherSpecLength = r.u16('tls.sslv2.bad-length');
  if (cipherSpecLength === 0 || cipherSpecLength % V2_CIPHER_SPEC_BYTES !== 0) fail('tls.sslv2.bad-ciphers');
  if (cipherSpecLength / V2_CIPHER_SPEC_BYTES > MAX_SSLV2_CIPHER_SPECS) fail('tls.sslv2.too-many-ciphers');
  const sessionIdLength = r.u16('tls.sslv2.bad-length');
  if (sessionIdLength !== 0 && sessionIdLength !== 16) fail('tls.sslv2.bad-session-id');
  const challengeLength = r.u16('tls.sslv2.bad-length');
  if (challengeLength < 16 || challengeLength > 32) fail('tls.sslv2.bad-challenge');
  if (SSLV2_FIXED_BYTES + cipherSpecLength + sessionIdLength + challengeLength !== msgLength) {
    fail('tls.sslv2.bad-length');
  }
  return { version, cipherSpecLength, sessionIdLength, challengeLength };
}

function buildFields(r: ByteReader, h: Sslv2Header, msgLength: number): TlsFields {
  const cipherSuites: number[] = [];
  const specs = r.sub(h.cipherSpecLength, 'tls.sslv2.bad-length');
  while (!specs.atEnd) {
    const kind = specs.u8('tls.sslv2.bad-length');
    const suite = specs.u16('tls.sslv2.bad-length');
    // V2CipherSpecs with a zero first byte are TLS cipher suites (Appendix E.2); the others are SSLv2
    // kinds that no TLS server can select, so they are left out.
    if (kind === 0) cipherSuites.push(suite);
  }
  const sessionId = Buffer.from(r.bytes(h.sessionIdLength, 'tls.sslv2.bad-length'));
  r.skip(h.challengeLength, 'tls.sslv2.bad-length');
  return new Sslv2Fields(h.version, sessionId, cipherSuites, msgLength);
}

/** As ClientHelloFields (tls-client-hello-body.ts): `ja4` computed on first read, not for every hello. */
class Sslv2Fields implements TlsFields {
  readonly compressionMethods: readonly number[] = [];
  readonly extensionTypes: readonly number[] = [];
  readonly earlyData = false;
  readonly ech = false;
  readonly records = 1;
  readonly sslv2 = true as const;
  #ja4: string | undefined;

  constructor(
    readonly legacyVersion: number,
    readonly sessionId: Buffer,
    readonly cipherSuites: readonly number[],
    readonly helloLength: number,
  ) {}

  get ja4(): string {
    return (this.#ja4 ??= computeJa4(this));
  }

  toJSON(): object {
    return { ...this, ja4: this.ja4 };
  }
}

/**
 * Probes the whole stream seen so far for an SSLv2-compatible CLIENT-HELLO. Stateless: the header checks
 * are O(1) and the cipher specs are walked only once the message is complete. Never throws.
 */
export function probeSslv2ClientHello(
  bytes: Buffer,
  opts: { readonly final: boolean; readonly maxHelloBytes: number },
): TlsMatch | NeedMore | Reject {
  if (bytes.length === 0 || (bytes[0]! & 0x80) === 0) return reject('tls.sslv2.bad-header');
  if (bytes.length < HEADER_BYTES) return opts.final ? reject('tls.sslv2.truncated') : NEED_MORE;
  const msgLength = ((bytes[0]! & 0x7f) << 8) | bytes[1]!;
  if (msgLength > opts.maxHelloBytes) return reject('tls.sslv2.too-large');
  const total = HEADER_BYTES + msgLength;
  const res = runParser(() => {
    const r = new ByteReader(bytes, HEADER_BYTES, total, Math.min(bytes.length, total));
    const h = readHeader(r, msgLength);
    // Walk the variable part only when all of it is here (linear cost when fed byte by byte).
    if (bytes.length < total) throw new ParseStop(undefined);
    return buildFields(r, h, msgLength);
  });
  if (res.ok) return { kind: 'match', protocol: 'tls', fields: res.value, consumed: total };
  if (res.reason !== undefined) return reject(res.reason);
  return opts.final ? reject('tls.sslv2.truncated') : NEED_MORE;
}
