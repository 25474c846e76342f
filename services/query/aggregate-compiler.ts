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

/**
 * A family's cells: a grain's periods, or the slices (`slice`), the days a week shares with a
 * month. Weeks and months do not nest: a month minus the weeks wholly inside it is the two slices
 * at its ends, and the chain of such differences from where the points begin gives every slice,
 * so a slice is as readable as a cell, though no request names one. With day cells agreed, a
 * slice is a sum of days, each judged already.
 */
export type FamilyGrain = Grain | 'slice';

/**
 * A family of linked cells: its grain (or slices) × the combined figure (`key` null), one
 * dimension (its key), or every dimension at once ({@link CROSS}).
 */
export interface CellFamily {
  grain: FamilyGrain;
  key: string | null;
}

/**
 * The family key of the cells of every agreed dimension at once (a KPI of two or more): region
 * north *and* channel web. No request names such a cell, but the cells of one dimension cut each
 * other into them: a region's cell minus a channel's is north∩web less south∩app, and where a
 * combination cannot occur (the app only in the north) that is north∩web, a partner's one
 * subject there (a ninth review). So they are judged as cells, like the week∩month slices; the
 * cells of fewer dimensions at once are unions of theirs and pass wherever theirs do. Not a
 * dimension key: the agreement's keys are identifiers.
 */
export const CROSS = '*';

/**
 * The cell families of a KPI the disclosure rules judge: each agreed grain × the combined figure
 * and each dimension, then, when weeks and months are agreed without days, their slices × the
 * same, then, with two dimensions or more, each of those grains × every dimension at once (last,
 * so the earlier families keep their indices in the rollup's parts).
 */
export function families(kpi: Kpi): CellFamily[] {
  const dims = Object.keys(kpi.dimensions).sort();
  const grains: FamilyGrain[] = [...kpi.grains];
  if (hasSlices(kpi)) grains.push('slice');
  return [
    ...grains.flatMap((grain) => [{ grain, key: null }, ...dims.map((key) => ({ grain, key }))]),
    ...(dims.length > 1 ? grains.map((grain) => ({ grain, key: CROSS })) : []),
  ];
}

/**
 * A family's group of a row (its columns under `prefix`): null for the combined figure, the
 * dimension's value, or every dimension's values at once as a JSON array (in the sorted keys'
 * order, null for a value the point does not carry) — what {@link crossValue} builds in the process.
 */
function familyGroup(kpi: Kpi, key: string | null, prefix = ''): string {
  if (key === null) return 'NULL::VARCHAR';
  if (key !== CROSS) return `${prefix}${dimColumn(kpi, key)}`;
  const cols = Object.keys(kpi.dimensions)
    .sort()
    .map((k) => `${prefix}${dimColumn(kpi, k)}`);
  return `to_json(list_value(${cols.join(', ')}))::VARCHAR`;
}

/** A group's value in a family of every dimension at once, as {@link familyGroup} writes it in SQL. */
export function crossValue(
  kpi: Pick<Kpi, 'dimensions'>,
  values: Readonly<Record<string, string | null | undefined>>,
): string {
  return JSON.stringify(
    Object.keys(kpi.dimensions)
      .sort()
      .map((k) => values[k] ?? null),
  );
}

/** Whether weeks and months are agreed without days: their slices are judged as cells. */
export const hasSlices = (kpi: Pick<Kpi, 'grains'>): boolean =>
  kpi.grains.includes('week') && kpi.grains.includes('month') && !kpi.grains.includes('day');

/** The first day of the cell of a family's grain holding the day in `column` (a slice: the later of its week's and its month's). */
const cellStart = (grain: FamilyGrain, column: string): string =>
  grain === 'slice'
    ? `greatest(date_trunc('week', ${column}), date_trunc('month', ${column}))`
    : `date_trunc(${grainSql[grain]}, ${column})`;

/** The grain whose periods a family's cells are computed in: a slice lies within its week. */
const periodGrain = (grain: FamilyGrain): Grain => (grain === 'slice' ? 'week' : grain);

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
const familyCell = (kpi: Kpi, f: CellFamily) =>
  `${cellStart(f.grain, 'local_day')} AS c, ${familyGroup(kpi, f.key)} AS v, partner`;

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
 * What a part needs of the other parts of its cell: `np`, the contributing partners, `nrp`, those
 * with released points, and `dom`, whether the part dominates the cell's sum (its absolute sum
 * above the agreed share of all partners' absolute sums; never without a dominance rule).
 */
