import { effectiveMinGroupSize, type Agreement, type Kpi } from '../governance/agreement-schema.js';
import type { Principal } from '../governance/token-repository.js';
import { CanonicalFragment, canonicalJson, sha256Hex } from '../platform/canonical-json.js';
import type { DuckStore } from '../platform/duck-store.js';
import { badRequest, forbidden, notFound, unauthorized } from '../platform/errors.js';
import { compileSeries, type Breakdown, type Grain, type SeriesQuery } from './aggregate-compiler.js';
import { AggregateCache } from './aggregate-cache.js';
import { readRollup } from './rollups.js';
import { suppress, type Cell, type RawCell } from './suppression.js';

/** What a caller asked for, as strings straight from the query string. */
export interface SeriesParams {
  grain?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  by?: string | undefined;
  snapshot?: string | undefined;
}

/** A served series: the same request at the same snapshot gives the same bytes to everyone. */
export interface SeriesResult {
  kpi: string;
  measure: string;
  unit: string;
  grain: Grain;
  by: string | null;
  from: string;
  to: string;
  snapshot: number;
  agreementVersion: number;
  minGroupSize: number;
  approximate: boolean;
  digest: string;
  cells: Cell[];
}

const readRoles = new Set(['analyst', 'owner', 'steering', 'admin']);
const isoDate = /^(\d{4})-(\d{2})-(\d{2})$/;
const MAX_RANGE_DAYS = 5 * 366;

/** Whether the caller may see a KPI at all (tiers); unseen KPIs are answered as unknown. */
export function canSee(p: Principal | null, kpi: Kpi): boolean {
  if (!p) return kpi.disclosure === 'public' && kpi.published;
  if (!readRoles.has(p.role)) return false;
  if (kpi.disclosure === 'need_to_know')
    return p.role === 'steering' || kpi.needToKnow.some((e) => sameEmail(e, p.name)) || isNamedOwner(p, kpi);
  return true;
}

/** E-mail addresses name people whatever their case. */
const sameEmail = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The caller is the KPI's root-cause owner for their partner (the token's name is the owner's e-mail). */
export function isNamedOwner(p: Principal, kpi: Kpi): boolean {
  const owner = p.partnerId === null ? undefined : kpi.owners[p.partnerId];
  return owner !== undefined && sameEmail(owner.email, p.name);
}

/** 403 for roles that never read aggregates (ingest, operator); the caller otherwise. */
export function assertReader(p: Principal | null): void {
  if (p && !readRoles.has(p.role)) throw forbidden(`the ${p.role} role cannot read aggregates`);
}

/** The KPI if the caller may see it; otherwise 401 without a token, 404 with one (unknown and hidden look alike). */
export function findVisibleKpi(agreement: Agreement, p: Principal | null, id: string): Kpi {
  const kpi = agreement.kpis.find((k) => k.id === id);
  if (!kpi || !canSee(p, kpi)) {
    if (!p) throw unauthorized();
    throw notFound(`no KPI ${JSON.stringify(id.slice(0, 60))} for you`);
  }
  return kpi;
}

function parseDate(value: string, field: string): string {
  const m = isoDate.exec(value);
  const d = m ? new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!)) : undefined;
  if (!m || !d || d.getUTCDate() !== +m[3]! || d.getUTCMonth() !== +m[2]! - 1 || +m[1]! < 2000 || +m[1]! > 2100)
    throw badRequest(`${field}: expected a date YYYY-MM-DD between 2000 and 2100`, `querystring.${field}`);
  return value;
}

