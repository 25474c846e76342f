import type { Kpi } from '../platform/agreement-schema.js';
import type { Band, ScopeState, Signal } from './query-schemas.js';

// Bands, signals and states as the API serves them: their shapes are the response schemas'.
export type { Band, ScopeState, Signal };

/** One closed period of one scope, with its disclosed value (null when withheld or empty). */
export interface PeriodValue {
  period: string;
  value: number | null;
  suppressed: boolean;
}

export interface PeriodVerdict {
  period: string;
  band: Band | null;
  outside: boolean;
  /** Why the period counts as out of band: beyond a limit, or a Western Electric run rule. */
  signal: Signal | null;
}

/** Mean and sample standard deviation of the disclosed values among the baseline periods before `index`. */
function controlStats(kpi: Kpi, history: readonly PeriodValue[], index: number): { mean: number; sd: number } | null {
  const b = kpi.band;
  // Only disclosed values shape the band: its limits must not leak a withheld value.
  const window = history
    .slice(Math.max(0, index - b.baseline!), index)
    .filter((h) => !h.suppressed && h.value !== null)
    .map((h) => h.value!);
  if (window.length < 2) return null;
  const mean = window.reduce((a, v) => a + v, 0) / window.length;
  const sd = Math.sqrt(window.reduce((a, v) => a + (v - mean) ** 2, 0) / (window.length - 1));
  return { mean, sd };
}

/**
 * The band in force for the period at `index`: the agreed limits, or for a control band the
 * mean ± sigma·σ (sample standard deviation) of the disclosed values among the `baseline`
 * closed periods before it.
 * A control band needs at least two earlier values; before that there is no band.
 */
export function bandAt(kpi: Kpi, history: readonly PeriodValue[], index: number): Band | null {
  const b = kpi.band;
  if (b.method !== 'control') return { method: 'static', lower: b.lower ?? null, upper: b.upper ?? null };
  const s = controlStats(kpi, history, index);
  return s && { method: 'control', lower: s.mean - b.sigma! * s.sd, upper: s.mean + b.sigma! * s.sd };
}

export function outside(band: Band | null, value: number | null): boolean {
  if (!band || value === null) return false;
  return (band.lower !== null && value < band.lower) || (band.upper !== null && value > band.upper);
}

/**
 * A Western Electric run rule firing at `index`: 2 of the last 3 beyond 2σ on one side, 4 of the
 * last 5 beyond 1σ on one side, or the last 8 all on one side of the centre line. Each run is
 * judged against the control band in force when it began (a rolling baseline would otherwise
 * absorb the very shift the rule looks for), and the period itself must take part.
 */
function runRule(kpi: Kpi, history: readonly PeriodValue[], index: number): Signal | null {
  const rules = kpi.band.rules ?? [];
  const v = disclosed(history[index]);
  if (!rules.length || v == null) return null;
  const fires = (window: number, limit: number, needed: number): boolean => {
    const start = index - window + 1;
    if (start < 0) return false;
    const s = controlStats(kpi, history, start);
    if (!s || s.sd === 0) return false;
    const side = Math.sign(v - s.mean);
    if (side === 0 || ((v - s.mean) / s.sd) * side <= limit) return false;
    let hits = 0;
    for (let i = start; i <= index; i++) {
      const x = disclosed(history[i]);
      if (x !== null && ((x - s.mean) / s.sd) * side > limit) hits++;
    }
    return hits >= needed;
  };
  if (rules.includes('2of3beyond2sigma') && fires(3, 2, 2)) return '2of3beyond2sigma';
  if (rules.includes('4of5beyond1sigma') && fires(5, 1, 4)) return '4of5beyond1sigma';
  if (rules.includes('8onOneSide') && fires(8, 0, 8)) return '8onOneSide';
  return null;
}

/** A period's value as judged: none when withheld (docs/privacy.md §4). */
const disclosed = (h: PeriodValue | undefined): number | null => (!h || h.suppressed ? null : h.value);

/**
 * Each closed period judged against its band and, for a control band, its run rules — on
 * disclosed values only: a withheld period has no verdict, counts as within every limit in a
 * run-rule window, and ends a run of out-of-band periods.
 */
export function verdicts(kpi: Kpi, history: readonly PeriodValue[]): PeriodVerdict[] {
  return history.map((h, i) => {
    const band = bandAt(kpi, history, i);
    const signal: Signal | null = outside(band, disclosed(h)) ? 'band' : runRule(kpi, history, i);
    return { period: h.period, band, outside: signal !== null, signal };
  });
}

/**
 * The state of a scope after its last closed period: breach when the last `consecutive`
 * closed periods are all outside their band, pending when fewer are, suppressed or no data
 * when the last closed period has no disclosed value. A withheld period has no verdict: it
 * is never a breach, and it ends a run of out-of-band periods.
 */
export function scopeState(
  kpi: Kpi,
  history: readonly PeriodValue[],
  lastClosed: string,
  v: readonly PeriodVerdict[] = verdicts(kpi, history),
): ScopeState {
  const last = history[history.length - 1];
  if (!last || last.period !== lastClosed) return 'no_data';
  if (last.suppressed) return 'suppressed';
  if (last.value === null) return 'no_data';
  let run = 0;
  for (let i = v.length - 1; i >= 0 && v[i]!.outside; i--) run++;
  if (run >= kpi.evaluate.consecutive) return 'breach';
  if (run > 0) return 'pending';
  return 'ok';
}
