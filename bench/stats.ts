// Order statistics for benchmark samples. Nearest-rank percentiles (no interpolation): the reported
// value is always one that was actually measured.

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface Summary {
  readonly samples: number;
  readonly median: number;
  readonly p99: number;
  readonly min: number;
  readonly max: number;
}

export function summarise(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    median: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/** Fixed significant digits, without exponent notation for the ranges we print. */
export function fmt(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs >= 10 ** digits) return Math.round(n).toLocaleString('en-US');
  return Number(n.toPrecision(digits)).toString();
}
