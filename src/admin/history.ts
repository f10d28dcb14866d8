// The dashboard's last hour: every INTERVAL the admin listener reads its own /metrics (the same text a
// Prometheus gets, summed over workers with --workers) and keeps, per listener, the closed connections
// that were TLS and those that were plaintext, and the open ones. 360 samples of a few numbers: the page
// draws the TLS share from the differences between samples.
import type { AdminBackend } from './api.js';
import { parsePromText } from './prom-text.js';

export const HISTORY_INTERVAL_MS = 10_000;
const HISTORY_SAMPLES = 360;

export interface HistorySample {
  readonly t: number;
  readonly listeners: Record<string, { tls: number; plaintext: number; active: number }>;
}

export class History {
  private readonly samples: HistorySample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly backend: AdminBackend,
    private readonly intervalMs = HISTORY_INTERVAL_MS,
  ) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  snapshot(): { intervalMs: number; samples: readonly HistorySample[] } {
    return { intervalMs: this.intervalMs, samples: this.samples };
  }

  private async sample(): Promise<void> {
    let text: string;
    try {
      text = (await this.backend.metrics()).text;
    } catch {
      return; // a worker that did not answer: this sample is skipped
    }
    const listeners: HistorySample['listeners'] = {};
    const of = (name: string) => (listeners[name] ??= { tls: 0, plaintext: 0, active: 0 });
    for (const s of parsePromText(text)) {
      const l = s.labels['listener'];
      if (l === undefined) continue;
      if (s.name === 'twinport_connections_total') {
        const p = s.labels['protocol'];
        if (p === 'tls') of(l).tls += s.value;
        else if (p === 'http' || p === 'h2c' || p === 'other') of(l).plaintext += s.value;
      } else if (s.name === 'twinport_connections_active') of(l).active = s.value;
    }
    this.samples.push({ t: Date.now(), listeners });
    if (this.samples.length > HISTORY_SAMPLES) this.samples.shift();
  }
}
