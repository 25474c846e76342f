import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import type { Principal } from '../governance/token-repository.js';
import { canonicalDigest } from '../platform/canonical-json.js';
import type { SeriesReader } from './series-reader.js';
import type { SeriesQuery } from './aggregate-compiler.js';
import { addPeriods, localToday, periodStart, type Grain } from '../platform/calendar.js';
import { bandAt, scopeState, verdicts, type Band, type PeriodValue, type Signal } from './band-evaluation.js';
import { kpiFreshness } from './freshness.js';
import type { BreachEntry, KpiSummary, KpisResult, PeriodBand, ScopeSummary } from './query-schemas.js';
import { resolveRange, runAggregate } from './series-service.js';
import type { Room } from '../platform/room.js';
import { canSee } from '../governance/access-policy.js';
import { disclose, disclosureRules, type RawCell } from './disclosure.js';
import type { Cell } from './query-schemas.js';

/**
 * Every period from `first` to `last` of one scope, with its disclosed value (a gap or a
 * withheld cell is null) and whether it is withheld: the input of band evaluation. Bands, run
 * rules and verdicts see disclosed values only, so a signal never tells on which side of the
 * band a withheld neighbour lies (docs/privacy.md §4).
 */
function scopeHistory(
  raw: readonly RawCell[],
  shown: readonly Cell[],
  group: string | null,
  first: string,
  last: string,
  grain: Grain,
): PeriodValue[] {
  const history: PeriodValue[] = [];
  for (let p = first; p <= last; p = addPeriods(p, grain, 1)) {
    const i = raw.findIndex((c) => c.period === p && c.group === group);
    history.push({
      period: p,
      value: i < 0 ? null : shown[i]!.value,
      suppressed: i >= 0 && shown[i]!.state === 'suppressed',
    });
  }
  return history;
}

/**
 * Closed periods needed before the first one judged: a control band's baseline, and for run
 * rules the rest of the longest window (8 periods), whose baseline lies before the run began.
 */
function historyDepth(kpi: Kpi): number {
  if (kpi.band.method !== 'control') return 0;
  return kpi.band.baseline! + (kpi.band.rules?.length ? 7 : 0);
}

// What GET /v1/kpis, /v1/breaches and /v1/kpis/{kpi}/bands serve: their shapes are the response schemas'.
export type { BreachEntry, KpiSummary, KpisResult, PeriodBand, ScopeSummary };

/** What a KPI is evaluated against: one agreement version, one snapshot, one moment. */
export interface EvaluationContext {
  reader: SeriesReader;
  agreement: Agreement;
  agreementVersion: number;
  /** Today in the partnership's zone: its period is open, the ones before are closed. */
  today: string;
  snapshot: number;
  now: Date;
  /** When the agreement took effect: a feed that never sent is stale from then on. */
  since: Date;
}

export function evaluationContext(
  reader: SeriesReader,
  agreement: Agreement,
  agreementVersion: number,
  now: Date,
  since: Date,
  snapshot: number,
): EvaluationContext {
  return {
    reader,
    agreement,
    agreementVersion,
    today: localToday(now, agreement.partnership.timezone),
    snapshot,
    now,
    since,
  };
}

/**
 * The context a reader's request is judged in: the agreement in force, now, and the snapshot the
 * request names (checked: a landed one, not retired) or the latest.
 */
export function requestContext(room: Room, reader: SeriesReader, snapshotParam: string | undefined): EvaluationContext {
  const active = room.agreement();
  const now = room.clock.now();
  const { snapshot } = resolveRange(
    { snapshot: snapshotParam },
    active.agreement.partnership.timezone,
    room.duck.snapshots.latest,
    now,
    room.duck,
  );
  return evaluationContext(reader, active.agreement, active.version, now, active.activatedAt ?? now, snapshot);
}

/** A KPI's last closed period, open period, band and state for each scope (combined, and each partner where broken down). */
export async function evaluateKpi(ctx: EvaluationContext, kpi: Kpi): Promise<KpiSummary> {
  const { reader, agreement, agreementVersion, today, snapshot } = ctx;
  const grain = kpi.evaluate.grain;
  const open = periodStart(today, grain);
  const lastClosed = addPeriods(open, grain, -1);
  const depth = historyDepth(kpi) + kpi.evaluate.consecutive + 1;
  const first = addPeriods(open, grain, -depth);
  const rules = disclosureRules(agreement, kpi);
  const feeds = kpiFreshness(agreement, kpi, reader.duck.arrivals, ctx.now, ctx.since);
  const scopes: ScopeSummary[] = [];
  const breakdowns = kpi.breakdown === 'per_partner' ? (['none', 'partner'] as const) : (['none'] as const);
  for (const by of breakdowns) {
    const q: SeriesQuery = {
      kpi,
      grain,
      from: first,
      to: today,
      by: { kind: by },
      snapshot,
      timezone: agreement.partnership.timezone,
      rules,
    };
    const raw = await runAggregate(reader, q, agreementVersion);
    const shown = disclose(raw, rules);
    const groups = by === 'none' ? [null] : agreement.partners.map((p) => p.id);
    for (const group of groups) {
      const history = scopeHistory(raw, shown, group, first, lastClosed, grain);
      const at = (period: string) => {
        const i = raw.findIndex((c) => c.period === period && c.group === group);
        return i < 0 ? undefined : shown[i]!;
      };
      const last = at(lastClosed);
      const prev = at(addPeriods(lastClosed, grain, -1));
      const prov = at(open);
      const v = verdicts(kpi, history);
      let out = 0;
      while (out < v.length && v[v.length - 1 - out]!.outside) out++;
      let inBand = 0;
      while (inBand < v.length && !v[v.length - 1 - inBand]!.outside && history[v.length - 1 - inBand]!.value !== null)
        inBand++;
      // A stale feed makes its own scope, and the combined figure it feeds, incomplete: no data.
      const stale = feeds.some((f) => f.stale && (group === null || f.partner === group));
      const state = scopeState(kpi, history, lastClosed, v);
      scopes.push({
        group,
        state: stale && state !== 'breach' ? 'no_data' : state,
        band: v[v.length - 1]?.band ?? bandAt(kpi, history, history.length),
        signal: v[v.length - 1]?.signal ?? null,
        outOfBandSince: out > 0 ? v[v.length - out]!.period : null,
        inBandRun: inBand,
        lastClosed: last
          ? { period: lastClosed, value: last.value, n: last.n, suppressed: last.state === 'suppressed' }
          : null,
        previous: prev ? { period: prev.period, value: prev.value } : null,
        change: last?.value != null && prev?.value != null ? Number((last.value - prev.value).toPrecision(12)) : null,
        provisional: prov ? { period: open, value: prov.value, n: prov.n } : null,
      });
    }
  }
  return {
    id: kpi.id,
    title: kpi.title,
    unit: kpi.unit,
    measure: kpi.measure,
    disclosure: kpi.disclosure,
    grain,
    minGroupSize: rules.minGroupSize,
    feeds,
    scopes,
  };
}

