import { addPeriods, periodEnd, periodStart, shiftDays, type DaySpans, type Grain } from '../platform/calendar.js';
import type { DisclosureRules, RawCell } from './disclosure.js';
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
export const measureSql: Record<Measure, string> = {
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

/**
 * The periods of `grain` whose cells a change of the points on `days` can move, as merged
 * [first, last] period starts: per span, the cells holding one of its days (their values, counts
 * and parts) and every cell sharing a day with those (an atom's protection is decided in every
 * cell holding it), the reach a rollup refresh re-decides (compileRollupRefresh steps 4 and 5).
 */
export function movedPeriods(kpi: Kpi, grain: Grain, days: DaySpans): [string, string][] {
  const out: [string, string][] = [];
  for (const [lo, hi] of days) {
    const reach = linkedDays(kpi, 'day', lo, hi);
    const first = periodStart(reach.first, grain);
    const last = periodStart(reach.last, grain);
    const prev = out.at(-1);
    if (prev && first <= addPeriods(prev[1], grain, 1)) {
      if (last > prev[1]) prev[1] = last;
    } else out.push([first, last]);
  }
  return out;
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

/** Every agreed dimension's value extracted from the `dims` JSON of a points or atoms row, as dim_<i>. */
const dimColumns = (kpi: Kpi, params: Params) =>
  Object.keys(kpi.dimensions)
    .sort()
    .map((key) => `, json_extract_string(dims, ${params.bind(`$.${key}`)}) AS ${dimColumn(kpi, key)}`)
    .join('');

/** The column holding a point's value of an agreed dimension (extracted once, in pointsIn). */
const dimColumn = (kpi: Kpi, key: string) => `dim_${Object.keys(kpi.dimensions).sort().indexOf(key)}`;

/** `, dim_0, dim_1…`: every agreed dimension's column, to select or group by. */
const dimColumnList = (kpi: Kpi) =>
  Object.keys(kpi.dimensions)
    .sort()
    .map((key) => `, ${dimColumn(kpi, key)}`)
    .join('');

/** A family's cell of a row and its partner: `c` (the period's first day), `v` (the dimension value or null), partner. */
const familyCell = (kpi: Kpi, f: { grain: Grain; key: string | null }) =>
  `date_trunc(${grainSql[f.grain]}, local_day) AS c, ${f.key === null ? 'NULL::VARCHAR' : dimColumn(kpi, f.key)} AS v, partner`;

/**
 * The KPI's points in [first, last] as of the snapshot, each agreed dimension's value extracted
 * once into dim_<i> (JSON is parsed once per point, not once per family): what every fragment
 * below reads. `rel` says whether the point is released at the snapshot (no row of its atom in
 * `held_atoms` says it is pending or released later, docs/privacy.md §3) and `rsnap` the
 * snapshot that released it.
 */
function pointsIn(
  kpi: Kpi,
  snapshot: number,
  first: string,
  last: string,
  params: Params,
  and: (ps: Params) => string = () => '',
): string {
  const dims = dimColumns(kpi, params);
  const id = params.bind(kpi.id);
  const snap = params.bind(snapshot);
  return [
    `SELECT *${dims} FROM (`,
    '  SELECT p.partner, p.subject, p.value, p.local_day, p.dims,',
    '    coalesce(h.released <= p.snap, h.partner IS NULL) AS rel, coalesce(h.released, p.snapshot) AS rsnap',
    `  FROM (SELECT *, ${snap}::UINTEGER AS snap FROM points`,
    `    WHERE kpi = ${id} AND snapshot <= ${snap}`,
    `      AND local_day >= ${params.bind(first)}::DATE AND local_day <= ${params.bind(last)}::DATE${and(params)}) AS p`,
    `  LEFT JOIN (SELECT * FROM held_atoms WHERE kpi = ${id} AND snapshot <= ${snap}) AS h`,
    '    ON h.partner = p.partner AND h.snapshot = p.snapshot AND h.local_day = p.local_day AND h.dims IS NOT DISTINCT FROM p.dims',
    ') AS pts',
  ].join('\n');
}

/**
 * Every partner's part of every cell of every readable family (`f`: the index in families()),
 * over the points of `source`: the cell (`c` its first day, `v` its dimension value or null), the
 * partner, its distinct subjects `d`, and `np`, the partners contributing to the cell. Whole
 * cells only: `source` must hold every day of every cell it touches.
 */
function partsOf(kpi: Kpi, rules: DisclosureRules, source: string): string {
  const union = families(kpi)
    .map((_, i) => familyParts(kpi, rules, i, source))
    .join('\nUNION ALL\n');
  return `SELECT *, ${partWindows(rules)} FROM (\n${union}\n) AS parts`;
}

/**
 * What a part needs of the other parts of its cell: `np`, the contributing partners, and `dom`,
 * whether the part dominates the cell's sum (its absolute sum above the agreed share of all
 * partners' absolute sums; never without a dominance rule).
 */
function partWindows(rules: DisclosureRules): string {
  const cell = 'OVER (PARTITION BY f, c, v)';
  // The share is the agreement's number (zod-checked), written as a literal like the measures.
  const dom =
    rules.dominance === null ? 'false' : `coalesce(abs(s) > ${Number(rules.dominance)} * sum(abs(s)) ${cell}, true)`;
  return `count(*) ${cell}::INTEGER AS np, ${dom} AS dom`;
}

/**
 * Every partner's part of every cell of family `i` over the points of `source`: f, c, v, partner,
 * d (distinct subjects) and s (its sum, under a dominance rule only).
 */
function familyParts(kpi: Kpi, rules: DisclosureRules, i: number, source: string): string {
  const f = families(kpi)[i]!;
  // Shares are of released points only: a pending point's value moves no served state (§3).
  const s = rules.dominance === null ? 'NULL::DOUBLE' : 'coalesce(sum(value) FILTER (WHERE rel), 0)::DOUBLE';
  return `SELECT ${i} AS f, ${familyCell(kpi, f)}, count(DISTINCT subject)::INTEGER AS d, ${s} AS s FROM ${source} GROUP BY ALL`;
}

/**
 * The atoms (partner × local day × dimensions) of `source`, each `protected` when, in a cell of
 * any family that holds it, its partner has fewer than k distinct subjects or dominates the cell's
 * sum, or the cell belongs to a combined KPI without consent and has fewer than three partners
 * (`parts`: partsOf()).
 */
function flaggedAtoms(
  kpi: Kpi,
  rules: DisclosureRules,
  source: string,
  parts: string,
  params: Params,
  withDims = false,
): string {
  const k = params.bind(rules.minGroupSize);
  const bad = `b.d < ${k}${rules.threePartners ? ' OR b.np < 3' : ''}${rules.dominance === null ? '' : ' OR b.dom'}`;
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
    `FROM (SELECT partner, local_day${withDims ? ', dims' : ''}${dimColumnList(kpi)} FROM ${source} GROUP BY ALL) AS a`,
  ].join('\n');
}

/**
 * The cells of one grain × breakdown over the points of `source` that pass `where`: the measure,
 * `n` (distinct subjects), `partners` (contributing partners), `min_part` (the fewest distinct
 * subjects of any contributing partner, from `parts`) and `protects` (an atom of the cell is
 * protected, from `flagged`). The rules are decided over every point; the value and `n` over the
 * released ones, with `pending` (some point is not released) and `as_of` (the latest release).
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
  // A partner's own cell is its part of the combined one: its only part, which dominates nothing.
  const minPart =
    q.by.kind === 'partner'
      ? `SELECT c, partner AS v, d AS min_part, false AS dominated FROM ${parts} WHERE f = ${own}`
      : `SELECT c, v, min(d) AS min_part, bool_or(dom) AS dominated FROM ${parts} WHERE f = ${own} GROUP BY c, v`;
  return [
    "SELECT strftime(cell.c, '%Y-%m-%d') AS period, cell.g AS grp, cell.value, cell.n, cell.pending, cell.as_of,",
    // Fail closed: a cell whose parts or atoms were not found is withheld, never shown.
    '  coalesce(m.min_part, 0)::INTEGER AS min_part, cell.partners, coalesce(x.protects, true) AS protects,',
    '  coalesce(m.dominated, true) AS dominated',
    'FROM (',
    `  SELECT ${period('local_day')} AS c, ${group} AS g,`,
    `    (${measureSql[q.kpi.measure]} FILTER (WHERE rel))::DOUBLE AS value,`,
    '    (count(DISTINCT subject) FILTER (WHERE rel))::INTEGER AS n,',
    '    count(DISTINCT partner)::INTEGER AS partners, bool_or(NOT rel) AS pending,',
    '    (max(rsnap) FILTER (WHERE rel))::INTEGER AS as_of',
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
    `WITH linked AS (\n${pointsIn(q.kpi, q.snapshot, first, last, params)}\n),`,
    `requested AS (SELECT * FROM linked WHERE ${inCells(params)}),`,
    `parts AS (\n${partsOf(q.kpi, q.rules, 'linked')}\n),`,
    `flagged AS (\n${flaggedAtoms(q.kpi, q.rules, 'requested', 'parts', params)}\n)`,
    cellsOf(q, 'requested', () => 'true', 'parts', 'flagged', params),
    'ORDER BY period, grp NULLS FIRST',
  ].join('\n');
  return { sql, params: params.list };
}

/** A cell as a compiled series or a rollup read returns it (the columns cellsOf() names). */
export function rawCellOf(row: Record<string, unknown>): RawCell {
  return {
    period: String(row['period']),
    group: row['grp'] == null ? null : String(row['grp']),
    value: row['value'] == null ? null : Number(row['value']),
    n: Number(row['n']),
    minPart: row['min_part'] == null ? 0 : Number(row['min_part']), // fail closed
    partners: Number(row['partners']),
    protects: row['protects'] !== false, // fail closed
    dominated: row['dominated'] !== false, // fail closed
    pending: row['pending'] !== false, // fail closed
    asOf: row['as_of'] == null ? null : Number(row['as_of']),
  };
}

/** A breakdown as the rollup tables name it: none, partner or dim:<key>. */
export function breakdownKey(by: Breakdown): string {
  return by.kind === 'dimension' ? `dim:${by.key}` : by.kind;
}

/** The temporary table a rollup refresh flags the atoms around a batch in. */
const FLAGGED_TABLE = 'rollup_flagged_atoms';

/** Periods per refresh statement: aggregating a whole history at once can exceed DuckDB's memory limit. */
const CHUNK: Record<Grain, number> = { day: 31, week: 13, month: 3 };

/**
 * Points a refresh statement may aggregate beyond its CHUNK of periods, when the room counted the
 * points of each day: light periods are merged into one statement up to this many. A statement
 * costs tens of milliseconds whatever its size (planning, and operators set up for the whole
 * fragment), so a batch spread over two years in CHUNKs cost some 400 statements per KPI. The
 * bound is the size the 10M-point build ran its 31-day statements at under the default 256 MB
 * pool (≈ 420k points each).
 */
export const STATEMENT_POINTS = 500_000;

/** The points of each period of `grain` (a period without a count counts 0). */
export type PeriodPoints = (grain: Grain) => ReadonlyMap<string, number>;

/** Sums points per local day into points per period of each grain, once per grain. */
export function periodPoints(dayPoints: ReadonlyMap<string, number>): PeriodPoints {
  const byGrain = new Map<Grain, Map<string, number>>();
  return (grain) => {
    let m = byGrain.get(grain);
    if (!m) {
      m = new Map();
      for (const [day, n] of dayPoints) {
        const p = periodStart(day, grain);
        m.set(p, (m.get(p) ?? 0) + n);
      }
      byGrain.set(grain, m);
    }
    return m;
  };
}

/**
 * The periods of `grain` holding a day of `days`, in order, cut into groups of CHUNK[grain]
 * consecutive periods (sparse days years apart give one group of the few periods they touch).
 * Given the points of each period, a group takes at least CHUNK[grain] periods and then more
 * while it holds at most `budget` points.
 */
export function periodGroups(
  days: DaySpans,
  grain: Grain,
  points?: ReadonlyMap<string, number>,
  budget = STATEMENT_POINTS,
): string[][] {
  const periods: string[] = [];
  for (const [lo, hi] of days)
    for (let p = periodStart(lo, grain); p <= hi; p = addPeriods(p, grain, 1))
      if (periods.at(-1) !== p) periods.push(p); // spans are sorted: a shared period is the last one
  const out: string[][] = [];
  let group: string[] = [];
  let held = 0;
  for (const p of periods) {
    const n = points?.get(p) ?? 0;
    if (group.length >= CHUNK[grain] && (!points || held + n > budget)) {
      out.push(group);
      group = [];
      held = 0;
    }
    group.push(p);
    held += n;
  }
  if (group.length) out.push(group);
  return out;
}

/** Whether a refresh over `days` takes more than one statement per family without counts (periodGroups). */
export function refreshNeedsCounts(kpi: Kpi, days: DaySpans): boolean {
  return kpi.grains.some((g) => periodGroups(days, g).length > 1);
}

/** The points of `group`'s periods (pointsIn() over their days, only those periods' days). */
function pointsOfPeriods(kpi: Kpi, snapshot: number, grain: Grain, group: readonly string[], params: Params): string {
  const last = periodEnd(group.at(-1)!, grain);
  const first = group[0]!;
  const inGroup = (ps: Params) =>
    `\n      AND date_trunc(${grainSql[grain]}, local_day) IN (${group.map((p) => `${ps.bind(p)}::DATE`).join(', ')})`;
  return pointsIn(kpi, snapshot, first, last, params, inGroup);
}

/** The persisted parts around [first, last] (every cell holding one of its days), with `np` and `dom`. */
function persistedParts(kpi: Kpi, rules: DisclosureRules, first: string, last: string, params: Params): string {
  return [
    `(SELECT *, ${partWindows(rules)} FROM rollup_parts`,
    `  WHERE kpi = ${params.bind(kpi.id)} AND c >= ${params.bind(shiftDays(first, -31))}::DATE AND c <= ${params.bind(last)}::DATE)`,
  ].join('\n');
}

/**
 * Brings a KPI's rollup up to `snapshot` after batches that touched the local days `days`
 * (a full build: every day with points); only the periods holding one of them are recomputed,
 * in groups (periodGroups()), so sparse points over years cost a few statements, not one per
 * chunk between, and with `opts.points` (the points of each period) light periods share one.
 * The room keeps, beside the cells, every partner's part
 * of every cell family (`rollup_parts`: distinct subjects) and the atoms (`rollup_atoms`: partner
 * × local day × dimensions), so a batch recomputes, as before disclosure control, only the cells
 * and parts of the periods holding its days, and then re-decides `min_part` and `protects` — from
 * those small tables — for every cell a changed part can reach. The fragments are the ones a
 * series request runs over the points, so rolled-up cells are exactly the computed ones.
 */
export function compileRollupRefresh(
  kpi: Kpi,
  rules: DisclosureRules,
  snapshot: number,
  breakdowns: readonly Breakdown[],
  days: DaySpans,
  opts: { points?: PeriodPoints | undefined; budget?: number } = {},
): CompiledSql[] {
  for (const span of days) span.forEach(assertDate);
  const groups = (grain: Grain) => periodGroups(days, grain, opts.points?.(grain), opts.budget);
  const lo = days[0]![0];
  const hi = days.at(-1)![1];
  const inList = (from: number, n: number, cast = '') =>
    Array.from({ length: n }, (_, j) => `$${from + j}${cast}`).join(', ');
  const out: CompiledSql[] = [];
  // 1. The parts of every family's cells holding a touched day.
  families(kpi).forEach((f, i) => {
    for (const group of groups(f.grain)) {
      out.push({
        sql: `DELETE FROM rollup_parts WHERE kpi = $1 AND f = $2 AND c IN (${inList(3, group.length, '::DATE')})`,
        params: [kpi.id, i, ...group],
      });
      const ps = new Params();
      const kpiId = ps.bind(kpi.id);
      const source = `(\n${pointsOfPeriods(kpi, snapshot, f.grain, group, ps)}\n) AS chunk`;
      out.push({
        sql: `INSERT INTO rollup_parts (kpi, f, c, v, partner, d, s)\nSELECT ${kpiId}, * FROM (\n${familyParts(kpi, rules, i, source)}\n) AS parts`,
        params: ps.list,
      });
    }
  });
  // 2. The atoms of the touched days.
  const ap = new Params();
  out.push({
    sql: 'DELETE FROM rollup_atoms WHERE kpi = $1 AND local_day >= $2::DATE AND local_day <= $3::DATE',
    params: [kpi.id, lo, hi],
  });
  out.push({
    sql: `INSERT INTO rollup_atoms (kpi, partner, local_day, dims)\nSELECT ${ap.bind(kpi.id)}, partner, local_day, dims FROM (\n${pointsIn(kpi, snapshot, lo, hi, ap)}\n) AS touched GROUP BY ALL`,
    params: ap.list,
  });
  // 3. The atoms whose protection a changed part can change (every day of a cell holding a touched
  // day), and every day of the cells holding those: flagged once, from the persisted tables.
  const reach = linkedDays(kpi, 'day', lo, hi);
  const r1 = linkedDays(kpi, 'day', reach.first, reach.last);
  const fp = new Params();
  const atoms = [
    `(SELECT partner, local_day${dimColumns(kpi, fp)} FROM rollup_atoms`,
    `  WHERE kpi = ${fp.bind(kpi.id)} AND local_day >= ${fp.bind(r1.first)}::DATE AND local_day <= ${fp.bind(r1.last)}::DATE) AS atoms`,
  ].join('\n');
  out.push({
    sql: `CREATE OR REPLACE TEMP TABLE ${FLAGGED_TABLE} AS\n${flaggedAtoms(kpi, rules, atoms, persistedParts(kpi, rules, r1.first, r1.last, fp), fp)}`,
    params: fp.list,
  });
  for (const grain of kpi.grains) {
    for (const by of breakdowns) {
      // 4. The cells of the periods holding a touched day: recomputed from the points.
      for (const group of groups(grain)) {
        out.push({
          sql: `DELETE FROM rollup_cells WHERE kpi = $1 AND grain = $2 AND breakdown = $3 AND period IN (${inList(4, group.length)})`,
          params: [kpi.id, grain, breakdownKey(by), ...group],
        });
        const ps = new Params();
        const head = [ps.bind(kpi.id), ps.bind(grain), ps.bind(breakdownKey(by))];
        const last = periodEnd(group.at(-1)!, grain);
        const cells = cellsOf(
          { kpi, grain, by },
          `(\n${pointsOfPeriods(kpi, snapshot, grain, group, ps)}\n) AS chunk`,
          () => 'true',
          persistedParts(kpi, rules, group[0]!, last, ps),
          FLAGGED_TABLE,
          ps,
        );
        out.push({
          sql: [
            'INSERT INTO rollup_cells (kpi, grain, breakdown, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of)',
            `SELECT ${head.join(', ')}, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of FROM (`,
            cells,
            ') AS cells',
          ].join('\n'),
          params: ps.list,
        });
      }
      // 5. Every other cell a changed part can reach: its protection re-decided from the atoms.
      const us = new Params();
      const from = periodStart(reach.first, grain);
      const to = periodStart(reach.last, grain);
      const group =
        by.kind === 'partner' ? 'partner' : by.kind === 'dimension' ? dimColumn(kpi, by.key) : 'NULL::VARCHAR';
      out.push({
        sql: [
          'UPDATE rollup_cells SET protects = coalesce(x.protects, false)',
          `FROM (SELECT strftime(date_trunc(${grainSql[grain]}, local_day), '%Y-%m-%d') AS period, ${group} AS g, bool_or(protected) AS protects FROM ${FLAGGED_TABLE} GROUP BY ALL) AS x`,
          `WHERE rollup_cells.kpi = ${us.bind(kpi.id)} AND rollup_cells.grain = ${us.bind(grain)} AND rollup_cells.breakdown = ${us.bind(breakdownKey(by))}`,
          `  AND rollup_cells.period >= ${us.bind(from)} AND rollup_cells.period <= ${us.bind(to)}`,
          '  AND x.period = rollup_cells.period AND x.g IS NOT DISTINCT FROM rollup_cells.grp',
          // Only the cells whose protection changed: an update leaves versions a scan pays for.
          '  AND rollup_cells.protects IS DISTINCT FROM coalesce(x.protects, false)',
        ].join('\n'),
        params: us.list,
      });
    }
  }
  out.push({ sql: `DROP TABLE IF EXISTS ${FLAGGED_TABLE}`, params: [] });
  return out;
}

/**
 * The rolled-up cells of a series and, in the same statement (one consistent view), the
 * KPI's rollup state: the caller uses the cells only if the state matches the query. The state
 * is a row of its own, first (its period is NULL), rather than joined onto every cell: the
 * signature repeated on each of a few hundred rows cost ≈ 15 % of the read.
 */
export function compileRollupRead(q: SeriesQuery, fromPeriod: string, toPeriod: string): CompiledSql {
  return {
    sql: [
      'SELECT snapshot::INTEGER AS state_snapshot, signature, NULL::VARCHAR AS period, NULL::VARCHAR AS grp,',
      '  NULL::DOUBLE AS value, NULL::INTEGER AS n, NULL::INTEGER AS min_part, NULL::INTEGER AS partners,',
      '  NULL::BOOLEAN AS protects, NULL::BOOLEAN AS dominated, NULL::BOOLEAN AS pending, NULL::INTEGER AS as_of',
      'FROM rollup_state WHERE kpi = $1',
      'UNION ALL',
      'SELECT NULL, NULL, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of::INTEGER',
      'FROM rollup_cells WHERE kpi = $1 AND grain = $2 AND breakdown = $3 AND period >= $4 AND period <= $5',
      'ORDER BY period NULLS FIRST, grp NULLS FIRST',
    ].join('\n'),
    params: [q.kpi.id, q.grain, breakdownKey(q.by), fromPeriod, toPeriod],
  };
}

/** The temporary tables a release step narrows its candidate atoms in, holds their points in, and counts them in. */
const CANDIDATES_TABLE = 'release_candidates';
const CHANGE_TABLE = 'release_change';
const COUNTS_TABLE = 'release_counts';

/**
 * The parts of family `f` whose largest partner × day × dimension group of the change holds
 * fewer than `k` (a bound parameter) subjects: those the release step counts exactly.
 */
const smallParts = (kpi: Kpi, f: { grain: Grain; key: string | null }, k: string) =>
  `SELECT ${familyCell(kpi, f)} FROM ${COUNTS_TABLE} GROUP BY ALL HAVING max(d) < ${k}`;

/**
 * The parts of the change's cells as the release step needs them, without a distinct count of
 * the change's points per family. Distinct subjects are counted once per partner, day and
 * dimension values (COUNTS_TABLE, finer than every cell); a part holds at least the subjects of
 * its largest such group, so where that reaches k its exact count cannot make it fail and is not
 * taken (`d` is then that lower bound); below k it is counted over the points, as before. Every
 * part's `d < k` is therefore decided as by partsOf, and `np` comes from the same parts.
 * Dominance needs each part's sum: those KPIs keep partsOf.
 */
function releaseParts(kpi: Kpi, rules: DisclosureRules, params: Params): string {
  if (rules.dominance !== null) return partsOf(kpi, rules, CHANGE_TABLE);
  const k = params.bind(rules.minGroupSize);
  const bound = families(kpi)
    .map((f, i) => `SELECT ${i} AS f, ${familyCell(kpi, f)}, max(d) AS dmax FROM ${COUNTS_TABLE} GROUP BY ALL`)
    .join('\nUNION ALL\n');
  const exact = families(kpi)
    .map(
      (f, i) =>
        `SELECT ${i} AS f, x.c, x.v, x.partner, count(DISTINCT x.subject)::INTEGER AS d FROM (SELECT ${familyCell(kpi, f)}, subject FROM ${CHANGE_TABLE}) AS x` +
        ` SEMI JOIN (${smallParts(kpi, f, k)}) AS small` +
        ' ON small.c = x.c AND small.v IS NOT DISTINCT FROM x.v AND small.partner = x.partner GROUP BY ALL',
    )
    .join('\nUNION ALL\n');
  return [
    `SELECT *, ${partWindows(rules)} FROM (`,
    '  SELECT b.f, b.c, b.v, b.partner, coalesce(e.d, b.dmax)::INTEGER AS d, NULL::DOUBLE AS s',
    `  FROM (\n${bound}\n) AS b`,
    `  LEFT JOIN (\n${exact}\n) AS e ON e.f = b.f AND e.c = b.c AND e.v IS NOT DISTINCT FROM b.v AND e.partner = b.partner`,
    ') AS parts',
  ].join('\n');
}

/**
 * The statements of one KPI's release step at `snapshot` (docs/privacy.md §3). The candidates are
 * its pending atoms; their points are the change the step would publish (`change` copies them,
 * each agreed dimension extracted once). `drop` removes every candidate atom that lies in a
 * failing part of that change — in some readable cell a partner's change has fewer than k
 * distinct subjects or dominates the change's sum, or (combined, without consent) fewer than
 * three partners changed — and `change`, `counts` and `drop` are run until it removes nothing
 * (removing an atom can make another cell's change fail); under the k-rule alone the `safe`
 * checks first say whether any part can fail at all, and when none can the drop is not run.
 * Most steps end there, so `quickCounts` counts the candidates' subjects straight from the points
 * for the `safe` checks before the change is copied at all; after a drop, `prune` takes the
 * dropped atoms' points out of the change instead of copying it again. `release` then releases
 * what is left.
 */
export function compileRelease(
  kpi: Kpi,
  rules: DisclosureRules,
  snapshot: number,
): {
  candidates: CompiledSql;
  change: CompiledSql;
  counts: CompiledSql | null;
  quickCounts: CompiledSql | null;
  safe: CompiledSql[];
  drop: CompiledSql;
  prune: CompiledSql;
  release: CompiledSql;
  done: CompiledSql[];
} {
  const c = CANDIDATES_TABLE;
  /** The candidate atoms' points: the change the step would publish. */
  const candidatePoints = (ps: Params) =>
    [
      `  FROM points p SEMI JOIN ${c} c ON c.partner = p.partner AND c.snapshot = p.snapshot AND c.local_day = p.local_day AND c.dims IS NOT DISTINCT FROM p.dims`,
      `  WHERE p.kpi = ${ps.bind(kpi.id)} AND p.snapshot <= ${ps.bind(snapshot)}`,
      // Points are appended in snapshot order: the bounds skip every older row group.
      `    AND p.snapshot >= (SELECT min(snapshot) FROM ${c})`,
      `    AND p.local_day >= (SELECT min(local_day) FROM ${c}) AND p.local_day <= (SELECT max(local_day) FROM ${c})`,
    ].join('\n');
  const cp = new Params();
  const change = [
    `CREATE OR REPLACE TEMP TABLE ${CHANGE_TABLE} AS`,
    `SELECT *${dimColumns(kpi, cp)} FROM (`,
    // The change is what the step would release: its own shares count (rel, as familyParts reads).
    '  SELECT p.partner, p.subject, p.value, p.local_day, p.dims, true AS rel',
    candidatePoints(cp),
    ') AS x',
  ].join('\n');
  // The counts below, grouped by the dims text before its values are extracted: one group per
  // partner, day and dimension values when the text is canonical (ingest writes it so), the
  // same rows `counts` takes from the copy. Were it not, a group would be split in two and its
  // counts could only be lower: the `safe` checks stay sufficient, and the drop (releaseParts)
  // uses a group's count only to skip the exact count of a part that holds k by it anyway.
  const qp = new Params();
  const quickCounts = [
    `CREATE OR REPLACE TEMP TABLE ${COUNTS_TABLE} AS`,
    `SELECT partner, local_day${dimColumns(kpi, qp)}, d FROM (`,
    '  SELECT p.partner, p.local_day, p.dims, count(DISTINCT hash(p.subject))::INTEGER AS d',
    candidatePoints(qp),
    '  GROUP BY ALL',
    ') AS g',
  ].join('\n');
  const dp = new Params();
  const parts = `(${releaseParts(kpi, rules, dp)})`;
  const flagged = flaggedAtoms(kpi, rules, CHANGE_TABLE, parts, dp, true);
  return {
    candidates: {
      sql: `CREATE OR REPLACE TEMP TABLE ${c} AS SELECT partner, snapshot, local_day, dims FROM held_atoms WHERE kpi = $1 AND released IS NULL AND snapshot <= $2`,
      params: [kpi.id, snapshot],
    },
    change: { sql: change, params: cp.list },
    // The change's distinct subjects per partner, day and dimension values, for releaseParts:
    // counted by their 64-bit hashes, which two subjects can share but never split, so the count
    // can only be low — still a lower bound, and a low one only sends a part to the exact count.
    counts:
      rules.dominance === null
        ? {
            sql: `CREATE OR REPLACE TEMP TABLE ${COUNTS_TABLE} AS SELECT partner, local_day${dimColumnList(kpi)}, count(DISTINCT hash(subject))::INTEGER AS d FROM ${CHANGE_TABLE} GROUP BY ALL`,
            params: [],
          }
        : null,
    quickCounts: rules.dominance === null && !rules.threePartners ? { sql: quickCounts, params: qp.list } : null,
    // Under the k-rule alone: when no part of any readable cell has, by the counts' lower bound,
    // fewer than k subjects (releaseParts would count none of them exactly), no atom is
    // protected and the drop, the step's costliest statement, is not run. The first check is
    // the cheap sufficient one (every group holds k, so every part does); the second is exact.
    safe:
      rules.dominance === null && !rules.threePartners
        ? [
            { sql: `SELECT coalesce(min(d), 0) >= $1 AS safe FROM ${COUNTS_TABLE}`, params: [rules.minGroupSize] },
            {
              sql: `SELECT NOT EXISTS (\n${families(kpi)
                .map((f) => smallParts(kpi, f, '$1'))
                .join('\nUNION ALL\n')}\n) AS safe`,
              params: [rules.minGroupSize],
            },
          ]
        : [],
    drop: {
      sql: [
        `DELETE FROM ${c} USING (SELECT partner, local_day, dims FROM (\n${flagged}\n) AS f WHERE protected) AS bad`,
        `WHERE ${c}.partner = bad.partner AND ${c}.local_day = bad.local_day AND ${c}.dims IS NOT DISTINCT FROM bad.dims`,
      ].join('\n'),
      params: dp.list,
    },
    // What a copy of the change after the drop would hold: the drop removes every snapshot's atom
    // of a partner, day and dims, so a point stays exactly when a candidate of its triple does.
    prune: {
      sql: [
        `DELETE FROM ${CHANGE_TABLE} WHERE NOT EXISTS (SELECT 1 FROM ${c} c WHERE c.partner = ${CHANGE_TABLE}.partner`,
        `  AND c.local_day = ${CHANGE_TABLE}.local_day AND c.dims IS NOT DISTINCT FROM ${CHANGE_TABLE}.dims)`,
      ].join('\n'),
      params: [],
    },
    release: {
      sql: [
        `UPDATE held_atoms SET released = $2 FROM ${c} c`,
        'WHERE held_atoms.kpi = $1 AND held_atoms.released IS NULL AND c.partner = held_atoms.partner',
        '  AND c.snapshot = held_atoms.snapshot AND c.local_day = held_atoms.local_day AND c.dims IS NOT DISTINCT FROM held_atoms.dims',
      ].join('\n'),
      params: [kpi.id, snapshot],
    },
    done: [
      { sql: `DROP TABLE IF EXISTS ${c}`, params: [] },
      { sql: `DROP TABLE IF EXISTS ${CHANGE_TABLE}`, params: [] },
      { sql: `DROP TABLE IF EXISTS ${COUNTS_TABLE}`, params: [] },
    ],
  };
}
