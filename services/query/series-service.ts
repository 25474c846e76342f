import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import { CanonicalFragment, canonicalJson, sha256Hex } from '../platform/canonical-json.js';
import { daysBetween, localToday, shiftDays } from '../platform/calendar.js';
import { badRequest } from '../platform/errors.js';
import type { DuckStore } from '../platform/duck-store.js';
import { compileSeries, rawCellOf, type Breakdown, type SeriesQuery } from './aggregate-compiler.js';
import { type Grain } from '../platform/calendar.js';
import { readRollup } from './rollups.js';
import type { SeriesReader } from './series-reader.js';
import type { SeriesResult } from './query-schemas.js';
import { disclose, disclosureRules, type RawCell } from './disclosure.js';

/** What a caller asked for, as strings straight from the query string. */
export interface SeriesParams {
  grain?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  by?: string | undefined;
  snapshot?: string | undefined;
}

/** A served series (its shape is the response schema's): the same request at the same snapshot gives the same bytes to everyone. */
export type { SeriesResult };

const isoDate = /^(\d{4})-(\d{2})-(\d{2})$/;
const MAX_RANGE_DAYS = 5 * 366;

function parseDate(value: string, field: string): string {
  const m = isoDate.exec(value);
  const d = m ? new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!)) : undefined;
  if (!m || !d || d.getUTCDate() !== +m[3]! || d.getUTCMonth() !== +m[2]! - 1 || +m[1]! < 2000 || +m[1]! > 2100)
    throw badRequest(`${field}: expected a date YYYY-MM-DD between 2000 and 2100`, `querystring.${field}`);
  return value;
}

/** Checks from, to and snapshot: local dates (to inclusive, default the last two years) and a landed snapshot. */
/**
 * The oldest snapshot a reader may ask for (the store's): none before the last retention run,
 * none answered under an earlier agreement version. The same bytes or a refusal, never others.
 */
export type SnapshotFloor = Partial<Pick<DuckStore, 'retiredBefore' | 'agreementInForce'>>;

export function resolveRange(
  params: Pick<SeriesParams, 'from' | 'to' | 'snapshot'>,
  timezone: string,
  latest: number,
  now: Date,
  floor: SnapshotFloor = {},
): { from: string; to: string; snapshot: number } {
  const to = params.to === undefined ? localToday(now, timezone) : parseDate(params.to, 'to');
  const from = params.from === undefined ? shiftDays(to, -730) : parseDate(params.from, 'from');
  if (from > to) throw badRequest('from: must not be after to', 'querystring.from');
  if (daysBetween(from, to) > MAX_RANGE_DAYS)
    throw badRequest(`to: the range may span at most ${MAX_RANGE_DAYS} days`, 'querystring.to');
  let snapshot = latest;
  if (params.snapshot !== undefined) {
    if (!/^\d{1,10}$/.test(params.snapshot))
      throw badRequest('snapshot: expected a whole number', 'querystring.snapshot');
    snapshot = Number(params.snapshot);
    if (snapshot > latest) throw badRequest(`snapshot: the latest snapshot is ${latest}`, 'querystring.snapshot');
    const retiredBefore = floor.retiredBefore ?? 0;
    if (snapshot < retiredBefore)
      throw badRequest(
        `snapshot: points counted at snapshot ${snapshot} were deleted under the agreement's retention at snapshot ${retiredBefore}; ask for ${retiredBefore} or later`,
        'querystring.snapshot',
      );
    // Answered under the version before, it would give other bytes now: refused instead.
    const inForce = floor.agreementInForce;
    if (inForce && snapshot < inForce.since)
      throw badRequest(
        `snapshot: snapshot ${snapshot} was answered under an earlier agreement version; version ${inForce.version} is in force from snapshot ${inForce.since}; ask for ${inForce.since} or later`,
        'querystring.snapshot',
      );
  }
  return { from, to, snapshot };
}

/** Checks every parameter against the agreement: the result is the only thing the compiler sees. */
export function resolveSeries(
  agreement: Agreement,
  kpi: Kpi,
  params: SeriesParams,
  latest: number,
  now: Date,
  floor: SnapshotFloor = {},
): SeriesQuery {
  const grain = (params.grain ?? kpi.evaluate.grain) as Grain;
  if (!kpi.grains.includes(grain))
    throw badRequest(`grain: ${kpi.id} is agreed at ${kpi.grains.join(', ')}`, 'querystring.grain');
  const { from, to, snapshot } = resolveRange(params, agreement.partnership.timezone, latest, now, floor);
  let by: Breakdown = { kind: 'none' };
  if (params.by !== undefined && params.by !== 'none') {
    if (params.by === 'partner') {
      if (kpi.breakdown !== 'per_partner')
        throw badRequest(`by: ${kpi.id} is agreed as a combined figure only`, 'querystring.by');
      by = { kind: 'partner' };
    } else if (Object.hasOwn(kpi.dimensions, params.by)) by = { kind: 'dimension', key: params.by };
    else
      throw badRequest(
        `by: expected partner${Object.keys(kpi.dimensions)
          .map((d) => `, ${d}`)
          .join('')} or none`,
        'querystring.by',
      );
  }
  return {
    kpi,
    grain,
    from,
    to,
    by,
    snapshot,
    timezone: agreement.partnership.timezone,
    rules: disclosureRules(agreement, kpi),
  };
}

/** The cells of an agreed aggregate before anything is withheld: never sent as they are. */
export async function runAggregate(
  reader: SeriesReader,
  q: SeriesQuery,
  agreementVersion: number,
): Promise<readonly RawCell[]> {
  const cache = reader.cache;
  return cache ? cache.get(q, agreementVersion, () => queryAggregate(reader, q)) : queryAggregate(reader, q);
}