/** GET /v1/kpis: each KPI the caller may see, its last closed period, the open one, band and state. */
export async function summariseKpis(ctx: EvaluationContext, p: Principal | null): Promise<KpisResult> {
  const kpis: KpiSummary[] = [];
  for (const kpi of ctx.agreement.kpis) if (canSee(p, kpi)) kpis.push(await evaluateKpi(ctx, kpi));
  return {
    today: ctx.today,
    snapshot: ctx.snapshot,
    agreementVersion: ctx.agreementVersion,
    digest: canonicalDigest(kpis),
    kpis,
  };
}

/** One closed period of one scope judged against the band in force then (values stay out: series carry them). */
export interface JudgedPeriod {
  kpi: string;
  group: string | null;
  period: string;
  band: Band | null;
  outside: boolean;
  signal: Signal | null;
  value: number | null;
  suppressed: boolean;
}

export function periodBand(j: JudgedPeriod): PeriodBand {
  return {
    group: j.group,
    period: j.period,
    method: j.band?.method ?? null,
    lower: j.band?.lower ?? null,
    upper: j.band?.upper ?? null,
    outside: j.outside,
    signal: j.signal,
  };
}

/**
 * The closed periods in [from, to] of each KPI and scope at its evaluation grain, each judged
 * against the band in force then (a control band's limits move period by period), computed by
 * the same compiler as every series.
 */
export async function judgePeriods(
  reader: SeriesReader,
  agreement: Agreement,
  agreementVersion: number,
  kpis: readonly Kpi[],
  from: string,
  to: string,
  today: string,
  snapshot: number,
): Promise<JudgedPeriod[]> {
  const out: JudgedPeriod[] = [];
  for (const kpi of kpis) {
    const grain = kpi.evaluate.grain;
    const lastClosed = addPeriods(periodStart(today, grain), grain, -1);
    const end = to < lastClosed ? periodStart(to, grain) : lastClosed;
    const start = periodStart(from, grain);
    const first = addPeriods(start, grain, -historyDepth(kpi));
    if (first > end) continue;
    const rules = disclosureRules(agreement, kpi);
    const breakdowns = kpi.breakdown === 'per_partner' ? (['none', 'partner'] as const) : (['none'] as const);
    for (const by of breakdowns) {
      const raw = await runAggregate(
        reader,
        {
          kpi,
          grain,
          from: first,
          to: end,
          by: { kind: by },
          snapshot,
          timezone: agreement.partnership.timezone,
          rules,
        },
        agreementVersion,
      );
      const shown = disclose(raw, rules);
      for (const group of by === 'none' ? [null] : agreement.partners.map((p) => p.id)) {
        const history = scopeHistory(raw, shown, group, first, end, grain);
        verdicts(kpi, history).forEach((v, i) => {
          if (v.period < start) return;
          const h = history[i]!;
          out.push({
            kpi: kpi.id,
            group,
            period: v.period,
            band: v.band,
            outside: v.outside,
            signal: v.signal,
            value: h.suppressed ? null : h.value,
            suppressed: h.suppressed,
          });
        });
      }
    }
  }
  return out;
}

/** GET /v1/breaches: the judged periods outside their band, with the value where disclosed. */
export async function listBreaches(
  reader: SeriesReader,
  agreement: Agreement,
  agreementVersion: number,
  kpis: readonly Kpi[],
  from: string,
  to: string,
  today: string,
  snapshot: number,
): Promise<BreachEntry[]> {
  const judged = await judgePeriods(reader, agreement, agreementVersion, kpis, from, to, today, snapshot);
  return judged
    .filter((j) => j.outside)
    .map((j) => ({
      kpi: j.kpi,
      group: j.group,
      period: j.period,
      value: j.value,
      band: j.band!,
      state: 'breach' as const,
      suppressed: j.suppressed,
    }));
}
