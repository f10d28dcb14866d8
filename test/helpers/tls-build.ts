// Builders of synthetic TLS bytes for adversarial tests: ClientHellos with any extension set (including
// broken ones), records of any size, ServerHellos, NewSessionTickets and SSLv2-compatible hellos.
// Written from the RFC structs (RFC 8446 §4.1.2, §4.1.3, §5.1; RFC 6066 §3; RFC 7301 §3.1; RFC 5077 §3.3;
// RFC 5246 Appendix E.2), independently of the parsers they test.

export function u8(n: number): Buffer {
  return Buffer.from([n & 0xff]);
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

export function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** `<..2^8-1>` vector: 1-byte length prefix. */
export function vec8(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u8(body.length), body]);
}

/** `<..2^16-1>` vector: 2-byte length prefix. */
export function vec16(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u16(body.length), body]);
}

export function u16s(values: readonly number[]): Buffer {
  return Buffer.concat(values.map(u16));
}

function bytesOf(s: string | Buffer): Buffer {
  return typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
}

export interface Ext {
  readonly type: number;
  readonly data: Buffer;
}

export function ext(type: number, data: Buffer = Buffer.alloc(0)): Ext {
  return { type, data };
}

/** server_name with one host_name entry per name given (RFC 6066 §3). */
export function extSni(...names: Array<string | Buffer>): Ext {
  return extSniEntries(names.map((n) => ({ type: 0, name: bytesOf(n) })));
}

export function extSniEntries(entries: ReadonlyArray<{ type: number; name: Buffer }>): Ext {
  return ext(0x0000, vec16(...entries.map((e) => Buffer.concat([u8(e.type), vec16(e.name)]))));
}

export function extAlpn(...names: Array<string | Buffer>): Ext {
  return ext(0x0010, vec16(...names.map((n) => vec8(bytesOf(n)))));
}

export function extSupportedVersions(...versions: number[]): Ext {
  return ext(0x002b, vec8(u16s(versions)));
}

export function extGroups(...groups: number[]): Ext {
  return ext(0x000a, vec16(u16s(groups)));
}

export function extSigAlgs(...algs: number[]): Ext {
  return ext(0x000d, vec16(u16s(algs)));
}

/** key_share with a 32-byte dummy key per group (client form, RFC 8446 §4.2.8). */
export function extKeyShare(...groups: number[]): Ext {
  return ext(0x0033, vec16(...groups.map((g) => Buffer.concat([u16(g), vec16(Buffer.alloc(32, g & 0xff))]))));
}

export function extPskModes(...modes: number[]): Ext {
  return ext(0x002d, vec8(Buffer.from(modes)));
}

/** pre_shared_key (client form): one 32-byte binder per identity unless `binders` says otherwise. */
export function extPsk(identities: readonly Buffer[], binders: number = identities.length): Ext {
  const ids = identities.map((id) => Buffer.concat([vec16(id), u32(0x01020304)]));
  const bs = Array.from({ length: binders }, (_, i) => vec8(Buffer.alloc(32, i)));
  return ext(0x0029, Buffer.concat([vec16(...ids), vec16(...bs)]));
}

export function extEarlyData(): Ext {
  return ext(0x002a);
}

export function extSessionTicket(ticket: Buffer = Buffer.alloc(0)): Ext {
  return ext(0x0023, ticket);
}

export function extEch(): Ext {
  return ext(0xfe0d, Buffer.from([0x01]));
}

/** padding (RFC 7685): `n` zero bytes — the easy way to make a hello big. */
export function extPadding(n: number): Ext {
  return ext(0x0015, Buffer.alloc(n));
}

export interface ClientHelloSpec {
  readonly legacyVersion?: number;
  readonly random?: Buffer;
  readonly sessionId?: Buffer;
  readonly cipherSuites?: readonly number[];
  readonly compressionMethods?: readonly number[];
  /** null: no extensions block at all (pre-TLS-1.2 style). */
  readonly extensions?: readonly Ext[] | null;
}

export const TYPICAL_CIPHERS: readonly number[] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030];

/** The extensions of a plain TLS 1.3 hello to `name` offering h2 and http/1.1. */
export function typicalExtensions(name = 'a.example.com'): Ext[] {
  return [
    extSni(name),
    extGroups(0x001d, 0x0017),
    extSigAlgs(0x0403, 0x0804, 0x0401),
    extAlpn('h2', 'http/1.1'),
    extSupportedVersions(0x0304, 0x0303),
    extPskModes(1),
    extKeyShare(0x001d),
  ];
}

export function extensionsBlock(exts: readonly Ext[]): Buffer {
  return vec16(...exts.map((e) => Buffer.concat([u16(e.type), vec16(e.data)])));
}

