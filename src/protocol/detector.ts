// The probe table of docs/protocol.md: TLS, HTTP/1, h2c, PROXY, then recognisable others. First match wins;
// otherwise need-more while any probe needs more (and the input is not final); otherwise reject.
//
// A detector instance belongs to one connection and is fed the whole append-only peek buffer on every
// chunk. Probes keep cursors, and a probe's settled answer (match or reject) is remembered: a rejected
// prefix can never grow into valid input (every prefix of valid input is need-more), and a match never
// changes when more bytes follow it. So each chunk costs only the new bytes.
import { createH2cProbe, type H2cMatch } from './h2c-preface.js';
import { createHttpProbe, type HttpMatch } from './http-head.js';
import { createOtherProbes, type OtherMatch } from './other-probes.js';
import { isRecognisedProxyReject, NOT_PROXY, parseProxyHeader, proxySignature, type ProxyHeader } from './proxy-header.js';
import { createTlsProbe, type TlsMatch } from './tls-client-hello.js';
import { NEED_MORE, reject, type NeedMore, type ProbeOptions, type Probe, type Protocol, type Reject } from './verdict.js';

export type ProtocolMatch = TlsMatch | HttpMatch | H2cMatch | OtherMatch;

/** A match, with the PROXY header that preceded it when there was one (`consumed` then includes it). */
export type DetectMatch = ProtocolMatch & { readonly proxy?: ProxyHeader };

export interface DetectReject extends Reject {
  readonly proxy?: ProxyHeader;
  /**
   * True when the input stopped (final) while some probe still recognised it as a valid prefix: a
   * truncated hello or a slow request head. The proxy reports these as peek-timeout / peek-eof /
   * peek-too-large; only input that every probe refused is "unrecognised" (`protocol: other` routes).
   */
  readonly incomplete: boolean;
  /** Every probe's own reason, in table order: logged as detail for unrecognised input. */
  readonly reasons: readonly string[];
}

export type Detection = DetectMatch | NeedMore | DetectReject;

export interface DetectorOptions {
  /** Cap on a ClientHello's declared handshake length. */
  readonly maxHelloBytes?: number;
  /** Cap on an HTTP/1 request head. */
  readonly maxHeadBytes?: number;
  /** Recognise a PROXY v1/v2 header in front (whether it is trusted is the proxy's decision). */
  readonly proxyHeader?: boolean;
  /**
   * Refuse a PROXY header with this reason as soon as its signature is complete, without parsing it: the
   * source may not send one (`proxy.untrusted`), so its addresses and TLVs (up to 64 KiB of work) are
   * worth nothing. A detector that parsed a header refuses a second one behind it (`proxy.nested`).
   */
  readonly proxyRefusal?: string;
}

/** Reason for input that no probe recognised. */
export const UNRECOGNISED = 'detect.unrecognised';

type Settled = ProtocolMatch | Reject;

const NOT_FINAL: ProbeOptions = Object.freeze({ final: false });
const FINAL: ProbeOptions = Object.freeze({ final: true });

/** Table size: TLS, HTTP/1, h2c, then the others. */
const PROBE_COUNT = 3 + createOtherProbes().length;
/** Index of the first probe after PROXY in the table. */
const AFTER_PROXY = 3;

export class Detector {
  /**
   * The table's probes created so far, in order. A probe is created when the table first reaches it: a
   * ClientHello that arrives in one read settles on the first, and its connection never creates the rest.
   */
  private readonly probes: Probe<ProtocolMatch>[] = [];
  /** A probe's answer once it is a match or a reject (index as in `probes`). */
  private readonly settled: (Settled | undefined)[] = [];
  private readonly proxyEnabled: boolean;
  private proxySettled?: { kind: 'match'; header: ProxyHeader; consumed: number; inner: Detector } | Reject;
  private readonly options: DetectorOptions;

  constructor(options: DetectorOptions = {}) {
    this.options = options;
    this.proxyEnabled = options.proxyHeader ?? true;
  }

  /** Probe i of the table, created on first use. */
  private probeAt(i: number): Probe<ProtocolMatch> {
    const o = this.options;
    while (this.probes.length <= i) {
      switch (this.probes.length) {
        case 0:
          this.probes.push(createTlsProbe(o.maxHelloBytes === undefined ? {} : { maxHelloBytes: o.maxHelloBytes }));
          break;
        case 1:
          this.probes.push(createHttpProbe(o.maxHeadBytes === undefined ? {} : { maxHeadBytes: o.maxHeadBytes }));
          break;
        case 2:
          this.probes.push(createH2cProbe());
          break;
        default:
          this.probes.push(...createOtherProbes());
      }
    }
    return this.probes[i]!;
  }

