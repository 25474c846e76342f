import { allowanceMs, type Agreement, type Kpi } from '../platform/agreement-schema.js';
import { dueAfter, maintenanceWindows, windowAt } from '../platform/maintenance.js';
import type { FeedFreshness } from './query-schemas.js';

/** One partner's feed of one KPI (its shape is the response schema's). */
export type { FeedFreshness };

/**
 * Each partner's feed of a KPI: stale once `every + grace` has passed since its last batch, or
 * since the agreement took effect for a partner that never sent one; time inside the partner's
 * maintenance windows does not count, and no feed is stale inside a window.
 */
export function kpiFreshness(
  agreement: Agreement,
  kpi: Kpi,
  arrivals: ReadonlyMap<string, Date>,
  now: Date,
  since: Date,
): FeedFreshness[] {
  const allowance = allowanceMs(kpi);
  return agreement.partners.map((p) => {
    const last = arrivals.get(`${p.id}\u0000${kpi.id}`) ?? null;
    const windows = maintenanceWindows(agreement, p.id);
    const due = dueAfter(windows, last ?? since, allowance);
    const inside = windowAt(windows, now);
    return {
      partner: p.id,
      lastArrival: last?.toISOString() ?? null,
      dueBy: due.toISOString(),
      stale: !inside && now.getTime() > due.getTime(),
      maintenanceUntil: inside?.to.toISOString() ?? null,
    };
  });
}
