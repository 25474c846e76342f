import { describe, expect, it } from 'vitest';
import { loadAgreementFile, type Kpi } from '../../services/platform/agreement-schema.js';
import { bandAt, scopeState, verdicts, type PeriodValue } from '../../services/query/band-evaluation.js';
import { addPeriods, periodStart } from '../../services/platform/calendar.js';

const r = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!r.ok) throw new Error('demo agreement invalid');
const demo = (id: string) => r.agreement.kpis.find((k) => k.id === id)!;
const series = (values: (number | null)[], suppressedAt: number[] = []): PeriodValue[] =>
  values.map((value, i) => ({
    period: addPeriods('2026-01-05', 'week', i),
    value,
    suppressed: suppressedAt.includes(i),
  }));
const last = (h: PeriodValue[]) => h[h.length - 1]!.period;

describe('static bands', () => {
  const lead: Kpi = demo('lead_time'); // upper 72, consecutive 1
  it('ok inside, breach outside', () => {
    expect(scopeState(lead, series([40, 50, 60]), last(series([40, 50, 60])))).toBe('ok');
    const h = series([40, 50, 80]);
    expect(scopeState(lead, h, last(h))).toBe('breach');
    expect(verdicts(lead, h).map((v) => v.outside)).toEqual([false, false, true]);
  });

  it('pending until `consecutive` periods are out, then breach; back inside is ok again', () => {
    const cv: Kpi = { ...demo('customer_value'), evaluate: { grain: 'week', consecutive: 2 } }; // lower 7
    const path = [8, 8, 6.5, 6.4, 7.5];
    const states = path.map((_, i) => {
      const h = series(path.slice(0, i + 1));
      return scopeState(cv, h, last(h));
    });
    expect(states).toEqual(['ok', 'ok', 'pending', 'breach', 'ok']);
  });

  it('no data when the last closed period has no value; suppressed when withheld and inside', () => {
    const h = series([40, null]);
    expect(scopeState(lead, h, last(h))).toBe('no_data');
    const s = series([40, 50], [1]);
    expect(scopeState(lead, s, last(s))).toBe('suppressed');
    // A withheld period has no verdict: beyond the band or not, it is never a breach, and it ends
    // a run of out-of-band periods (docs/privacy.md §4).
    const b = series([40, 90], [1]);
    expect(scopeState(lead, b, last(b))).toBe('suppressed');
    expect(verdicts(lead, b)[1]!.outside).toBe(false);
    const run = series([90, 95, 99], [1]);
    expect(verdicts(lead, run).map((v) => v.outside)).toEqual([true, false, true]);
  });

  it("a run rule's signal does not depend on a withheld neighbour's value (family 8)", () => {
    const ctl: Kpi = {
      ...demo('error_rate'),
      band: { method: 'control', baseline: 6, sigma: 3, rules: ['2of3beyond2sigma'] },
    };
    const base = [0.02, 0.04, 0.02, 0.04, 0.03, 0.03];
    // Period 7 is beyond 2σ; period 6 is withheld: its value, high or low, must not change period 7's verdict.
    const high = verdicts(ctl, series([...base, 0.09, 0.085], [6]));
    const low = verdicts(ctl, series([...base, 0.0, 0.085], [6]));
    expect(high.map((v) => v.signal)).toEqual(low.map((v) => v.signal));
    expect(high[6]!.outside).toBe(false);
  });
});

describe('control bands', () => {
  const err: Kpi = { ...demo('error_rate'), band: { method: 'control', baseline: 4, sigma: 2 } };
  it('is mean ± k·σ of the previous `baseline` disclosed periods', () => {
    const h = series([0.02, 0.04, 0.02, 0.04, 0.03]);
    const band = bandAt(err, h, 4)!;
    const sd = Math.sqrt((4 * 0.01 ** 2) / 3);
    expect(band.lower).toBeCloseTo(0.03 - 2 * sd, 12);
    expect(band.upper).toBeCloseTo(0.03 + 2 * sd, 12);
    expect(scopeState(err, h, last(h))).toBe('ok');
    const spike = series([0.02, 0.04, 0.02, 0.04, 0.09]);
    expect(scopeState(err, spike, last(spike))).toBe('breach');
  });

  it('has no band before two disclosed earlier values, and ignores withheld ones', () => {
    expect(bandAt(err, series([0.02, 0.5]), 1)).toBeNull();
    expect(bandAt(err, series([0.02, 0.9, 0.04, 0.03]), 3)!.upper).toBeGreaterThan(0.5);
    expect(bandAt(err, series([0.02, 0.9, 0.04, 0.03], [1]), 3)!.upper).toBeLessThan(0.1);
  });
});

describe('periods', () => {
  it('start on the local day, the ISO Monday, or the first of the month', () => {
    expect(periodStart('2026-11-23', 'week')).toBe('2026-11-23');
    expect(periodStart('2026-11-29', 'week')).toBe('2026-11-23');
    expect(periodStart('2021-01-02', 'week')).toBe('2020-12-28');
    expect(periodStart('2026-02-28', 'month')).toBe('2026-02-01');
    expect(addPeriods('2026-01-01', 'month', 1)).toBe('2026-02-01');
    expect(addPeriods('2026-01-01', 'month', -1)).toBe('2025-12-01');
    expect(addPeriods('2020-12-28', 'week', 1)).toBe('2021-01-04');
    expect(addPeriods('2026-03-29', 'day', 1)).toBe('2026-03-30');
  });
});

describe('Western Electric run rules on a control band', () => {
  const control = (rules: ('2of3beyond2sigma' | '4of5beyond1sigma' | '8onOneSide')[]): Kpi => ({
    ...demo('error_rate'),
    band: { method: 'control', baseline: 8, sigma: 3, rules },
  });
  // A steady baseline: mean 11, σ ≈ 1.07, so the 3σ limits sit near 7.8 and 14.2.
  const stable = [12, 10, 12, 10, 12, 10, 12, 10];
  const signals = (kpi: Kpi, tail: number[]) =>
    verdicts(kpi, series([...stable, ...tail]))
      .slice(stable.length)
      .map((v) => v.signal);

  it('2 of 3 beyond 2σ on one side signals inside the 3σ limits; the rule off, nothing does', () => {
    const tail = [13.5, 11, 13.6];
    expect(signals(control(['2of3beyond2sigma']), tail)).toEqual([null, null, '2of3beyond2sigma']);
    expect(signals(control([]), tail)).toEqual([null, null, null]);
  });

  it('4 of 5 beyond 1σ on one side', () => {
    const tail = [12.3, 12.4, 11, 12.4, 12.5];
    expect(signals(control(['4of5beyond1sigma']), tail)).toEqual([null, null, null, null, '4of5beyond1sigma']);
    expect(signals(control([]), tail)).toEqual([null, null, null, null, null]);
  });

  it('8 in a row on one side of the centre line', () => {
    const tail = [11.2, 11.3, 11.2, 11.3, 11.2, 11.3, 11.2, 11.3];
    const got = signals(control(['8onOneSide']), tail);
    expect(got.slice(0, 7)).toEqual([null, null, null, null, null, null, null]);
    expect(got[7]).toBe('8onOneSide');
    expect(signals(control([]), tail).every((s) => s === null)).toBe(true);
  });

  it('a run-rule signal counts towards breach like a limit, and a point beyond the limit says band', () => {
    const kpi = control(['2of3beyond2sigma']);
    const h = series([...stable, 13.5, 11, 13.6]);
    expect(scopeState(kpi, h, last(h))).toBe('breach');
    expect(signals(kpi, [20])).toEqual(['band']);
  });
});