async function queryAggregate(reader: SeriesReader, q: SeriesQuery): Promise<RawCell[]> {
  const duck = reader.duck;
  // Every snapshot a reader may ask for (none before the last retention run) has the same cut: a
  // cell of a period starting before it lost points to retention (docs/privacy.md §2.7).
  const cut = duck.retainedFrom;
  // Periods an agreement change withheld (the same for every snapshot a reader may ask for: one
  // before the version in force is refused).
  const withheld = duck.withheldPeriods.get(q.kpi.id);
  const finish = (c: RawCell): RawCell => {
    const why =
      withheld?.get(`${q.grain}|${c.period}`) ??
      (q.by.kind === 'dimension' ? withheld?.get(`${q.grain}|by=${q.by.key}|${c.period}`) : undefined);
    return {
      ...c,
      value: c.value === null ? null : round(c.value),
      expired: cut !== null && c.period < cut,
      ...(why ? { withheldFor: why } : {}),
    };
  };
  // The rollup answers exactly when it is current for this KPI at this snapshot; else the points do.
  const rolled = await readRollup(reader, q);
  if (rolled) return rolled.map(finish);
  const rows = await reader.query(compileSeries(q));
  return rows.map((row) => finish(rawCellOf(row)));
}

/** Runs an agreed aggregate and withholds what the agreement does not disclose. */
export async function runSeries(reader: SeriesReader, agreementVersion: number, q: SeriesQuery): Promise<SeriesResult> {
  const raw = await runAggregate(reader, q, agreementVersion);
  // A cached aggregate is one immutable array, shared by every snapshot that did not touch the
  // KPI: the result withheld from it under the same rules and parameters is the same too (only
  // its snapshot number moves), so a warm read withholds and serialises once. One result per
  // parameters is kept (the latest snapshot asked for), and a bounded number of parameters.
  const memoKey = JSON.stringify([agreementVersion, q.kpi.id, q.grain, q.by, q.from, q.to, q.rules]);
  let memo = disclosed.get(raw);
  const hit = memo?.get(memoKey);
  if (hit?.snapshot === q.snapshot) return hit;
  const result = hit ? atSnapshot(hit, q.snapshot) : discloseSeries(raw, agreementVersion, q);
  if (!memo) disclosed.set(raw, (memo = new Map()));
  memo.delete(memoKey);
  memo.set(memoKey, result);
  if (memo.size > MEMO_PER_AGGREGATE) memo.delete(memo.keys().next().value!);
  return result;
}

/** The same withheld cells as of another snapshot that did not touch the KPI. */
function atSnapshot(r: SeriesResult, snapshot: number): SeriesResult {
  const out = { ...r, snapshot };
  Object.defineProperty(out, CELLS_JSON, { value: cellsJsonOf(r), enumerable: false });
  return Object.freeze(out);
}

/** Results withheld from a cached aggregate, by their parameters; gone with the aggregate. */
const disclosed = new WeakMap<readonly RawCell[], Map<string, SeriesResult>>();
const MEMO_PER_AGGREGATE = 16;

function discloseSeries(raw: readonly RawCell[], agreementVersion: number, q: SeriesQuery): SeriesResult {
  const min = q.rules.minGroupSize;
  const cells = disclose(raw, q.rules);
  const cellsJson = canonicalJson(cells);
  const result: SeriesResult = {
    kpi: q.kpi.id,
    measure: q.kpi.measure,
    unit: q.kpi.unit,
    grain: q.grain,
    by: q.by.kind === 'none' ? null : q.by.kind === 'partner' ? 'partner' : q.by.key,
    from: q.from,
    to: q.to,
    snapshot: q.snapshot,
    agreementVersion,
    minGroupSize: min,
    dominance: q.kpi.dominance ?? null,
    approximate: false,
    digest: sha256Hex(cellsJson),
    cells,
  };
  Object.defineProperty(result, CELLS_JSON, { value: cellsJson, enumerable: false });
  // Shared by every reader of the same aggregate: nobody may change it under the others.
  for (const c of cells) Object.freeze(c);
  Object.freeze(cells);
  return Object.freeze(result);
}

// The cells' canonical JSON, computed once for the digest, rides along with the result (not enumerable,
// so it is never serialised itself) for seriesJson to reuse.
const CELLS_JSON = Symbol('cellsJson');

/** The canonical JSON of a result, reusing the cells serialised for its digest. */
const cellsJsonOf = (r: SeriesResult) => (r as SeriesResult & { [CELLS_JSON]?: string })[CELLS_JSON];

/**
 * A result's canonical JSON as UTF-8 bytes, made once per result (a warm read sends the same
 * result again). Bytes, not the string: Node writes a string body by joining it to the headers
 * and encoding both on every response, which cost a third of a bare server's throughput
 * (`npm run bench:reads`, its bare server sending the same body either way).
 */
export function seriesJson(r: SeriesResult): Buffer {
  const done = serialised.get(r);
  if (done !== undefined) return done;
  const cells = cellsJsonOf(r);
  const json = Buffer.from(canonicalJson(cells === undefined ? r : { ...r, cells: new CanonicalFragment(cells) }));
  serialised.set(r, json);
  return json;
}

const serialised = new WeakMap<SeriesResult, Buffer>();

/** Values to 12 significant digits: the same number on every platform and in every encoding. */
function round(v: number): number {
  return Number(v.toPrecision(12));
}
