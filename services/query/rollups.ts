import type { Logger } from 'pino';
import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import { BackgroundLoop } from '../platform/background-loop.js';
import { Lifecycle } from '../platform/lifecycle.js';
import { canonicalJson } from '../platform/canonical-json.js';
import { mergeDaySpans, periodEnd, periodStart, type DaySpans } from '../platform/calendar.js';
import type { DuckStore } from '../platform/duck-store.js';
import type { SeriesReader } from './series-reader.js';
import { SYSTEM_READ, type ReadGate } from './read-gate.js';
import {
  compileRollupRead,
  compileRollupRefresh,
  compileSeries,
  movedPeriods,
  periodPoints,
  rawCellOf,
  refreshNeedsCounts,
  statementPointsFor,
  type PeriodPoints,
  type Breakdown,
  type CompiledSql,
  type SeriesQuery,
} from './aggregate-compiler.js';
import { disclosureRules, type DisclosureRules, type RawCell } from './disclosure.js';

/**
 * A refresh that failed (DuckDB out of memory while a large batch lands, say) is tried again after
 * 1 s, then 2, 4 … up to a minute while it keeps failing, rather than at the next batch: until it
 * succeeds every series reads points (the slow path), or patches the moved periods from them.
 */
export const ROLLUP_RETRY = { firstMs: 1_000, maxMs: 60_000 };

/** What the cells of a KPI depend on besides the points: a change rebuilds its rollup. */
export function rollupSignature(kpi: Kpi, timezone: string, rules: DisclosureRules): string {
  return canonicalJson({
    cells: 11, // every dimension at once judged as a family of a KPI of two or more (11); released parts and partners below the rules protect their atoms (10); the parts of week∩month slices (9); the disclosure columns (min_part, partners, protects, dominated, pending, as_of, rel_min_part; dominance shares of released points) and the parts (with their released subjects) and atoms beside them
    minGroupSize: rules.minGroupSize,
    threePartners: rules.threePartners,
    dominance: rules.dominance,
    measure: kpi.measure,
    grains: kpi.grains,
    breakdown: kpi.breakdown,
    dimensions: Object.keys(kpi.dimensions).sort(),
    timezone,
  });
}

export function rollupBreakdowns(kpi: Kpi): Breakdown[] {
  return [
    { kind: 'none' },
    ...(kpi.breakdown === 'per_partner' ? [{ kind: 'partner' } as const] : []),
    ...Object.keys(kpi.dimensions).map((key) => ({ kind: 'dimension', key }) as const),
  ];
}

/** The one statement a series read from the rollup runs (the benchmark times it in-process). */
export function rollupReadSql(q: SeriesQuery): CompiledSql {
  return compileRollupRead(q, periodStart(q.from, q.grain), periodStart(q.to, q.grain));
}

/**
 * The cells of a series from the rollup, or undefined when the rollup cannot answer it exactly:
 * not built yet, built for another signature, rolled up past the query's effective snapshot (an
 * older `?snapshot=`), or behind it with a retention run since. The caller then aggregates the
 * points.
 *
 * A rollup behind the query's snapshot (batches not rolled up yet) still answers the periods the
 * later batches and releases cannot have moved: only the periods holding a day they touched, and
 * those sharing a day with such a period (movedPeriods), are aggregated from the points, at the
 * query's snapshot, by the same compiled SQL. A cell's figures are decided over whole linked cells
 * whatever range a request asks, so the patched series is exactly the one the points give. When
 * the moved periods cover the whole request, the points answer it in one statement instead.
 */
export async function readRollup(reader: SeriesReader, q: SeriesQuery): Promise<RawCell[] | undefined> {
  const duck = reader.duck;
  const rollups = reader.rollups;
  const effective = duck.touched.effective(q.kpi.id, q.snapshot);
  const rolled = rollups?.rolledUp(q.kpi.id);
  // Known unusable (not built, or past this snapshot): no statement spent on it.
  if (!rollups || effective === 0 || !rolled || rolled > effective) return undefined;
  const fromPeriod = periodStart(q.from, q.grain);
  const toPeriod = periodStart(q.to, q.grain);
  let moved: [string, string][] = [];
  if (rolled < effective) {
    // A retention run deletes points without carrying its snapshot on any: the refresh learns its
    // days another way (removedDays), so a rollup from before it is not patched.
    if (duck.retiredBefore > rolled) return undefined;
    const days = await rollups.movedDays(q.kpi.id, rolled, effective);
    if (days.length === 0) return undefined; // the KPI changed, but not where the store says: read it whole
    moved = patchPlan(q, days);
    if (moved.length === 1 && moved[0]![0] === fromPeriod && moved[0]![1] === toPeriod) return undefined;
  }
  // In its caller's turn too: one statement per cache miss, and a red team's 64 connections of
  // distinct ranges, each a rollup read, took globex's pushes to 4 s.
  const rows = await reader.query(rollupReadSql(q));
  const state = rows[0]; // the state's own row (no period), first; none when the KPI has no rollup
  if (
    !state ||
    state['period'] !== null ||
    Number(state['state_snapshot']) !== rolled ||
    state['signature'] !== rollupSignature(q.kpi, q.timezone, q.rules)
  )
    return undefined;
  const cells = rows.filter((r) => r['period'] !== null).map(rawCellOf);
  if (moved.length === 0) {
    rollups.reads.rollup++;
    return cells;
  }
  const patched = await patchSeries(q, cells, moved, (s) => reader.query(s));
  // A retention run that committed meanwhile deleted points the rollup still counts.
  if (duck.retiredBefore > rolled) return undefined;
  rollups.reads.patched++;
  return patched;
}

