// Durations and sizes as config text (docs/config.md). Each parser takes whatever the YAML held and returns
// the number, or the sentence that says what is wrong with it.

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Node.js timers hold at most 2^31-1 ms (about 24.8 days); a longer setTimeout fires after 1 ms with a
 * TimeoutOverflowWarning, which would turn "idle: 1000h" into "close at once".
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** `250ms`, `5s`, `1.5s`, `10m`, `1h` → milliseconds (a whole number, at least 1). */
export function parseDuration(value: unknown): number | string {
  if (typeof value === 'number') return `durations need a unit: write "${value}s" or "${value}ms" (units: ms, s, m, h)`;
  if (typeof value !== 'string') return 'must be a duration such as "5s" (units: ms, s, m, h)';
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(value);
  if (m === null) return `"${value}" is not a duration: write a number and a unit, such as 250ms, 5s, 10m, 1h`;
  const ms = Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS];
  // 1.005s is 1004.9999… in binary floating point: round away the representation error, not real fractions.
  const rounded = Math.round(ms * 1e6) / 1e6;
  if (!Number.isInteger(rounded)) return `"${value}" is not a whole number of milliseconds`;
  if (rounded < 1) return `"${value}": durations must be at least 1ms`;
  if (rounded > MAX_DURATION_MS) return `"${value}" is too long: at most 596h (${MAX_DURATION_MS}ms, the longest Node.js timer)`;
  return rounded;
}

const PERIOD_UNITS = { ...DURATION_UNITS, d: 86_400_000 } as const;
/** The longest period accepted (ten years): a bound, not a timer. */
export const MAX_PERIOD_MS = 3650 * 86_400_000;

/**
 * A span of recorded time (a retention, a report window): like a duration, plus days (`30d`), and not
 * bound by Node's timers since nothing waits for it.
 */
export function parsePeriod(value: unknown): number | string {
  if (typeof value !== 'string') return 'must be a period such as "24h" or "30d" (units: ms, s, m, h, d)';
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$/.exec(value);
  if (m === null) return `"${value}" is not a period: write a number and a unit, such as 90m, 24h, 30d`;
  const ms = Math.round(Number(m[1]) * PERIOD_UNITS[m[2] as keyof typeof PERIOD_UNITS]);
  if (ms < 1) return `"${value}": periods must be at least 1ms`;
  if (ms > MAX_PERIOD_MS) return `"${value}" is too long: at most 3650d`;
  return ms;
}

const SIZE_UNITS = { B: 1, KiB: 1024, MiB: 1024 * 1024 } as const;

/**
 * `512`, `"512"`, `512B`, `16KiB`, `1MiB` → bytes. Only binary units: `KB` means 1000 to some readers and
 * 1024 to others, so it is an error that names the unit to write instead.
 */
export function parseSize(value: unknown): number | string {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : `${value} is not a whole number of bytes`;
  }
  if (typeof value !== 'string') return 'must be a size such as 64KiB (units: B, KiB, MiB)';
  const m = /^([0-9]+)(B|KiB|MiB)?$/.exec(value);
  if (m !== null) return Number(m[1]) * SIZE_UNITS[(m[2] ?? 'B') as keyof typeof SIZE_UNITS];
  const other = /^[0-9.]+\s*([A-Za-z]+)$/.exec(value);
  if (other !== null) {
    const unit = other[1]!;
    const kilo = /^k/i.test(unit);
    const mega = /^m/i.test(unit);
    if (kilo || mega) return `"${value}": use binary units, ${kilo ? 'KiB (1024 bytes)' : 'MiB (1048576 bytes)'}, not "${unit}"`;
  }
  return `"${value}" is not a size: write bytes (512) or a whole number with a unit: B, KiB, MiB (64KiB)`;
}

/** 1048576 → "1MiB", 65536 → "64KiB", 700 → "700 bytes": how limits are written in messages. */
export function formatSize(bytes: number): string {
  if (bytes >= SIZE_UNITS.MiB && bytes % SIZE_UNITS.MiB === 0) return `${bytes / SIZE_UNITS.MiB}MiB`;
  if (bytes >= SIZE_UNITS.KiB && bytes % SIZE_UNITS.KiB === 0) return `${bytes / SIZE_UNITS.KiB}KiB`;
  return `${bytes} bytes`;
}

/** 5000 → "5s", 250 → "250ms": how durations are written back in messages. */
export function formatDuration(ms: number): string {
  for (const [unit, f] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= f && ms % f === 0) return `${ms / f}${unit}`;
  }
  return `${ms}ms`;
}
