import { periodEnd, periodStart, type Grain } from '../platform/calendar.js';
import type { DisclosureRules } from './disclosure.js';
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
  /** What the agreement says about withholding this KPI's cells (disclosure.ts). */
  rules: DisclosureRules;
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

/** The first and last local day of every cell of any agreed grain that overlaps [from, to]'s cells at `grain`. */
export function linkedDays(kpi: Kpi, grain: Grain, from: string, to: string): { first: string; last: string } {
  const d0 = periodStart(from, grain);
  const d1 = periodEnd(periodStart(to, grain), grain);
  let first = d0;
  let last = d1;
  for (const g of kpi.grains) {
    const s = periodStart(d0, g);
    const e = periodEnd(periodStart(d1, g), g);
    if (s < first) first = s;
    if (e > last) last = e;
  }
  return { first, last };
}

/** Positional parameters: request values only ever travel bound. */
class Params {
  readonly list: (string | number)[] = [];
  bind(v: string | number): string {
    this.list.push(v);
    return `$${this.list.length}`;
  }
}

/** The readable cell families of a KPI: each agreed grain × the combined figure and each dimension. */
function families(kpi: Kpi): { grain: Grain; key: string | null }[] {
  const dims = Object.keys(kpi.dimensions).sort();
  return kpi.grains.flatMap((grain) => [{ grain, key: null }, ...dims.map((key) => ({ grain, key }))]);
}

const dimExpr = (key: string, params: Params) => `json_extract_string(dims, ${params.bind(`$.${key}`)})`;

/**
 * The KPI's points in [first, last] as of the snapshot, each with `d<i>` (its partner's distinct
 * subjects in its cell of family i) and `protected`: whether, in any readable cell of the KPI
 * that holds it, its partner has fewer than k distinct subjects, or the cell of a combined KPI
 * has fewer than three partners without consent. A partner's own cell is its part of the
 * combined one, so the partner breakdown needs no family of its own. [first, last] must hold
 * whole cells of every family for the flags to be right.
 */
function linkedPoints(kpi: Kpi, rules: DisclosureRules, snapshot: number, first: string, last: string, params: Params) {
  const k = params.bind(rules.minGroupSize);
  const windows: string[] = [];
  const bad: string[] = [];
  families(kpi).forEach((f, i) => {
    const cell = `date_trunc(${grainSql[f.grain]}, local_day)${f.key === null ? '' : `, ${dimExpr(f.key, params)}`}`;
    windows.push(`    count(DISTINCT subject) OVER (PARTITION BY ${cell}, partner) AS d${i}`);
    bad.push(`d${i} < ${k}`);
    if (rules.threePartners) {
      windows.push(`    count(DISTINCT partner) OVER (PARTITION BY ${cell}) AS c${i}`);
      bad.push(`c${i} < 3`);
    }
  });
  return [
    '  SELECT partner, subject, value, local_day, dims,',
    windows.join(',\n') + ',',
    `    (${bad.join(' OR ')}) AS protected`,
    '  FROM points',
    `  WHERE kpi = ${params.bind(kpi.id)} AND snapshot <= ${params.bind(snapshot)}`,
    `    AND local_day >= ${params.bind(first)}::DATE AND local_day <= ${params.bind(last)}::DATE`,
  ].join('\n');
}

/**
 * The cells of one grain × breakdown over linked points (`source`) that pass `where`: the
 * measure, `n` (distinct subjects), `min_part` (the fewest distinct subjects of any contributing
 * partner), `partners` (contributing partners) and `protects` (a point of the cell is protected).
 */
function cellsOf(
  q: Pick<SeriesQuery, 'kpi' | 'grain' | 'by'>,
  source: string,
  where: (period: string, params: Params) => string,
  params: Params,
) {
  const group =
    q.by.kind === 'partner' ? 'partner' : q.by.kind === 'dimension' ? dimExpr(q.by.key, params) : 'NULL::VARCHAR';
  const mine = q.by.kind === 'dimension' ? q.by.key : null;
  const own = families(q.kpi).findIndex((f) => f.grain === q.grain && f.key === mine);
  if (own < 0) throw new RangeError(`compileSeries: ${q.kpi.id} has no ${q.grain} cells by ${mine ?? 'none'}`);
  const period = `date_trunc(${grainSql[q.grain]}, local_day)`;
  return [
    `SELECT strftime(${period}, '%Y-%m-%d') AS period,`,
    `  ${group} AS grp,`,
    `  ${measureSql[q.kpi.measure]}::DOUBLE AS value,`,
    `  count(DISTINCT subject)::INTEGER AS n,`,
    `  min(d${own})::INTEGER AS min_part,`,
    `  count(DISTINCT partner)::INTEGER AS partners,`,
    `  bool_or(protected) AS protects`,
    `FROM ${source}`,
    `WHERE ${where(period, params)}`,
    `GROUP BY ALL`,
  ].join('\n');
}

const assertDate = (d: string) => {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(d)) throw new RangeError(`compileSeries: ${JSON.stringify(d)} is not a date`);
};

