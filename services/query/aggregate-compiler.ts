import type { Kpi, measures } from '../governance/agreement-schema.js';

export type Grain = 'day' | 'week' | 'month';
export type Measure = (typeof measures)[number];

/** What a series is broken down by: nothing (combined), partner, or one agreed dimension. */
export type Breakdown = { kind: 'none' } | { kind: 'partner' } | { kind: 'dimension'; key: string };

/** An aggregate the agreement allows, fully resolved: the compiler's only input. */
export interface SeriesQuery {
  kpi: Kpi;
  grain: Grain;
  /** Local calendar dates (YYYY-MM-DD) in the partnership's time zone; `to` is inclusive. */
  from: string;
  to: string;
  by: Breakdown;
  snapshot: number;
  timezone: string;
}

export interface CompiledSql {
  sql: string;
  params: (string | number)[];
}

// Every fragment below is a constant chosen by the agreement; request values only ever
// travel as bound parameters.
const measureSql: Record<Measure, string> = {
  avg: 'avg(value)',
  sum: 'sum(value)',
  count: 'count(*)',
  rate: 'avg(value)',
  p50: 'quantile_cont(value, 0.5)',
  p90: 'quantile_cont(value, 0.9)',
  p95: 'quantile_cont(value, 0.95)',
  distinct: 'count(DISTINCT subject)',
};

const grainSql: Record<Grain, string> = { day: "'day'", week: "'week'", month: "'month'" };

/**
 * The DuckDB SQL of one agreed aggregate. Periods are buckets of local days in the
 * partnership's zone (`points.local_day`, computed at landing; ISO weeks start on Monday), so
 * DST days have 23 or 25 hours and every point falls in the bucket its local clock says.
 * `n` is the number of distinct subjects. `q.timezone` must be the zone the room localised
 * its points in (DuckStore.localise).
 */
export function compileSeries(q: SeriesQuery): CompiledSql {
  const params: (string | number)[] = [];
  const p = (v: string | number) => {
    params.push(v);
    return `$${params.length}`;
  };
  const grain = grainSql[q.grain];
  const group = q.by.kind === 'partner' ? 'partner' : q.by.kind === 'dimension' ? `json_extract_string(dims, ${p(`$.${q.by.key}`)})` : 'NULL::VARCHAR';
  const sql = [
    `SELECT strftime(date_trunc(${grain}, local_day), '%Y-%m-%d') AS period,`,
    `  ${group} AS grp,`,
    `  ${measureSql[q.kpi.measure]}::DOUBLE AS value,`,
    `  count(DISTINCT subject)::INTEGER AS n`,
    `FROM points`,
    `WHERE kpi = ${p(q.kpi.id)}`,
    `  AND snapshot <= ${p(q.snapshot)}`,
    `  AND local_day >= date_trunc(${grain}, ${p(q.from)}::DATE)`,
    `  AND local_day < date_trunc(${grain}, ${p(q.to)}::DATE) + INTERVAL 1 ${q.grain.toUpperCase()}`,
    `GROUP BY ALL`,
    `ORDER BY period, grp NULLS FIRST`,
  ].join('\n');
  return { sql, params };
}
