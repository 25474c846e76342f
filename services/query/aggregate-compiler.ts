import type { Grain } from '../platform/calendar.js';
import type { Kpi, measures } from '../platform/agreement-schema.js';

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
  const group =
    q.by.kind === 'partner'
      ? 'partner'
      : q.by.kind === 'dimension'
        ? `json_extract_string(dims, ${p(`$.${q.by.key}`)})`
        : 'NULL::VARCHAR';
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

/** A breakdown as the rollup tables name it: none, partner or dim:<key>. */
export function breakdownKey(by: Breakdown): string {
  return by.kind === 'dimension' ? `dim:${by.key}` : by.kind;
}

/**
 * Replaces the rollup cells of one KPI × grain × breakdown for the periods overlapping
 * [q.from, q.to] with the compiled aggregate as of q.snapshot: a DELETE and an INSERT … SELECT
 * of the very SQL a series request runs, so rolled-up cells are exactly the computed ones.
 */
export function compileRollupRefresh(q: SeriesQuery): CompiledSql[] {
  const grain = grainSql[q.grain];
  const del: CompiledSql = {
    sql: [
      'DELETE FROM rollup_cells',
      'WHERE kpi = $1 AND grain = $2 AND breakdown = $3',
      `  AND period >= strftime(date_trunc(${grain}, $4::DATE), '%Y-%m-%d')`,
      `  AND period <= strftime(date_trunc(${grain}, $5::DATE), '%Y-%m-%d')`,
    ].join('\n'),
    params: [q.kpi.id, q.grain, breakdownKey(q.by), q.from, q.to],
  };
  const c = compileSeries(q);
  const k = c.params.length;
  const ins: CompiledSql = {
    sql: `INSERT INTO rollup_cells\nSELECT $${k + 1}, $${k + 2}, $${k + 3}, period, grp, value, n FROM (\n${c.sql}\n) AS cells`,
    params: [...c.params, q.kpi.id, q.grain, breakdownKey(q.by)],
  };
  return [del, ins];
}

/**
 * The rolled-up cells of a series and, in the same statement (one consistent view), the
 * KPI's rollup state: the caller uses the cells only if the state matches the query.
 */
export function compileRollupRead(q: SeriesQuery, fromPeriod: string, toPeriod: string): CompiledSql {
  return {
    sql: [
      'SELECT s.snapshot::INTEGER AS state_snapshot, s.signature, c.period, c.grp, c.value, c.n',
      'FROM rollup_state s',
      'LEFT JOIN rollup_cells c',
      '  ON c.kpi = s.kpi AND c.grain = $2 AND c.breakdown = $3 AND c.period >= $4 AND c.period <= $5',
      'WHERE s.kpi = $1',
      'ORDER BY c.period, c.grp NULLS FIRST',
    ].join('\n'),
    params: [q.kpi.id, q.grain, breakdownKey(q.by), fromPeriod, toPeriod],
  };
}
