// Numbers from the TLS registries that the TLS parsers share. Only what we read is listed; every value
// cites where it is defined so a reviewer can check it against the RFC.

/** TLSPlaintext.type (RFC 8446 §5.1, RFC 5246 §6.2.1). */
export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
} as const;

/** HandshakeType (RFC 8446 §4, RFC 5246 §7.4, RFC 5077 §3.3 for new_session_ticket in TLS 1.2). */
export const HandshakeType = {
  helloRequest: 0,
  clientHello: 1,
  serverHello: 2,
  newSessionTicket: 4,
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateStatus: 22,
} as const;

/** ExtensionType values we decode (IANA "TLS ExtensionType Values"). */
export const ExtensionType = {
  serverName: 0x0000, // RFC 6066 §3
  supportedGroups: 0x000a, // RFC 8446 §4.2.7 (RFC 4492 "elliptic_curves")
  signatureAlgorithms: 0x000d, // RFC 8446 §4.2.3
  alpn: 0x0010, // RFC 7301 §3.1
  padding: 0x0015, // RFC 7685
  sessionTicket: 0x0023, // RFC 5077 §3.2
  preSharedKey: 0x0029, // RFC 8446 §4.2.11
  earlyData: 0x002a, // RFC 8446 §4.2.10
  supportedVersions: 0x002b, // RFC 8446 §4.2.1
  pskKeyExchangeModes: 0x002d, // RFC 8446 §4.2.9
  keyShare: 0x0033, // RFC 8446 §4.2.8
  encryptedClientHello: 0xfe0d, // draft-ietf-tls-esni §11.1
} as const;

/** ProtocolVersion values (RFC 8446 §4.2.1, RFC 5246 Appendix E, RFC 6101). */
export const TlsVersion = {
  ssl2: 0x0002,
  ssl3: 0x0300,
  tls10: 0x0301,
  tls11: 0x0302,
  tls12: 0x0303,
  tls13: 0x0304,
} as const;

/** Record header: type(1) + legacy_record_version(2) + length(2) (RFC 8446 §5.1). */
export const RECORD_HEADER_BYTES = 1 + 2 + 2;

/** Handshake header: msg_type(1) + length(3) (RFC 8446 §4). */
export const HANDSHAKE_HEADER_BYTES = 1 + 3;

/** TLSPlaintext.length "MUST NOT exceed 2^14 bytes" (RFC 8446 §5.1, RFC 5246 §6.2.1). */
export const MAX_PLAINTEXT_RECORD = 2 ** 14;

/** ClientHello / ServerHello `Random random` is 32 bytes (RFC 8446 §4.1.2). */
export const RANDOM_BYTES = 32;

/** `opaque legacy_session_id<0..32>` (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2). */
export const MAX_SESSION_ID_BYTES = 32;

/**
 * The ServerHello.random that marks a HelloRetryRequest: SHA-256("HelloRetryRequest")
 * (RFC 8446 §4.1.3).
 */
export const HELLO_RETRY_REQUEST_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
);

/**
 * GREASE values (RFC 8701 §2): 0x0a0a, 0x1a1a … 0xfafa — both bytes equal and of the form 0x?a. Used for
 * cipher suites, extensions, groups, versions and signature algorithms alike.
 */
export function isGrease(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}