/** Statements a patched read runs over moved ranges at most (more ranges: their hull). */
const MAX_PATCHES = 3;

/**
 * The period ranges a series behind the rollup reads from the points (patchRanges): many
 * scattered ranges (a backfill of separate months) would cost a statement each, so past
 * MAX_PATCHES one statement over their hull.
 */
export function patchPlan(q: Pick<SeriesQuery, 'kpi' | 'grain' | 'from' | 'to'>, days: DaySpans): [string, string][] {
  const moved = patchRanges(q, days);
  return moved.length > MAX_PATCHES ? [[moved[0]![0], moved.at(-1)![1]]] : moved;
}

/** The rolled-up cells with the `moved` ranges aggregated from the points by the series' own compiled SQL (`query` runs it). */
export async function patchSeries(
  q: SeriesQuery,
  rolled: readonly RawCell[],
  moved: readonly (readonly [string, string])[],
  query: (statement: CompiledSql) => Promise<Record<string, unknown>[]>,
): Promise<RawCell[]> {
  const fresh: RawCell[][] = [];
  for (const [from, to] of moved) fresh.push((await query(compileSeries({ ...q, from, to }))).map(rawCellOf));
  return patchCells(rolled, moved, fresh);
}

/** The period ranges of a series that a change on `days` can move (movedPeriods), within the request. */
export function patchRanges(q: Pick<SeriesQuery, 'kpi' | 'grain' | 'from' | 'to'>, days: DaySpans): [string, string][] {
  const from = periodStart(q.from, q.grain);
  const to = periodStart(q.to, q.grain);
  const out: [string, string][] = [];
  for (const [a, b] of movedPeriods(q.kpi, q.grain, days))
    if (b >= from && a <= to) out.push([a < from ? from : a, b > to ? to : b]);
  return out;
}

/**
 * The rolled-up cells with those of the `moved` period ranges replaced by `fresh` (one list per
 * range, each ordered as a series is): every list is ordered by period and group, and the
 * ranges are disjoint, so the merge keeps the order a series read gives.
 */
export function patchCells(
  rolled: readonly RawCell[],
  moved: readonly (readonly [string, string])[],
  fresh: readonly (readonly RawCell[])[],
): RawCell[] {
  const out: RawCell[] = [];
  let i = 0;
  moved.forEach(([from, to], r) => {
    for (; i < rolled.length && rolled[i]!.period < from; i++) out.push(rolled[i]!);
    while (i < rolled.length && rolled[i]!.period <= to) i++;
    out.push(...fresh[r]!);
  });
  for (; i < rolled.length; i++) out.push(rolled[i]!);
  return out;
}

/**
 * Keeps the rollups current: at start it builds the KPIs that have none (or whose signature
 * changed), and after batches it recomputes, for each KPI they touched, the periods between
 * their earliest and latest local day — at every agreed grain and breakdown. Runs beside
 * ingest on the background loop; until a KPI is rolled up, its series read points.
 */
export class RollupMaintainer {
  readonly #duck: DuckStore;
  readonly #agreement: () => Agreement;
  readonly #log: Pick<Logger, 'info' | 'warn' | 'error'>;
  readonly loop: BackgroundLoop;
  #unsubscribe: (() => void) | undefined;
  /** The snapshot through which every batch is rolled up (all KPIs of the agreement). */
  through = -1;
  /** Points a refresh statement may aggregate, for the store's pool (tests lower it to cut more groups). */
  statementPoints: number;
  /** Per KPI, the last touching snapshot its committed rollup includes (rollup_state, in memory). */
  readonly #rolledUp = new Map<string, number>();

  rolledUp(kpi: string): number | undefined {
    return this.#rolledUp.get(kpi);
  }

