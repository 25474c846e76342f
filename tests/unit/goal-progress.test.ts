import { describe, expect, it } from 'vitest';
import { judgeMilestone } from '../../services/goals/goal-progress.js';

// Monthly closed periods (June to October 2026); November is open.
const open = '2026-11-01';
const months = ['2026-06-01', '2026-07-01', '2026-08-01', '2026-09-01', '2026-10-01'];
const closed = (values: (number | null)[]) => values.map((value, i) => ({ period: months[i]!, value }));
const down = { direction: 'at_most' as const, grain: 'month' as const };
const up = { direction: 'at_least' as const, grain: 'month' as const };

describe('a milestone judged on closed periods', () => {
  it('is met at its target exactly, and missed just past it, in either direction', () => {
    const series = closed([30, 25, 20, 18, 16]);
    expect(judgeMilestone({ date: '2026-08-20', target: 20 }, down, series, open, false)).toMatchObject({
      period: '2026-08-01',
      state: 'met',
      value: 20,
    });
    expect(judgeMilestone({ date: '2026-08-20', target: 19.99 }, down, series, open, false).state).toBe('missed');
    expect(judgeMilestone({ date: '2026-08-20', target: 20 }, up, series, open, false).state).toBe('met');
    expect(judgeMilestone({ date: '2026-08-20', target: 20.01 }, up, series, open, false).state).toBe('missed');
  });

  it('has no verdict when its closed period is withheld, whatever the neighbours say', () => {
    const series = closed([30, 25, null, 18, 16]);
    expect(judgeMilestone({ date: '2026-08-31', target: 40 }, down, series, open, false)).toMatchObject({
      state: 'no_data',
      value: null,
    });
  });

  it('ahead of its period: on track when the latest value already reaches it', () => {
    const series = closed([30, 25, 20, 18, 16]);
    expect(judgeMilestone({ date: '2027-01-31', target: 17 }, down, series, open, false)).toMatchObject({
      state: 'on_track',
      value: 16,
      final: false,
    });
  });

  it('ahead of its period: on track when the trend of the last three values gets there, at risk when it does not', () => {
    // 20, 18, 16: two a month; by January (three more months) about 10.
    const falling = closed([30, 25, 20, 18, 16]);
    expect(judgeMilestone({ date: '2027-01-31', target: 11 }, down, falling, open, false).state).toBe('on_track');
    expect(judgeMilestone({ date: '2027-01-31', target: 9 }, down, falling, open, false).state).toBe('at_risk');
    // Flat: no trend towards the target.
    const flat = closed([16, 16, 16, 16, 16]);
    expect(judgeMilestone({ date: '2027-01-31', target: 15 }, down, flat, open, true)).toMatchObject({
      state: 'at_risk',
      final: true,
    });
    // One value only: judged on it alone.
    const one = closed([null, null, null, null, 16]);
    expect(judgeMilestone({ date: '2027-01-31', target: 15 }, down, one, open, false).state).toBe('at_risk');
    expect(judgeMilestone({ date: '2027-01-31', target: 17 }, down, one, open, false).state).toBe('on_track');
  });

  it('without any disclosed closed value there is nothing to judge', () => {
    expect(judgeMilestone({ date: '2027-01-31', target: 15 }, down, closed([null, null]), open, false).state).toBe(
      'no_data',
    );
    expect(judgeMilestone({ date: '2027-01-31', target: 15 }, down, [], open, false).state).toBe('no_data');
  });
});
