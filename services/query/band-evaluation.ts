import type { Kpi } from '../governance/agreement-schema.js';

export interface Band {
  method: 'static' | 'control';
  lower: number | null;
  upper: number | null;
}

/** One closed period of one scope, with the value the room computed (disclosed or not). */
export interface PeriodValue {
  period: string;
  value: number | null;
  suppressed: boolean;
}

export type ScopeState = 'ok' | 'pending' | 'breach' | 'no_data' | 'suppressed';

export interface PeriodVerdict {
  period: string;
  band: Band | null;
  outside: boolean;
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
  // Only disclosed values shape the band: its limits must not leak a withheld value.
  const window = history
    .slice(Math.max(0, index - b.baseline!), index)
    .filter((h) => !h.suppressed && h.value !== null)
    .map((h) => h.value!);
  if (window.length < 2) return null;
  const mean = window.reduce((a, v) => a + v, 0) / window.length;
  const sd = Math.sqrt(window.reduce((a, v) => a + (v - mean) ** 2, 0) / (window.length - 1));
  return { method: 'control', lower: mean - b.sigma! * sd, upper: mean + b.sigma! * sd };
}

export function outside(band: Band | null, value: number | null): boolean {
  if (!band || value === null) return false;
  return (band.lower !== null && value < band.lower) || (band.upper !== null && value > band.upper);
}

/** Each closed period judged against its band. */
export function verdicts(kpi: Kpi, history: readonly PeriodValue[]): PeriodVerdict[] {
  return history.map((h, i) => {
    const band = bandAt(kpi, history, i);
    return { period: h.period, band, outside: outside(band, h.value) };
  });
}

/**
 * The state of a scope after its last closed period: breach when the last `consecutive`
 * closed periods are all outside their band, pending when fewer are, suppressed or no data
 * when the last closed period has no disclosed value. A suppressed breach is still a breach
 * (reported without a value).
 */
export function scopeState(kpi: Kpi, history: readonly PeriodValue[], lastClosed: string): ScopeState {
  const last = history[history.length - 1];
  if (!last || last.period !== lastClosed || last.value === null) return 'no_data';
  const v = verdicts(kpi, history);
  let run = 0;
  for (let i = v.length - 1; i >= 0 && v[i]!.outside; i--) run++;
  if (run >= kpi.evaluate.consecutive) return 'breach';
  if (run > 0) return 'pending';
  return last.suppressed ? 'suppressed' : 'ok';
}
