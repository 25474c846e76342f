import { durationMs, type Agreement, type Kpi } from '../governance/agreement-schema.js';
import type { DuckStore } from '../platform/duck-store.js';

/** One partner's feed of one KPI: when its last batch arrived and whether that is too long ago. */
export interface FeedFreshness {
  partner: string;
  lastArrival: string | null;
  /** The feed is expected again by then (last arrival + every + grace); past it, the feed is stale. */
  dueBy: string;
  stale: boolean;
}

/** Last arrival per partner and KPI, from the batch receipts (metadata only, no values). */
export async function lastArrivals(duck: DuckStore): Promise<Map<string, Date>> {
  const conn = await duck.connect();
  try {
    const r = await conn.runAndReadAll(
      `SELECT partner, kpi, epoch_ms(max(received_at))::DOUBLE AS at
         FROM (SELECT partner, unnest(kpis) AS kpi, received_at FROM batches) GROUP BY partner, kpi`,
    );
    const out = new Map<string, Date>();
    for (const row of r.getRowObjectsJson()) out.set(`${row['partner']}\u0000${row['kpi']}`, new Date(Number(row['at'])));
    return out;
  } finally {
    duck.release(conn);
  }
}

/**
 * Each partner's feed of a KPI: stale once `every + grace` has passed since its last batch, or
 * since the agreement took effect for a partner that never sent one.
 */
export function kpiFreshness(agreement: Agreement, kpi: Kpi, arrivals: Map<string, Date>, now: Date, since: Date): FeedFreshness[] {
  const allowance = durationMs(kpi.freshness.every) + durationMs(kpi.freshness.grace);
  return agreement.partners.map((p) => {
    const last = arrivals.get(`${p.id}\u0000${kpi.id}`) ?? null;
    const due = new Date((last ?? since).getTime() + allowance);
    return { partner: p.id, lastArrival: last?.toISOString() ?? null, dueBy: due.toISOString(), stale: now.getTime() > due.getTime() };
  });
}