  detect(bytes: Buffer, opts: ProbeOptions): Detection {
    // Probes before PROXY in the table: TLS, HTTP/1, h2c.
    let anyNeedMore = false;
    /** Bit i: probe i answered need-more on this call. */
    let pending = 0;
    for (let i = 0; i < PROBE_COUNT; i++) {
      if (i === AFTER_PROXY && this.proxyEnabled) {
        const p = this.detectProxy(bytes, opts);
        if (p !== undefined) return p;
        if (this.proxySettled === undefined) anyNeedMore = true;
      }
      let settled = this.settled[i];
      if (settled === undefined) {
        // Ask without `final` first: a probe that still needs more at the end makes the input
        // "incomplete" rather than unrecognised; then ask it again with `final` for its own reason.
        const v = this.probeAt(i).probe(bytes, NOT_FINAL);
        if (v.kind === 'need-more') {
          anyNeedMore = true;
          pending |= 1 << i;
          continue;
        }
        settled = v;
        this.settled[i] = v;
      }
      if (settled.kind === 'match') return settled;
    }
    if (!opts.final && anyNeedMore) return NEED_MORE;
    return this.finalReject(bytes, pending);
  }

  private detectProxy(bytes: Buffer, opts: ProbeOptions): Detection | undefined {
    const refusal = this.options.proxyRefusal;
    if (refusal !== undefined && this.proxySettled === undefined) {
      const sig = proxySignature(bytes);
      if (sig === 'complete') return { kind: 'reject', reason: refusal, incomplete: false, reasons: [refusal] };
      if (sig === 'none') this.proxySettled = reject(NOT_PROXY);
      return undefined;
    }
    if (this.proxySettled === undefined) {
      const v = parseProxyHeader(bytes, { final: false });
      if (v.kind === 'need-more') return undefined;
      this.proxySettled =
        v.kind === 'match'
          ? {
              kind: 'match',
              header: v.header,
              consumed: v.consumed,
              // One header, from the balancer we trust: a second one is the client's own, which a backend
              // that parses PROXY optionally would believe.
              inner: new Detector({ ...this.options, proxyRefusal: 'proxy.nested' }),
            }
          : v;
    }
    const p = this.proxySettled;
    if (p.kind === 'reject') {
      // A recognised PROXY signature whose header is broken is final: nothing after it can be trusted.
      if (isRecognisedProxyReject(p)) {
        return { kind: 'reject', reason: p.reason, incomplete: false, reasons: [p.reason] };
      }
      return undefined;
    }
    const inner = p.inner.detect(bytes.subarray(p.consumed), opts);
    switch (inner.kind) {
      case 'need-more':
        return inner;
      case 'match':
        return { ...inner, consumed: inner.consumed + p.consumed, proxy: p.header };
      case 'reject':
        return { ...inner, proxy: p.header };
    }
  }

  private finalReject(bytes: Buffer, pending: number): DetectReject {
    const reasons: string[] = [];
    let claimed: Reject | undefined;
    let truncated: Reject | undefined;
    for (let i = 0; i < PROBE_COUNT; i++) {
      let v = this.settled[i];
      if (v === undefined) {
        const probe = this.probeAt(i);
        const f = probe.probe(bytes, FINAL);
        // A probe that breaks the contract and still needs more is treated as truncated input.
        v = f.kind === 'need-more' ? { kind: 'reject', reason: `${probe.name}.truncated` } : f;
        this.settled[i] = v;
      }
      if (v.kind !== 'reject') continue; // cannot happen: a match returned earlier
      reasons.push(v.reason);
      if (claimed === undefined && v.protocol !== undefined) claimed = v;
      if (truncated === undefined && (pending & (1 << i)) !== 0) truncated = v;
    }
    const proxyIncomplete = this.proxyEnabled && this.proxySettled === undefined && bytes.length > 0;
    const incomplete = truncated !== undefined || proxyIncomplete;
    const chosen = claimed ?? truncated;
    const reason = chosen?.reason ?? (proxyIncomplete ? 'proxy.truncated' : UNRECOGNISED);
    const protocol: Protocol | undefined = chosen?.protocol;
    return protocol === undefined
      ? { kind: 'reject', reason, incomplete, reasons }
      : { kind: 'reject', reason, protocol, incomplete, reasons };
  }
}

/** One-shot detection over a complete buffer (inspect, tests). */
export function detect(bytes: Buffer, opts: ProbeOptions, options: DetectorOptions = {}): Detection {
  return new Detector(options).detect(bytes, opts);
}