  /** Series answered by the rollup whole, and by the rollup patched with the periods moved since. */
  readonly reads = { rollup: 0, patched: 0 };

  /**
   * The days of a KPI that batches and releases in (after, upTo] touched, asked once per pair by
   * every series read between them (a dashboard's reads after one batch share one statement).
   */
  movedDays(kpi: string, after: number, upTo: number): Promise<DaySpans> {
    const key = `${kpi}\u0000${after}\u0000${upTo}`;
    let days = this.#moved.get(key);
    if (!days) {
      days = this.#duck.touchedDaysOf(kpi, after, upTo);
      days.catch(() => this.#moved.delete(key));
      this.#moved.set(key, days);
      if (this.#moved.size > 64) this.#moved.delete(this.#moved.keys().next().value!);
    }
    return days;
  }
  readonly #moved = new Map<string, Promise<DaySpans>>();

  /**
   * @param gate the reads of the points (read-gate.ts): each refresh statement takes a turn with
   *   them, as the room's own read. Under PARITY_MEMORY_LIMIT=400MB (one turn) a build after a
   *   10M-point push and the band evaluation reading the same periods from the points at once ran
   *   DuckDB's 96 MB out of memory at every retry; taking turns, the build went through.
   */
  constructor(
    duck: DuckStore,
    agreement: () => Agreement,
    log: Pick<Logger, 'info' | 'warn' | 'error'>,
    readonly gate?: ReadGate,
  ) {
    this.#duck = duck;
    this.statementPoints = statementPointsFor(duck.memoryBytes);
    this.#agreement = agreement;
    this.#log = log;
    this.loop = new BackgroundLoop(
      () =>
        this.#catchUp().catch((err: unknown) => {
          // A refresh the stop interrupted rolled back; it is redone when rollups start again.
          // Any other failure is reported, stopping or not.
          if (!(this.#abort.signal.aborted && interrupted(err))) throw err;
        }),
      () => duck.slots.busy > 0,
      (err, retryInMs) =>
        log.error(
          { err, retryInMs },
          'rollups: refresh failed; until a retry succeeds, series read the periods moved since from the points',
        ),
      { retry: ROLLUP_RETRY },
    );
  }

  /** Starts keeping the rollups current, once however often asked; again after stop() has resolved. */
  start(): void {
    if (!this.#lifecycle.begin()) return;
    this.#abort = new AbortController();
    this.loop.resume();
    this.#unsubscribe = this.#duck.snapshots.onAdvance(() => this.loop.request());
    this.loop.request();
  }

  /** Stops after the statement under way (#lifecycle below); callers while it runs share the one stop. */
  stop(): Promise<void> {
    return this.#lifecycle.stop(() => this.#stop());
  }

  async #stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#abort.abort();
    await this.loop.stop();
  }
  /**
   * Once stopped, a catch-up in flight ends after the statement it runs — a refresh statement is
   * interrupted and the KPI's refresh rolled back (each KPI commits on its own; the others keep
   * what they committed); the reads that plan a catch-up (the days a KPI's points cover, the days
   * batches touched) run to their end.
   */
  readonly #lifecycle = new Lifecycle('rollups');
  #abort = new AbortController();

  /** Whether every batch up to the latest snapshot is rolled up. */
  get current(): boolean {
    return this.through === this.#duck.snapshots.latest;
  }

  async #catchUp(): Promise<void> {
    const duck = this.#duck;
    const latest = duck.snapshots.latest;
    const agreement = this.#agreement();
    // The zone the points are on (set as a new zone's re-localising commits), taken once for the
    // whole catch-up: each refresh is signed for it (#refresh).
    const tz = duck.localisedZone ?? agreement.partnership.timezone;
    let through = await duck.rollupThrough();
    const rows = await duck.rollupStates();
    const state = new Map(rows.map((r) => [r.kpi, r.signature]));
    for (const r of rows) this.#rolledUp.set(r.kpi, r.snapshot);
    const rebuilt = new Set<string>();
    for (const kpi of agreement.kpis) {
      if (this.#lifecycle.stopped) return;
      if (state.get(kpi.id) === rollupSignature(kpi, tz, disclosureRules(agreement, kpi))) continue;
      const t0 = performance.now();
      // One read gives the days to build and the points of each: the refresh groups periods by them.
      const perDay = await duck.pointsPerDay(kpi.id, latest);
      const days = perDay.size > 0 ? mergeDaySpans([...perDay.keys()].map((d) => [d, d])) : null;
      await this.#refresh(agreement, kpi, tz, latest, days, true, perDay);
      rebuilt.add(kpi.id);
      if (days) this.#log.info(`rollups: built ${kpi.id} in ${Math.round(performance.now() - t0)} ms`);
    }
    if (through > latest) through = 0; // a data directory restored from an older copy
    if (through < latest) {
      const ranges = await duck.touchedDays(through, latest);
      // Days whose points a retention run deleted (no points carry its snapshot): the store keeps
      // them with the deletion, so a restart does not forget them.
      const removed = await duck.removedDays(latest);
      for (const gone of removed)
        ranges.set(gone.kpi, mergeDaySpans([...(ranges.get(gone.kpi) ?? []), [gone.lo, gone.hi]]));
      for (const [kpiId, days] of ranges) {
        if (this.#lifecycle.stopped) return;
        const kpi = agreement.kpis.find((k) => k.id === kpiId);
        if (kpi && !rebuilt.has(kpi.id)) await this.#refresh(agreement, kpi, tz, latest, days, false);
      }
      await duck.forgetRemovedDays(removed.map((gone) => gone.kpi));
    }
    await duck.setRollupThrough(latest);
    this.through = latest;
    if (duck.snapshots.latest !== latest) this.loop.request();
  }

  /**
   * Recomputes one KPI's cells of the periods holding `days` (all of them when `full`) in one
   * transaction with its state, signed for `timezone`: the zone the catch-up found the points on
   * when it began (one that straddles a new zone's re-localising signs its refreshes for the old
   * zone, so the next catch-up rebuilds them, instead of signing old days as the new zone's);
   * `perDay`, the KPI's points per day when the caller read them.
   */
  async #refresh(
    agreement: Agreement,
    kpi: Kpi,
    timezone: string,
    snapshot: number,
    days: DaySpans | null,
    full: boolean,
    perDay?: ReadonlyMap<string, number>,
  ): Promise<void> {
    const effective = this.#duck.touched.effective(kpi.id, snapshot);
    const rules = disclosureRules(agreement, kpi);
    let steps: CompiledSql[] = [];
    if (days && days.length > 0) {
      // Over more periods than one statement per family takes, the points of each day decide how
      // many periods a statement can take (aggregate-compiler.ts periodGroups).
      let points: PeriodPoints | undefined;
      if (refreshNeedsCounts(kpi, days))
        points = periodPoints(perDay ?? (await this.#pointsAround(kpi, snapshot, days)));
      steps = refreshSteps(kpi, rules, snapshot, days, { points, budget: this.statementPoints });
    }
    await this.#duck.refreshRollup(kpi.id, {
      full,
      steps,
      snapshot: effective,
      signature: rollupSignature(kpi, timezone, rules),
      signal: this.#abort.signal,
      ...(this.gate ? { turn: <T>(run: () => Promise<T>) => this.gate!.run(SYSTEM_READ, run) } : {}),
    });
    this.#rolledUp.set(kpi.id, effective);
  }

  /** The KPI's points per day in every period of any grain holding a day of `days`. */
  #pointsAround(kpi: Kpi, snapshot: number, days: DaySpans): Promise<Map<string, number>> {
    const first = kpi.grains.map((g) => periodStart(days[0]![0], g)).sort()[0]!;
    const last = kpi.grains
      .map((g) => periodEnd(periodStart(days.at(-1)![1], g), g))
      .sort()
      .at(-1)!;
    return this.#duck.pointsPerDay(kpi.id, snapshot, [first, last]);
  }
}

/** The error of a refresh the stop cut short: its own abort, or DuckDB's interrupt of a statement. */
function interrupted(err: unknown): boolean {
  if (err instanceof Error && err.name === 'AbortError') return true;
  return err instanceof Error && /^INTERRUPT Error/.test(err.message);
}

/** The compiled statements that bring a KPI's rollup up to `snapshot` after batches touching `days` (non-empty). */
export function refreshSteps(
  kpi: Kpi,
  rules: DisclosureRules,
  snapshot: number,
  days: DaySpans,
  opts: { points?: PeriodPoints | undefined; budget?: number } = {},
): CompiledSql[] {
  return compileRollupRefresh(kpi, rules, snapshot, rollupBreakdowns(kpi), days, opts);
}

/** Starts keeping the store's rollups current; the reader's series then read them where they can. */
export function startRollups(
  reader: SeriesReader,
  agreement: () => Agreement,
  log: Pick<Logger, 'info' | 'warn' | 'error'>,
): RollupMaintainer {
  if (!reader.rollups) {
    reader.rollups = new RollupMaintainer(reader.duck, agreement, log, reader.gate);
    reader.rollups.start();
  }
  return reader.rollups;
}

/** Stops the maintainer; series read the points until rollups start again. */
export async function stopRollups(reader: SeriesReader): Promise<void> {
  const m = reader.rollups;
  if (!m) return;
  reader.rollups = undefined;
  await m.stop();
}
