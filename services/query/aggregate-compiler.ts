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

const dimExpr = (key: string, params: Params, column = 'dims') =>
  `json_extract_string(${column}, ${params.bind(`$.${key}`)})`;

/** The column holding a point's value of an agreed dimension (extracted once, in pointsIn). */
const dimColumn = (kpi: Kpi, key: string) => `dim_${Object.keys(kpi.dimensions).sort().indexOf(key)}`;

/**
 * The KPI's points in [first, last] as of the snapshot, each agreed dimension's value extracted
 * once into dim_<i> (JSON is parsed once per point, not once per family): what every fragment
 * below reads.
 */
function pointsIn(kpi: Kpi, snapshot: number, first: string, last: string, params: Params): string {
  const dims = Object.keys(kpi.dimensions)
    .sort()
    .map((key) => `, ${dimExpr(key, params)} AS ${dimColumn(kpi, key)}`)
    .join('');
  return [
    `SELECT partner, subject, value, local_day, dims${dims} FROM points`,
    `WHERE kpi = ${params.bind(kpi.id)} AND snapshot <= ${params.bind(snapshot)}`,
    `  AND local_day >= ${params.bind(first)}::DATE AND local_day <= ${params.bind(last)}::DATE`,
  ].join('\n');
}

/**
 * Every partner's part of every cell of every readable family (`f`: the index in families()),
 * over the points of `source`: the cell (`c` its first day, `v` its dimension value or null), the
 * partner, its distinct subjects `d`, and `np`, the partners contributing to the cell. Whole
 * cells only: `source` must hold every day of every cell it touches.
 */
function partsOf(kpi: Kpi, source: string, params: Params): string {
  const union = families(kpi)
    .map(
      (f, i) =>
        `SELECT ${i} AS f, date_trunc(${grainSql[f.grain]}, local_day) AS c, ${f.key === null ? 'NULL::VARCHAR' : dimColumn(kpi, f.key)} AS v, partner, count(DISTINCT subject)::INTEGER AS d FROM ${source} GROUP BY ALL`,
    )
    .join('\nUNION ALL\n');
  return `SELECT *, count(*) OVER (PARTITION BY f, c, v)::INTEGER AS np FROM (\n${union}\n) AS parts`;
}

/**
 * The atoms (partner × local day × dimensions) of `source`, each `protected` when, in a cell of
 * any family that holds it, its partner has fewer than k distinct subjects, or the cell belongs to
 * a combined KPI without consent and has fewer than three partners (`parts`: partsOf()).
 */
function flaggedAtoms(kpi: Kpi, rules: DisclosureRules, source: string, parts: string, params: Params): string {
  const k = params.bind(rules.minGroupSize);
  const bad = `b.d < ${k}${rules.threePartners ? ' OR b.np < 3' : ''}`;
  const match = families(kpi)
    .map(
      (f, i) =>
        `(b.f = ${i} AND b.c = date_trunc(${grainSql[f.grain]}, a.local_day) AND b.v IS NOT DISTINCT FROM ${f.key === null ? 'NULL::VARCHAR' : `a.${dimColumn(kpi, f.key)}`})`,
    )
    .join('\n    OR ');
  return [
    `SELECT a.*,`,
    `  EXISTS (SELECT 1 FROM ${parts} AS b WHERE b.partner = a.partner AND (${bad}) AND (`,
    `    ${match})) AS protected`,
    `FROM (SELECT partner, local_day${Object.keys(kpi.dimensions)
      .sort()
      .map((key) => `, ${dimColumn(kpi, key)}`)
      .join('')} FROM ${source} GROUP BY ALL) AS a`,
  ].join('\n');
}

/**
 * The cells of one grain × breakdown over the points of `source` that pass `where`: the measure,
 * `n` (distinct subjects), `partners` (contributing partners), `min_part` (the fewest distinct
 * subjects of any contributing partner, from `parts`) and `protects` (an atom of the cell is
 * protected, from `flagged`).
 */
function cellsOf(
  q: Pick<SeriesQuery, 'kpi' | 'grain' | 'by'>,
  source: string,
  where: (period: string, params: Params) => string,
  parts: string,
  flagged: string,
  params: Params,
): string {
  const mine = q.by.kind === 'dimension' ? q.by.key : null;
  const own = families(q.kpi).findIndex((f) => f.grain === q.grain && f.key === mine);
  if (own < 0) throw new RangeError(`compileSeries: ${q.kpi.id} has no ${q.grain} cells by ${mine ?? 'none'}`);
  const group =
    q.by.kind === 'partner' ? 'partner' : q.by.kind === 'dimension' ? dimColumn(q.kpi, q.by.key) : 'NULL::VARCHAR';
  const period = (column: string) => `date_trunc(${grainSql[q.grain]}, ${column})`;
  // A partner's own cell is its part of the combined one: its only part.
  const minPart =
    q.by.kind === 'partner'
      ? `SELECT c, partner AS v, d AS min_part FROM ${parts} WHERE f = ${own}`
      : `SELECT c, v, min(d) AS min_part FROM ${parts} WHERE f = ${own} GROUP BY c, v`;
  return [
    'SELECT strftime(cell.c, \'%Y-%m-%d\') AS period, cell.g AS grp, cell.value, cell.n,',
    '  m.min_part::INTEGER AS min_part, cell.partners, coalesce(x.protects, false) AS protects',
    'FROM (',
    `  SELECT ${period('local_day')} AS c, ${group} AS g,`,
    `    ${measureSql[q.kpi.measure]}::DOUBLE AS value, count(DISTINCT subject)::INTEGER AS n,`,
    '    count(DISTINCT partner)::INTEGER AS partners',
    `  FROM ${source} WHERE ${where(period('local_day'), params)} GROUP BY ALL`,
    ') AS cell',
    `LEFT JOIN (${minPart}) AS m ON m.c = cell.c AND m.v IS NOT DISTINCT FROM cell.g`,
    `LEFT JOIN (SELECT ${period('local_day')} AS c, ${group} AS g, bool_or(protected) AS protects FROM ${flagged} GROUP BY ALL) AS x`,
    '  ON x.c = cell.c AND x.g IS NOT DISTINCT FROM cell.g',
  ].join('\n');
}