/** ClientHello body (after the 4-byte handshake header). */
export function clientHelloBody(spec: ClientHelloSpec = {}): Buffer {
  const exts = spec.extensions === undefined ? typicalExtensions() : spec.extensions;
  return Buffer.concat([
    u16(spec.legacyVersion ?? 0x0303),
    spec.random ?? Buffer.alloc(32, 0x5a),
    vec8(spec.sessionId ?? Buffer.alloc(32, 0x11)),
    vec16(u16s(spec.cipherSuites ?? TYPICAL_CIPHERS)),
    vec8(Buffer.from(spec.compressionMethods ?? [0])),
    exts === null ? Buffer.alloc(0) : extensionsBlock(exts),
  ]);
}

export function handshakeMessage(type: number, body: Buffer): Buffer {
  return Buffer.concat([u8(type), u24(body.length), body]);
}

export function clientHelloMessage(spec: ClientHelloSpec = {}): Buffer {
  return handshakeMessage(1, clientHelloBody(spec));
}

export function tlsRecord(type: number, payload: Buffer, version = 0x0301): Buffer {
  return Buffer.concat([u8(type), u16(version), u16(payload.length), payload]);
}

export interface RecordOptions {
  readonly type?: number;
  readonly version?: number;
  /** Fragment size of every record, or the sizes in turn (the last repeats). Default 2^14. */
  readonly sizes?: number | readonly number[];
}

/** Splits `payload` into records (RFC 8446 §5.1 fragmentation). */
export function toRecords(payload: Buffer, opts: RecordOptions = {}): Buffer {
  const sizes = typeof opts.sizes === 'number' ? [opts.sizes] : (opts.sizes ?? [16384]);
  const out: Buffer[] = [];
  let at = 0;
  let i = 0;
  while (at < payload.length) {
    const size = sizes[Math.min(i, sizes.length - 1)]!;
    out.push(tlsRecord(opts.type ?? 22, payload.subarray(at, at + size), opts.version));
    at += size;
    i++;
  }
  return Buffer.concat(out);
}

/** A whole first flight: the hello in records. */
export function clientHelloRecords(spec: ClientHelloSpec = {}, opts: RecordOptions = {}): Buffer {
  return toRecords(clientHelloMessage(spec), opts);
}

export interface ServerHelloSpec {
  readonly legacyVersion?: number;
  readonly random?: Buffer;
  readonly sessionId?: Buffer;
  readonly cipherSuite?: number;
  /** null: no extensions block. */
  readonly extensions?: readonly Ext[] | null;
}

export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

export function serverHelloMessage(spec: ServerHelloSpec = {}): Buffer {
  const exts = spec.extensions === undefined ? [] : spec.extensions;
  return handshakeMessage(
    2,
    Buffer.concat([
      u16(spec.legacyVersion ?? 0x0303),
      spec.random ?? Buffer.alloc(32, 0x33),
      vec8(spec.sessionId ?? Buffer.alloc(0)),
      u16(spec.cipherSuite ?? 0xc02f),
      u8(0),
      exts === null ? Buffer.alloc(0) : extensionsBlock(exts),
    ]),
  );
}

/** ServerHello supported_versions: the selected version alone (RFC 8446 §4.2.1). */
export function extSelectedVersion(version: number): Ext {
  return ext(0x002b, u16(version));
}

export function extSelectedPsk(identity: number): Ext {
  return ext(0x0029, u16(identity));
}

export function newSessionTicketMessage(ticket: Buffer, lifetime = 7200): Buffer {
  return handshakeMessage(4, Buffer.concat([u32(lifetime), vec16(ticket)]));
}

export interface Sslv2Spec {
  readonly version?: number;
  readonly cipherSpecs?: readonly number[];
  readonly sessionId?: Buffer;
  readonly challenge?: Buffer;
  /** Override msg_type. */
  readonly msgType?: number;
}

/** SSLv2-compatible CLIENT-HELLO (RFC 5246 Appendix E.2), 2-byte header. */
export function sslv2ClientHello(spec: Sslv2Spec = {}): Buffer {
  const specs = spec.cipherSpecs ?? [0x00002f, 0x000035, 0x010080];
  const sid = spec.sessionId ?? Buffer.alloc(0);
  const challenge = spec.challenge ?? Buffer.alloc(32, 0x77);
  const cs = Buffer.concat(specs.map((s) => Buffer.from([(s >> 16) & 0xff, (s >> 8) & 0xff, s & 0xff])));
  const body = Buffer.concat([
    u8(spec.msgType ?? 1),
    u16(spec.version ?? 0x0301),
    u16(cs.length),
    u16(sid.length),
    u16(challenge.length),
    cs,
    sid,
    challenge,
  ]);
  return Buffer.concat([u16(0x8000 | body.length), body]);
}