function partWindows(rules: DisclosureRules): string {
  const cell = 'OVER (PARTITION BY f, c, v)';
  // The share is the agreement's number (zod-checked), written as a literal like the measures.
  const dom =
    rules.dominance === null ? 'false' : `coalesce(abs(s) > ${Number(rules.dominance)} * sum(abs(s)) ${cell}, true)`;
  return `count(*) ${cell}::INTEGER AS np, (count(*) FILTER (WHERE rd > 0) ${cell})::INTEGER AS nrp, ${dom} AS dom`;
}

/**
 * Every partner's part of every cell of family `i` over the points of `source`: f, c, v, partner,
 * d (distinct subjects), s (its sum, under a dominance rule only) and rd (released distinct subjects).
 */
function familyParts(kpi: Kpi, rules: DisclosureRules, i: number, source: string): string {
  const f = families(kpi)[i]!;
  // Shares are of released points only: a pending point's value moves no served state (§3).
  const s = rules.dominance === null ? 'NULL::DOUBLE' : 'coalesce(sum(value) FILTER (WHERE rel), 0)::DOUBLE';
  // rd: the released distinct subjects (a held cell shows its released points, each partner's
  // released part checked against k too). DuckDB counts both from one distinct set per group:
  // measured, the second count costs nothing a parts statement shows.
  return `SELECT ${i} AS f, ${familyCell(kpi, f)}, count(DISTINCT subject)::INTEGER AS d, ${s} AS s, (count(DISTINCT subject) FILTER (WHERE rel))::INTEGER AS rd FROM ${source} GROUP BY ALL`;
}

/**
 * The atoms (partner × local day × dimensions) of `source`, each `protected` when, in a cell of
 * any family that holds it, its partner has fewer than k distinct subjects — all its points, or
 * its released ones — or dominates the cell's sum, or the cell belongs to a combined KPI without
 * consent and has fewer than three partners — all of them, or those with released points
 * (`parts`: partsOf()). Released points were judged in the cells of their release; a later
 * version can agree cells that did not exist then (a grain or dimension added back), where
 * pending points lift a released part over the rules that served values (its released points
 * only) do not pass: such a part protects its atoms like a small one (docs/privacy.md §2.6).
 */
function flaggedAtoms(kpi: Kpi, rules: DisclosureRules, source: string, parts: string, params: Params): string {
  const k = params.bind(rules.minGroupSize);
  const bad = [
    `b.d < ${k}`,
    `(b.rd > 0 AND b.rd < ${k})`,
    ...(rules.threePartners ? ['b.np < 3', '(b.nrp > 0 AND b.nrp < 3)'] : []),
    ...(rules.dominance === null ? [] : ['b.dom']),
  ].join(' OR ');
  const match = families(kpi)
    .map(
      (f, i) =>
        `(b.f = ${i} AND b.c = ${cellStart(f.grain, 'a.local_day')} AND b.v IS NOT DISTINCT FROM ${familyGroup(kpi, f.key, 'a.')})`,
    )
    .join('\n    OR ');
  return [
    `SELECT a.*,`,
    `  EXISTS (SELECT 1 FROM ${parts} AS b WHERE b.partner = a.partner AND (${bad}) AND (`,
    `    ${match})) AS protected`,
    `FROM (SELECT partner, local_day${dimColumnList(kpi)} FROM ${source} GROUP BY ALL) AS a`,
  ].join('\n');
}