/**
 * The DuckDB SQL of one agreed aggregate, with what the disclosure rules need (disclosure.ts).
 * Periods are buckets of local days in the partnership's zone (`points.local_day`, computed at
 * landing; ISO weeks start on Monday), so DST days have 23 or 25 hours and every point falls in
 * the bucket its local clock says. The points are read over the linked cells' reach (every
 * cell of any agreed grain around the requested ones), so each point's protection is decided
 * over whole cells. `q.timezone` must be the zone the room localised its points in
 * (DuckStore.localise).
 */
export function compileSeries(q: SeriesQuery): CompiledSql {
  assertDate(q.from);
  assertDate(q.to);
  const params = new Params();
  const { first, last } = linkedDays(q.kpi, q.grain, q.from, q.to);
  const d0 = periodStart(q.from, q.grain);
  const d1 = periodEnd(periodStart(q.to, q.grain), q.grain);
  const sql = [
    'WITH linked AS (',
    linkedPoints(q.kpi, q.rules, q.snapshot, first, last, params),
    ')',
    cellsOf(q, 'linked', (_, ps) => `local_day >= ${ps.bind(d0)}::DATE AND local_day <= ${ps.bind(d1)}::DATE`, params),
    'ORDER BY period, grp NULLS FIRST',
  ].join('\n');
  return { sql, params: params.list };
}

/** A breakdown as the rollup tables name it: none, partner or dim:<key>. */
export function breakdownKey(by: Breakdown): string {
  return by.kind === 'dimension' ? `dim:${by.key}` : by.kind;
}

/** The temporary table a rollup refresh computes the linked points into, once per block. */
const LINKED_TABLE = 'rollup_linked_points';

/**
 * Replaces a KPI's rollup cells, at every agreed grain and breakdown, whose period starts in
 * [b0, b1], with the cells as of `snapshot`: the linked points of the block are computed once
 * into a temporary table (the same fragment a series request runs), then per grain × breakdown a
 * DELETE and an INSERT … SELECT of the same cell fragment, so rolled-up cells are exactly the
 * computed ones.
 */
export function compileRollupBlock(
  kpi: Kpi,
  rules: DisclosureRules,
  snapshot: number,
  breakdowns: readonly Breakdown[],
  b0: string,
  b1: string,
): CompiledSql[] {
  assertDate(b0);
  assertDate(b1);
  // The cells starting in [b0, b1] hold the points of r1; their flags need the whole cells of r2.
  const r1 = linkedDays(kpi, 'day', b0, b1);
  const r2 = linkedDays(kpi, 'day', r1.first, r1.last);
  const lp = new Params();
  const out: CompiledSql[] = [
    {
      sql: `CREATE OR REPLACE TEMP TABLE ${LINKED_TABLE} AS\n${linkedPoints(kpi, rules, snapshot, r2.first, r2.last, lp)}`,
      params: lp.list,
    },
  ];
  for (const grain of kpi.grains) {
    for (const by of breakdowns) {
      out.push({
        sql: [
          'DELETE FROM rollup_cells',
          'WHERE kpi = $1 AND grain = $2 AND breakdown = $3 AND period >= $4 AND period <= $5',
        ].join('\n'),
        params: [kpi.id, grain, breakdownKey(by), b0, b1],
      });
      const ps = new Params();
      const head = [ps.bind(kpi.id), ps.bind(grain), ps.bind(breakdownKey(by))];
      const cells = cellsOf(
        { kpi, grain, by },
        LINKED_TABLE,
        (period, pp) => `${period} >= ${pp.bind(b0)}::DATE AND ${period} <= ${pp.bind(b1)}::DATE`,
        ps,
      );
      out.push({
        sql: [
          'INSERT INTO rollup_cells (kpi, grain, breakdown, period, grp, value, n, min_part, partners, protects)',
          `SELECT ${head.join(', ')}, period, grp, value, n, min_part, partners, protects FROM (`,
          cells,
          ') AS cells',
        ].join('\n'),
        params: ps.list,
      });
    }
  }
  out.push({ sql: `DROP TABLE IF EXISTS ${LINKED_TABLE}`, params: [] });
  return out;
}

/**
 * The rolled-up cells of a series and, in the same statement (one consistent view), the
 * KPI's rollup state: the caller uses the cells only if the state matches the query.
 */
export function compileRollupRead(q: SeriesQuery, fromPeriod: string, toPeriod: string): CompiledSql {
  return {
    sql: [
      'SELECT s.snapshot::INTEGER AS state_snapshot, s.signature, c.period, c.grp, c.value, c.n, c.min_part, c.partners, c.protects',
      'FROM rollup_state s',
      'LEFT JOIN rollup_cells c',
      '  ON c.kpi = s.kpi AND c.grain = $2 AND c.breakdown = $3 AND c.period >= $4 AND c.period <= $5',
      'WHERE s.kpi = $1',
      'ORDER BY c.period, c.grp NULLS FIRST',
    ].join('\n'),
    params: [q.kpi.id, q.grain, breakdownKey(q.by), fromPeriod, toPeriod],
  };
}
