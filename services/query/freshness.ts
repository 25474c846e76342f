import { durationMs, type Agreement, type Kpi } from '../platform/agreement-schema.js';
import type { FeedFreshness } from './query-schemas.js';

/** One partner's feed of one KPI (its shape is the response schema's). */
export type { FeedFreshness };

/**
 * Each partner's feed of a KPI: stale once `every + grace` has passed since its last batch, or
 * since the agreement took effect for a partner that never sent one.
 */
export function kpiFreshness(
  agreement: Agreement,
  kpi: Kpi,
  arrivals: ReadonlyMap<string, Date>,
  now: Date,
  since: Date,
): FeedFreshness[] {
  const allowance = durationMs(kpi.freshness.every) + durationMs(kpi.freshness.grace);
  return agreement.partners.map((p) => {
    const last = arrivals.get(`${p.id}\u0000${kpi.id}`) ?? null;
    const due = new Date((last ?? since).getTime() + allowance);
    return {
      partner: p.id,
      lastArrival: last?.toISOString() ?? null,
      dueBy: due.toISOString(),
      stale: now.getTime() > due.getTime(),
    };
  });
}