/** Today's date in the partnership's zone. */
export function localToday(now: Date, timezone: string): string {
  return new Intl.DateTimeFormat('en-CA', {
    timeZone: timezone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(now);
}

/** Checks from, to and snapshot: local dates (to inclusive, default the last two years) and a landed snapshot. */
export function resolveRange(
  params: Pick<SeriesParams, 'from' | 'to' | 'snapshot'>,
  timezone: string,
  latest: number,
  now: Date,
  retiredBefore = 0,
): { from: string; to: string; snapshot: number } {
  const to = params.to === undefined ? localToday(now, timezone) : parseDate(params.to, 'to');
  const from = params.from === undefined ? shiftDays(to, -730) : parseDate(params.from, 'from');
  if (from > to) throw badRequest('from: must not be after to', 'querystring.from');
  if ((Date.parse(to) - Date.parse(from)) / 86_400_000 > MAX_RANGE_DAYS)
    throw badRequest(`to: the range may span at most ${MAX_RANGE_DAYS} days`, 'querystring.to');
  let snapshot = latest;
  if (params.snapshot !== undefined) {
    if (!/^\d{1,10}$/.test(params.snapshot))
      throw badRequest('snapshot: expected a whole number', 'querystring.snapshot');
    snapshot = Number(params.snapshot);
    if (snapshot > latest) throw badRequest(`snapshot: the latest snapshot is ${latest}`, 'querystring.snapshot');
    if (snapshot < retiredBefore)
      throw badRequest(
        `snapshot: points counted at snapshot ${snapshot} were deleted under the agreement's retention at snapshot ${retiredBefore}; ask for ${retiredBefore} or later`,
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
  retiredBefore = 0,
): SeriesQuery {
  const grain = (params.grain ?? kpi.evaluate.grain) as Grain;
  if (!kpi.grains.includes(grain))
    throw badRequest(`grain: ${kpi.id} is agreed at ${kpi.grains.join(', ')}`, 'querystring.grain');
  const { from, to, snapshot } = resolveRange(params, agreement.partnership.timezone, latest, now, retiredBefore);
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
  return { kpi, grain, from, to, by, snapshot, timezone: agreement.partnership.timezone };
}

export function shiftDays(date: string, days: number): string {
  return new Date(Date.parse(date) + days * 86_400_000).toISOString().slice(0, 10);
}

const caches = new WeakMap<DuckStore, AggregateCache | null>();

/** Turns the aggregate cache of a store on (the default) or off (benchmarks of cold queries). */
export function configureAggregateCache(duck: DuckStore, enabled: boolean): void {
  caches.set(duck, enabled ? new AggregateCache(duck) : null);
}

export function aggregateCacheOf(duck: DuckStore): AggregateCache | null {
  if (!caches.has(duck)) configureAggregateCache(duck, true);
  return caches.get(duck)!;
}

/** The cells of an agreed aggregate before anything is withheld: never sent as they are. */
export async function runAggregate(
  duck: DuckStore,
  q: SeriesQuery,
  agreementVersion: number,
): Promise<readonly RawCell[]> {
  const cache = aggregateCacheOf(duck);
  return cache ? cache.get(q, agreementVersion, () => queryAggregate(duck, q)) : queryAggregate(duck, q);
}

async function queryAggregate(duck: DuckStore, q: SeriesQuery): Promise<RawCell[]> {
  // The rollup answers exactly when it is current for this KPI at this snapshot; else the points do.
  const rolled = await readRollup(duck, q);
  if (rolled) return rolled.map((c) => ({ ...c, value: c.value === null ? null : round(c.value) }));
  const rows = await duck.query(compileSeries(q));
  return rows.map((row) => ({
    period: String(row['period']),
    group: row['grp'] == null ? null : String(row['grp']),
    value: row['value'] == null ? null : round(Number(row['value'])),
    n: Number(row['n']),
  }));
}

/** Runs an agreed aggregate and withholds what the agreement does not disclose. */
export async function runSeries(
  duck: DuckStore,
  agreement: Agreement,
  agreementVersion: number,
  q: SeriesQuery,
): Promise<SeriesResult> {
  const raw = await runAggregate(duck, q, agreementVersion);
  const min = effectiveMinGroupSize(agreement, q.kpi);
  const cells = suppress(raw, min, q.by.kind !== 'none');
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
    approximate: false,
    digest: sha256Hex(cellsJson),
    cells,
  };
  serialisedCells.set(result, cellsJson);
  return result;
}

const serialisedCells = new WeakMap<SeriesResult, string>();

/** The canonical JSON of a result, reusing the cells serialised for its digest. */
export function seriesJson(r: SeriesResult): string {
  const cells = serialisedCells.get(r);
  return canonicalJson(cells === undefined ? r : { ...r, cells: new CanonicalFragment(cells) });
}

/** Values to 12 significant digits: the same number on every platform and in every encoding. */
function round(v: number): number {
  return Number(v.toPrecision(12));
}