const assertDate = (d: string) => {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(d)) throw new RangeError(`compileSeries: ${JSON.stringify(d)} is not a date`);
};

/**
 * The DuckDB SQL of one agreed aggregate, with what the disclosure rules need (disclosure.ts).
 * Periods are buckets of local days in the partnership's zone (`points.local_day`, computed at
 * landing; ISO weeks start on Monday), so DST days have 23 or 25 hours and every point falls in
 * the bucket its local clock says. The parts are read over the linked cells' reach (every cell of
 * any agreed grain around the requested ones), so each atom's protection is decided over whole
 * cells. `q.timezone` must be the zone the room localised its points in (DuckStore.localise).
 */
export function compileSeries(q: SeriesQuery): CompiledSql {
  assertDate(q.from);
  assertDate(q.to);
  const params = new Params();
  const { first, last } = linkedDays(q.kpi, q.grain, q.from, q.to);
  const d0 = periodStart(q.from, q.grain);
  const d1 = periodEnd(periodStart(q.to, q.grain), q.grain);
  const inCells = (ps: Params) => `local_day >= ${ps.bind(d0)}::DATE AND local_day <= ${ps.bind(d1)}::DATE`;
  const sql = [
    `WITH linked AS MATERIALIZED (\n${pointsIn(q.kpi, q.snapshot, first, last, params)}\n),`,
    `requested AS (SELECT * FROM linked WHERE ${inCells(params)}),`,
    `parts AS (\n${partsOf(q.kpi, 'linked', params)}\n),`,
    `flagged AS (\n${flaggedAtoms(q.kpi, q.rules, 'requested', 'parts', params)}\n)`,
    cellsOf(q, 'requested', () => 'true', 'parts', 'flagged', params),
    'ORDER BY period, grp NULLS FIRST',
  ].join('\n');
  return { sql, params: params.list };
}

/** A breakdown as the rollup tables name it: none, partner or dim:<key>. */
export function breakdownKey(by: Breakdown): string {
  return by.kind === 'dimension' ? `dim:${by.key}` : by.kind;
}

/** The temporary tables a rollup refresh computes the parts and flagged atoms of a block into. */
const PARTS_TABLE = 'rollup_block_parts';
const FLAGGED_TABLE = 'rollup_block_atoms';

/**
 * Replaces a KPI's rollup cells, at every agreed grain and breakdown, whose period starts in
 * [b0, b1], with the cells as of `snapshot`: the parts and flagged atoms of the block are computed
 * once into temporary tables (the same fragments a series request runs), then per grain ×
 * breakdown a DELETE and an INSERT … SELECT of the same cell fragment over the points, so
 * rolled-up cells are exactly the computed ones.
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
  // The cells starting in [b0, b1] hold the atoms of r1; their flags need the whole cells of r2.
  const r1 = linkedDays(kpi, 'day', b0, b1);
  const r2 = linkedDays(kpi, 'day', r1.first, r1.last);
  const pp = new Params();
  const fp = new Params();
  const out: CompiledSql[] = [
    {
      sql: `CREATE OR REPLACE TEMP TABLE ${PARTS_TABLE} AS\nWITH linked AS MATERIALIZED (\n${pointsIn(kpi, snapshot, r2.first, r2.last, pp)}\n)\n${partsOf(kpi, 'linked', pp)}`,
      params: pp.list,
    },
    {
      sql: `CREATE OR REPLACE TEMP TABLE ${FLAGGED_TABLE} AS\nWITH block AS (\n${pointsIn(kpi, snapshot, r1.first, r1.last, fp)}\n)\n${flaggedAtoms(kpi, rules, 'block', PARTS_TABLE, fp)}`,
      params: fp.list,
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
      const source = `(\n${pointsIn(kpi, snapshot, r1.first, r1.last, ps)}\n) AS block`;
      const cells = cellsOf(
        { kpi, grain, by },
        source,
        (period, pp2) => `${period} >= ${pp2.bind(b0)}::DATE AND ${period} <= ${pp2.bind(b1)}::DATE`,
        PARTS_TABLE,
        FLAGGED_TABLE,
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
  out.push({ sql: `DROP TABLE IF EXISTS ${FLAGGED_TABLE}`, params: [] });
  out.push({ sql: `DROP TABLE IF EXISTS ${PARTS_TABLE}`, params: [] });
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