/**
 * The cells of one grain × breakdown over the points of `source` that pass `where`: the measure,
 * `n` (distinct subjects), `partners` (contributing partners), `min_part` (the fewest distinct
 * subjects of any contributing partner, from `parts`) and `protects` (an atom of the cell is
 * protected, from `flagged`). The rules are decided over every point; the value and `n` over the
 * released ones, with `pending` (some point is not released), `as_of` (the latest release) and
 * `rel_min_part` (the fewest released distinct subjects of a partner with released points).
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
  // rel_min_part: the fewest released distinct subjects of a partner with released points.
  const minPart =
    q.by.kind === 'partner'
      ? `SELECT c, partner AS v, d AS min_part, false AS dominated, rd AS rel_min_part FROM ${parts} WHERE f = ${own}`
      : `SELECT c, v, min(d) AS min_part, bool_or(dom) AS dominated, min(rd) FILTER (WHERE rd > 0) AS rel_min_part FROM ${parts} WHERE f = ${own} GROUP BY c, v`;
  return [
    "SELECT strftime(cell.c, '%Y-%m-%d') AS period, cell.g AS grp, cell.value, cell.n, cell.pending, cell.as_of,",
    // Fail closed: a cell whose parts or atoms were not found is withheld, never shown.
    '  coalesce(m.min_part, 0)::INTEGER AS min_part, cell.partners, coalesce(x.protects, true) AS protects,',
    '  coalesce(m.dominated, true) AS dominated,',
    // A cell with no pending point has every part released (rd = d): rel_min_part is min_part.
    '  coalesce(m.rel_min_part, 0)::INTEGER AS rel_min_part',
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

/** The highest snapshot number: every point landed, each released or pending as it stands. */
const EVERY_SNAPSHOT = 4_294_967_295;

/**
 * The days, in `timezone`, of every point of a KPI in an atom the KPI's rules protect over all
 * its points as they stand (§2.6: a small part, a released part below the rules, a dominating
 * one, a cell of too few partners, in a cell of any of its families). What a version that
 * drops some of those families withholds (DuckStore.adoptAgreement): a cell the dropped family
 * protected would be served from the version on, and set against what readers kept from before,
 * give the protected part away. Run before the points move to a new zone's days: the rules are
 * the old version's, over the old arrangement. Reads every point of the KPI.
 */
export function compileProtectedDays(kpi: Kpi, rules: DisclosureRules, timezone: string): CompiledSql {
  const params = new Params();
  const sameDims = Object.keys(kpi.dimensions)
    .sort()
    .map(
      (key) =>
        ` AND a.${dimColumn(kpi, key)} IS NOT DISTINCT FROM json_extract_string(p.dims, ${params.bind(`$.${key}`)})`,
    )
    .join('');
  const sql = [
    `WITH linked AS (\n${pointsIn(kpi, EVERY_SNAPSHOT, '0001-01-01', '9999-12-31', params)}\n),`,
    `parts AS (\n${partsOf(kpi, rules, 'linked')}\n),`,
    `flagged AS (\n${flaggedAtoms(kpi, rules, 'linked', 'parts', params)}\n)`,
    `SELECT DISTINCT strftime(timezone(${params.bind(timezone)}, p.ts)::DATE, '%Y-%m-%d') AS day`,
    'FROM points p JOIN flagged a ON a.protected AND a.partner = p.partner AND a.local_day = p.local_day',
    `  ${sameDims} WHERE p.kpi = ${params.bind(kpi.id)}`,
    'ORDER BY day',
  ].join('\n');
  return { sql, params: params.list };
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
    relMinPart: row['rel_min_part'] == null ? 0 : Number(row['rel_min_part']), // fail closed
  };
}

/** A breakdown as the rollup tables name it: none, partner or dim:<key>. */
export function breakdownKey(by: Breakdown): string {
  return by.kind === 'dimension' ? `dim:${by.key}` : by.kind;
}

/** The temporary table a rollup refresh flags the atoms around a batch in. */
const FLAGGED_TABLE = 'rollup_flagged_atoms';

/**
 * Ends each INSERT of a rollup refresh. A refresh is one transaction of some hundred INSERTs, and
 * DuckDB appends an INSERT … SELECT from each of its threads into storage of the transaction's own,
 * which keeps every block it started (DuckDB 1.5: a 10M-point build held 48–54 MB of them for
 * 5,000 rows, and ran out of a 96 MB pool). With RETURNING it appends from one thread into the
 * blocks it already has (3 MB for the same build, no slower: the SELECT still runs on every
 * thread). The few rows it returns are dropped.
 */
const APPEND_SERIALLY = '\nRETURNING NULL';

/** Periods per refresh statement: aggregating a whole history at once can exceed DuckDB's memory limit. */
const CHUNK: Record<Grain, number> = { day: 31, week: 13, month: 3 };

