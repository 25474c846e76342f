import { describe, expect, it } from 'vitest';
import { suppress, type RawCell } from '../../services/query/suppression.js';

const cell = (period: string, group: string | null, n: number, value = n * 1.5): RawCell => ({
  period,
  group,
  value,
  n,
});

describe('suppression', () => {
  it('withholds value and count below the threshold, with a reason', () => {
    const out = suppress([cell('2026-01-05', null, 4), cell('2026-01-12', null, 5)], 5, false);
    expect(out[0]).toEqual({
      period: '2026-01-05',
      group: null,
      value: null,
      n: null,
      state: 'suppressed',
      reason: 'fewer than 5 distinct subjects',
    });
    expect(out[1]).toEqual({ period: '2026-01-12', group: null, value: 7.5, n: 5, state: 'ok' });
  });

  it('complementary: a lone withheld part takes the smallest visible part of its period with it', () => {
    const out = suppress(
      [
        cell('p1', 'north', 3),
        cell('p1', 'south', 40),
        cell('p1', null, 9),
        cell('p2', 'north', 30),
        cell('p2', 'south', 20),
      ],
      5,
      true,
    );
    expect(out.map((c) => c.state)).toEqual(['suppressed', 'ok', 'suppressed', 'ok', 'ok']);
    expect(out[2]!.reason).toMatch(/^complementary/);
    // The withheld part cannot be recovered: two parts of p1 are unknown.
    expect(out.filter((c) => c.period === 'p1' && c.state === 'suppressed')).toHaveLength(2);
  });

  it('leaves periods alone where two or more parts are already withheld, or nothing is visible', () => {
    const out = suppress([cell('p1', 'a', 1), cell('p1', 'b', 2), cell('p1', 'c', 50), cell('p2', 'a', 1)], 5, true);
    expect(out.map((c) => c.state)).toEqual(['suppressed', 'suppressed', 'ok', 'suppressed']);
  });

  it('without a breakdown there is nothing to difference', () => {
    const out = suppress([cell('p1', null, 3), cell('p2', null, 30)], 5, false);
    expect(out.map((c) => c.state)).toEqual(['suppressed', 'ok']);
  });
});
