// The probe table of design.md §7: TLS, HTTP/1, h2c, PROXY, then recognisable others. First match wins;
// otherwise need-more while any probe needs more (and the input is not final); otherwise reject.
//
// A detector instance belongs to one connection and is fed the whole append-only peek buffer on every
// chunk. Probes keep cursors, and a probe's settled answer (match or reject) is remembered: a rejected
// prefix can never grow into valid input (every prefix of valid input is need-more), and a match never
// changes when more bytes follow it. So each chunk costs only the new bytes.
import { createH2cProbe, type H2cMatch } from './h2c-preface.js';
import { createHttpProbe, type HttpMatch } from './http-head.js';
import { createOtherProbes, type OtherMatch } from './other-probes.js';
import { isRecognisedProxyReject, parseProxyHeader, type ProxyHeader } from './proxy-header.js';
import { createTlsProbe, type TlsMatch } from './tls-client-hello.js';
import { NEED_MORE, type NeedMore, type ProbeOptions, type Probe, type Protocol, type Reject } from './verdict.js';

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
}

/** Reason for input that no probe recognised. */
export const UNRECOGNISED = 'detect.unrecognised';

type Settled = ProtocolMatch | Reject;

interface Slot {
  readonly probe: Probe<ProtocolMatch>;
  settled?: Settled;
}

export class Detector {
  private readonly slots: Slot[];
  private readonly proxyEnabled: boolean;
  private proxySettled?: { kind: 'match'; header: ProxyHeader; consumed: number; inner: Detector } | Reject;
  private readonly options: DetectorOptions;

  constructor(options: DetectorOptions = {}) {
    this.options = options;
    this.proxyEnabled = options.proxyHeader ?? true;
    const tls = createTlsProbe(options.maxHelloBytes === undefined ? {} : { maxHelloBytes: options.maxHelloBytes });
    const http = createHttpProbe(options.maxHeadBytes === undefined ? {} : { maxHeadBytes: options.maxHeadBytes });
    const probes: Probe<ProtocolMatch>[] = [tls, http, createH2cProbe(), ...createOtherProbes()];
    this.slots = probes.map((probe) => ({ probe }));
  }

  detect(bytes: Buffer, opts: ProbeOptions): Detection {
    // Probes before PROXY in the table: TLS, HTTP/1, h2c.
    let anyNeedMore = false;
    const pending: Slot[] = [];
    for (let i = 0; i < this.slots.length; i++) {
      if (i === 3 && this.proxyEnabled) {
        const p = this.detectProxy(bytes, opts);
        if (p !== undefined) return p;
        if (this.proxySettled === undefined) anyNeedMore = true;
      }
      const slot = this.slots[i]!;
      if (slot.settled === undefined) {
        // Ask without `final` first: a probe that still needs more at the end makes the input
        // "incomplete" rather than unrecognised; then ask it again with `final` for its own reason.
        const v = slot.probe.probe(bytes, { final: false });
        if (v.kind === 'need-more') {
          anyNeedMore = true;
          pending.push(slot);
          continue;
        }
        slot.settled = v;
      }
      if (slot.settled.kind === 'match') return slot.settled;
    }
    if (!opts.final && anyNeedMore) return NEED_MORE;
    return this.finalReject(bytes, pending);
  }

  private detectProxy(bytes: Buffer, opts: ProbeOptions): Detection | undefined {
    if (this.proxySettled === undefined) {
      const v = parseProxyHeader(bytes, { final: false });
      if (v.kind === 'need-more') return undefined;
      this.proxySettled =
        v.kind === 'match'
          ? { kind: 'match', header: v.header, consumed: v.consumed, inner: new Detector({ ...this.options, proxyHeader: false }) }
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

  private finalReject(bytes: Buffer, pending: readonly Slot[]): DetectReject {
    const reasons: string[] = [];
    let claimed: Reject | undefined;
    let truncated: Reject | undefined;
    for (const slot of this.slots) {
      let v = slot.settled;
      if (v === undefined) {
        const f = slot.probe.probe(bytes, { final: true });
        // A probe that breaks the contract and still needs more is treated as truncated input.
        v = f.kind === 'need-more' ? { kind: 'reject', reason: `${slot.probe.name}.truncated` } : f;
        slot.settled = v;
      }
      if (v.kind !== 'reject') continue; // cannot happen: a match returned earlier
      reasons.push(v.reason);
      if (claimed === undefined && v.protocol !== undefined) claimed = v;
      if (truncated === undefined && pending.includes(slot)) truncated = v;
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