/**
 * Points a refresh statement may aggregate under the default 256 MB pool, when the room counted
 * the points of each day: light periods are merged into one statement up to this many, and heavy
 * ones are cut to fewer periods than their CHUNK. A statement costs tens of milliseconds whatever
 * its size (planning, and operators set up for the whole fragment), so a batch spread over two
 * years in CHUNKs cost some 400 statements per KPI. The bound is the size the 10M-point build ran
 * its 31-day statements at under that pool (≈ 420k points each), before a parts statement
 * counted each partner's distinct subjects twice (all, and released). The room takes fewer
 * (statementPointsFor): under PARITY_MEMORY_LIMIT=400MB (a 96 MB pool) 13 weeks of a 10M-point
 * room's KPI ran out of memory at every retry, so its rollups never caught up.
 */
export const STATEMENT_POINTS = 500_000;

/**
 * The points a refresh statement may aggregate in a DuckDB pool of `poolBytes`: a kilobyte of pool
 * a point, at most STATEMENT_POINTS. A day statement of 171k points whose subjects were all
 * distinct (a 10M-point push of one partner) ran a 96 MB pool out of memory, at about 560 bytes
 * a point, beside the band evaluation's reads (before refresh statements took turns with them);
 * the pool also holds what other work has cached.
 */
