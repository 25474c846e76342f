/** One aggregate cell as DuckDB returns it, before anything is withheld. */
export interface RawCell {
  period: string;
  group: string | null;
  value: number | null;
  n: number;
}

import type { Cell } from './query-schemas.js';

/** A cell as served (its shape is the response schema's): suppressed cells carry a reason instead of a value and a count. */
export type { Cell };

/**
 * Withholds cells with fewer than `minGroupSize` distinct subjects. With `complementary`
 * (a breakdown whose parts add up to a total someone can also ask for), a period with
 * exactly one withheld part loses its next-smallest part too, so the withheld one cannot
 * be recovered as total minus the others.
 */
export function suppress(cells: readonly RawCell[], minGroupSize: number, complementary: boolean): Cell[] {
  const small = `fewer than ${minGroupSize} distinct subjects`;
  const out: Cell[] = cells.map((c) =>
    c.n < minGroupSize
      ? { period: c.period, group: c.group, value: null, n: null, state: 'suppressed', reason: small }
      : { period: c.period, group: c.group, value: c.value, n: c.n, state: 'ok' },
  );
  if (!complementary) return out;
  const byPeriod = new Map<string, number[]>();
  out.forEach((c, i) => {
    const list = byPeriod.get(c.period);
    if (list) list.push(i);
    else byPeriod.set(c.period, [i]);
  });
  for (const indices of byPeriod.values()) {
    const hidden = indices.filter((i) => out[i]!.state === 'suppressed');
    if (hidden.length !== 1) continue;
    const visible = indices.filter((i) => out[i]!.state === 'ok');
    if (visible.length === 0) continue;
    // The smallest visible part (ties: the first in order) goes with it.
    const victim = visible.reduce((a, b) => (cells[b]!.n < cells[a]!.n ? b : a));
    out[victim] = {
      period: out[victim]!.period,
      group: out[victim]!.group,
      value: null,
      n: null,
      state: 'suppressed',
      reason: 'complementary: withheld so that another withheld cell cannot be recovered from the total',
    };
  }
  return out;
}