export const statementPointsFor = (poolBytes: number): number =>
  Math.max(10_000, Math.min(STATEMENT_POINTS, Math.round(poolBytes / 1000)));

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
 * Given the points of each period, a group instead takes periods while it holds at most `budget`
 * points (always at least one period): more than CHUNK light ones, fewer heavy ones.
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
    if (points ? group.length > 0 && held + n > budget : group.length >= CHUNK[grain]) {
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
    const grain = periodGrain(f.grain);
    for (const group of groups(grain)) {
      out.push({
        sql: `DELETE FROM rollup_parts WHERE kpi = $1 AND f = $2 AND ${grain === f.grain ? 'c' : `date_trunc(${grainSql[grain]}, c)`} IN (${inList(3, group.length, '::DATE')})`,
        params: [kpi.id, i, ...group],
      });
      const ps = new Params();
      const kpiId = ps.bind(kpi.id);
      const source = `(\n${pointsOfPeriods(kpi, snapshot, grain, group, ps)}\n) AS chunk`;
      out.push({
        sql: `INSERT INTO rollup_parts (kpi, f, c, v, partner, d, s, rd)\nSELECT ${kpiId}, * FROM (\n${familyParts(kpi, rules, i, source)}\n) AS parts${APPEND_SERIALLY}`,
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
    sql: `INSERT INTO rollup_atoms (kpi, partner, local_day, dims)\nSELECT ${ap.bind(kpi.id)}, partner, local_day, dims FROM (\n${pointsIn(kpi, snapshot, lo, hi, ap)}\n) AS touched GROUP BY ALL${APPEND_SERIALLY}`,
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
            'INSERT INTO rollup_cells (kpi, grain, breakdown, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of, rel_min_part)',
            `SELECT ${head.join(', ')}, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of, rel_min_part FROM (`,
            cells,
            `) AS cells${APPEND_SERIALLY}`,
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
      '  NULL::BOOLEAN AS protects, NULL::BOOLEAN AS dominated, NULL::BOOLEAN AS pending, NULL::INTEGER AS as_of,',
      '  NULL::INTEGER AS rel_min_part',
      'FROM rollup_state WHERE kpi = $1',
      'UNION ALL',
      'SELECT NULL, NULL, period, grp, value, n, min_part, partners, protects, dominated, pending, as_of::INTEGER, rel_min_part',
      'FROM rollup_cells WHERE kpi = $1 AND grain = $2 AND breakdown = $3 AND period >= $4 AND period <= $5',
      'ORDER BY period NULLS FIRST, grp NULLS FIRST',
    ].join('\n'),
    params: [q.kpi.id, q.grain, breakdownKey(q.by), fromPeriod, toPeriod],
  };
}

/** The shape of a list of change groups as a release step's statements take it (from_json). */
const GROUPS_SHAPE = '[{"kpi":"VARCHAR","partner":"VARCHAR","day":"DATE","dims":"VARCHAR"}]';

/** One partner's change on one local day with one dims text, as the release step names it. */
export interface ChangeGroupKey {
  kpi: string;
  partner: string;
  /** The local day, YYYY-MM-DD. */
  day: string;
  /** The dims JSON text as stored (null: none). */
  dims: string | null;
}

/** `groups` as one bound JSON value (whatever their number) and the rows it unnests to, `w`. */
const groupList = (groups: readonly ChangeGroupKey[], ps: Params) =>
  `(SELECT unnest(from_json(${ps.bind(JSON.stringify(groups.map(({ kpi, partner, day, dims }) => ({ kpi, partner, day, dims }))))}, '${GROUPS_SHAPE}'), recursive := true)) AS w`;

/**
 * The most verdicts the release step takes on a dominated part that has not changed (docs/privacy.md
 * §3): the one that found it dominant, and as many more as other partners' later data near it
 * brings, up to this; after that only a change of its own part (or another agreement) judges it.
 */
export const DOMINANCE_VERDICTS = 3;

/**
 * The statements of a release step at `snapshot` over `kpis` (docs/privacy.md §3), the same for
 * one KPI or many: the step's cost is a few statements, whatever the KPIs and the change. The
 * candidates are the KPIs' pending atoms; their points are the change the step would publish.
 *
 * - `groups` reads the candidates from `held_atoms` alone, grouped by KPI, partner, local day
 *   and dims text (an atom's day at every pending snapshot): `d`, the most distinct subjects of
 *   one of its atoms (each a lower bound, schema.sql), so a lower bound of the group's; `s`, the
 *   group's sum; `unknown`, whether an atom was held without those (they are then read from the
 *   points); `subjects`, the group's distinct subjects when it is below `maxK` (the largest k
 *   of the KPIs) and each of its atoms kept them (HOLD_ATOMS_LISTED), else null; and each
 *   agreed dimension's value (`x<i>` for `dimensionKeys[i]`), extracted as the series
 *   fragments extract it.
 * - `points(groups)` reads those groups of the change from the points: `d` (by hash), `s`, and
 *   every distinct subject, for the parts that must be counted exactly and whose subjects
 *   `groups` could not give.
 * - `release(dropped)` releases every candidate except the dropped groups' atoms (at every
 *   pending snapshot of their partner, day and dims).
 * - `history(spans)` reads, for quantile KPIs, the atoms already released in the cells the
 *   change touches (`spans`: each KPI's first and last day of those cells): per partner, local
 *   day and dims text, the latest snapshot that released points of it (`last`), from
 *   `released_atoms` (schema.sql): what the step guard needs to know who moved each cell last
 *   (release.ts, docs/privacy.md §2.3). It was a scan of those cells' points joined to their
 *   atoms, which grew with the room (40–180 ms of a 10k-point batch's step in a 1M-point room).
 *   The step keeps the table current (RECORD_RELEASES, duck-store.ts).
 * - Atoms the step guard holds while no other partner changes their cells *wait* (`waiting`,
 *   schema.sql, set to `waitingUnder`, the agreement they were judged under): the candidates
 *   leave them out, so a partner pushing alone into cells others have released points in does
 *   not read its whole held backlog again at every step. `wake` makes them candidates again
 *   before `groups` reads, when another partner's candidate is near: in the same month, or in
 *   the same or an adjacent 7-day bucket from Monday 2000-01-03 (every two atoms that share a
 *   day, a week, a month or a slice are); `wait(groups)` marks the groups heldGroups found
 *   waiting (its `waiting`, release.ts).
 * - Atoms whose part dominated a cell's change wait as well (`wait(groups, true)`, heldGroups'
 *   `dominated`, run before `release`), with `waited_after`, this step's snapshot, and
 *   `verdicts`, the verdicts taken on their group's part since it last changed. `wake` makes them
 *   candidates again when their own part changed (a pending atom of their partner, day and dims
 *   that landed after the verdict), or, while `verdicts` is under DOMINANCE_VERDICTS, when
 *   another partner's candidate that landed after it is near: padding by the others cannot walk
 *   the verdict (docs/privacy.md §3).
 *
 * Deciding what drops is release.ts's, over these rows (heldGroups).
 */
export function compileReleaseStep(
  kpis: readonly Kpi[],
  snapshot: number,
  maxK: number,
  waitingUnder: string,
): {
  dimensionKeys: string[];
  wake: CompiledSql;
  groups: CompiledSql;
  points: (groups: readonly ChangeGroupKey[]) => CompiledSql;
  release: (dropped: readonly ChangeGroupKey[]) => CompiledSql;
  wait: (waiting: readonly ChangeGroupKey[], dominated?: boolean) => CompiledSql;
  history: (spans: readonly { kpi: Kpi; first: string; last: string }[]) => CompiledSql;
} {
  const dimensionKeys = [...new Set(kpis.flatMap((k) => Object.keys(k.dimensions)))].sort();
  const ids = kpis.map((k) => k.id);
  const gp = new Params();
  const extracted = dimensionKeys
    .map((key, i) => `, json_extract_string(dims, ${gp.bind(`$.${key}`)}) AS x${i}`)
    .join('');
  const heldOf = (ps: Params, h = '') =>
    `${h}kpi IN (${ids.map((id) => ps.bind(id)).join(', ')}) AND ${h}released IS NULL AND ${h}snapshot <= ${ps.bind(snapshot)}`;
  /** The candidates: pending atoms at the snapshot that do not wait under this agreement. */
  const pendingOf = (ps: Params, h = '') =>
    `${heldOf(ps, h)} AND ${h}waiting IS DISTINCT FROM ${ps.bind(waitingUnder)}`;
  // Near: in the same month, or in the same or an adjacent 7-day bucket (every two days at most six
  // days apart are). The candidates' keys, each with a partner and its latest snapshot there, so
  // the waiting rows find theirs by equality, not by comparing every waiting row with every candidate.
  const bucket = (day: string) => `(${day} - DATE '2000-01-03') // 7`;
  const month = (day: string) => `'m' || strftime(${day}, '%Y-%m')`;
  const nearKeys = (ps: Params) =>
    `SELECT kpi, key, partner, max(snapshot) AS last FROM (SELECT kpi, partner, snapshot, unnest([${month('local_day')}, 'w' || (${bucket('local_day')} - 1), 'w' || ${bucket('local_day')}, 'w' || (${bucket('local_day')} + 1)]) AS key FROM held_atoms WHERE ${pendingOf(ps)}) GROUP BY kpi, key, partner`;
  /** The candidates' keys near a held_atoms row: `c`, one row per partner and key. */
  const nearRow = (ps: Params) =>
    `(${nearKeys(ps)}) c WHERE c.kpi = held_atoms.kpi AND c.key IN (${month('held_atoms.local_day')}, 'w' || ${bucket('held_atoms.local_day')})`;
  /** A held_atoms row of the same group (partner × day × dims) as the row being updated, as `o`. */
  const sameGroup = (o: string) =>
    `${o}.kpi = held_atoms.kpi AND ${o}.partner = held_atoms.partner AND ${o}.local_day = held_atoms.local_day AND ${o}.dims IS NOT DISTINCT FROM held_atoms.dims`;
  // A guard's wait (`verdicts` NULL) ends with another partner's candidate near. A dominated one's
  // ends when its own part changes (a newer atom of its group), or, while fewer than
  // DOMINANCE_VERDICTS verdicts were taken on the unchanged part, with another partner's candidate
  // near that landed after the last one. `waited_after` and `verdicts` stay for the next verdict.
  const wp = new Params();
  const wake = [
    'UPDATE held_atoms SET waiting = NULL',
    `WHERE ${heldOf(wp)} AND waiting = ${wp.bind(waitingUnder)} AND CASE WHEN verdicts IS NULL`,
    `  THEN EXISTS (SELECT 1 FROM ${nearRow(wp)} AND c.partner <> held_atoms.partner)`,
    `  ELSE EXISTS (SELECT 1 FROM held_atoms n WHERE ${pendingOf(wp, 'n.')} AND ${sameGroup('n')} AND n.snapshot > held_atoms.waited_after)`,
    `    OR verdicts < ${DOMINANCE_VERDICTS} AND EXISTS (SELECT 1 FROM ${nearRow(wp)} AND c.partner <> held_atoms.partner AND c.last > held_atoms.waited_after)`,
    '  END',
  ].join('\n');
  const groups = [
    `SELECT kpi, partner, strftime(local_day, '%Y-%m-%d') AS day, dims${extracted}, d, s, unknown, subjects FROM (`,
    '  SELECT kpi, partner, local_day, dims, coalesce(max(d), 0)::INTEGER AS d, coalesce(sum(s), 0)::DOUBLE AS s,',
    '    bool_or(d IS NULL OR s IS NULL) AS unknown,',
    `    CASE WHEN coalesce(max(d), 0) < ${gp.bind(maxK)} AND bool_and(subjects IS NOT NULL)`,
    '      THEN list_distinct(flatten(list(subjects))) END AS subjects',
    `  FROM held_atoms WHERE ${pendingOf(gp)} GROUP BY kpi, partner, local_day, dims`,
    ') AS g',
  ].join('\n');
  return {
    dimensionKeys,
    wake: { sql: wake, params: wp.list },
    groups: { sql: groups, params: gp.list },
    points: (wanted) => {
      const ps = new Params();
      return {
        sql: [
          `WITH pending AS (SELECT h.kpi, h.partner, h.snapshot, h.local_day, h.dims FROM held_atoms h SEMI JOIN ${groupList(wanted, ps)}`,
          '  ON w.kpi = h.kpi AND w.partner = h.partner AND w.day = h.local_day AND w.dims IS NOT DISTINCT FROM h.dims',
          `  WHERE h.released IS NULL AND h.snapshot <= ${ps.bind(snapshot)} AND h.waiting IS DISTINCT FROM ${ps.bind(waitingUnder)})`,
          "SELECT p.kpi, p.partner, strftime(p.local_day, '%Y-%m-%d') AS day, p.dims, count(DISTINCT hash(p.subject))::INTEGER AS d,",
          '  sum(p.value)::DOUBLE AS s, list(DISTINCT p.subject) AS subjects',
          'FROM points p SEMI JOIN pending c ON c.kpi = p.kpi AND c.partner = p.partner AND c.snapshot = p.snapshot',
          '  AND c.local_day = p.local_day AND c.dims IS NOT DISTINCT FROM p.dims',
          // Points are appended in snapshot order: the bounds skip every older row group.
          `WHERE p.snapshot <= ${ps.bind(snapshot)} AND p.snapshot >= (SELECT min(snapshot) FROM pending)`,
          '  AND p.local_day >= (SELECT min(local_day) FROM pending) AND p.local_day <= (SELECT max(local_day) FROM pending)',
          'GROUP BY p.kpi, p.partner, p.local_day, p.dims',
        ].join('\n'),
        params: ps.list,
      };
    },
    release: (dropped) => {
      const rp = new Params();
      const sql = [`UPDATE held_atoms SET released = ${rp.bind(snapshot)}`, `WHERE ${pendingOf(rp)}`];
      if (dropped.length)
        sql.push(
          `  AND NOT EXISTS (SELECT 1 FROM ${groupList(dropped, rp)}`,
          '    WHERE w.kpi = held_atoms.kpi AND w.partner = held_atoms.partner AND w.day = held_atoms.local_day AND w.dims IS NOT DISTINCT FROM held_atoms.dims)',
        );
      return { sql: sql.join('\n'), params: rp.list };
    },
    wait: (waiting, dominated = false) => {
      const ps = new Params();
      // A dominated group counts its verdicts on the unchanged part: one more, unless an atom of it
      // landed after the last verdict (its part changed: this is the first on the new part).
      const verdicts = dominated
        ? `1 + coalesce((SELECT CASE WHEN max(o.snapshot) > max(o.waited_after) THEN 0 ELSE max(o.verdicts) END FROM held_atoms o WHERE o.released IS NULL AND o.snapshot <= ${ps.bind(snapshot)} AND ${sameGroup('o')}), 0)`
        : 'NULL';
      return {
        sql: [
          `UPDATE held_atoms SET waiting = ${ps.bind(waitingUnder)}, waited_after = ${dominated ? ps.bind(snapshot) : 'NULL'}, verdicts = ${verdicts}`,
          `WHERE ${pendingOf(ps)} AND EXISTS (SELECT 1 FROM ${groupList(waiting, ps)}`,
          '  WHERE w.kpi = held_atoms.kpi AND w.partner = held_atoms.partner AND w.day = held_atoms.local_day AND w.dims IS NOT DISTINCT FROM held_atoms.dims)',
        ].join('\n'),
        params: ps.list,
      };
    },
    history: (spans) => {
      const hp = new Params();
      const within = spans.map(
        ({ kpi, first, last }) =>
          `(kpi = ${hp.bind(kpi.id)} AND local_day >= ${hp.bind(first)}::DATE AND local_day <= ${hp.bind(last)}::DATE)`,
      );
      return {
        sql: [
          "SELECT kpi, partner, strftime(local_day, '%Y-%m-%d') AS day, dims, last::INTEGER AS last",
          `FROM released_atoms WHERE ${within.join(' OR ')}`,
        ].join('\n'),
        params: hp.list,
      };
    },
  };
}
