import { listIncidentRows } from '../alerts/incident-repository.js';
import { factSheet } from '../alerts/fact-sheet.js';
import { ARRIVALS_LOOKAHEAD_MS, arrivalsLookbackMs, serviceLevelAttainment } from '../alerts/service-levels.js';
import { summariseGoals } from '../goals/goal-progress.js';
import { reviewActions } from '../feedback/retrospectives.js';
import { diffAgreements } from '../governance/agreement-diff.js';
import { findAgreementDocument, listAgreementVersions } from '../governance/agreement-repository.js';
import { shareableAgreement, validateAgreement, type Kpi } from '../platform/agreement-schema.js';
import { addPeriods, monthBounds, periodEnd } from '../platform/calendar.js';
import { canonicalDigest } from '../platform/canonical-json.js';
import type { Room } from '../platform/room.js';
import { disclosureRules } from '../query/disclosure.js';
import { judgePeriods, type EvaluationContext, type JudgedPeriod } from '../query/kpi-summary.js';
import { runSeries } from '../query/series-service.js';
import type { Review, ReviewKpi, ReviewScope } from './review-schemas.js';

export type { Review };

/**
 * The KPIs of the shared review: every KPI but the need-to-know ones. The review goes to every
 * partner's contacts and is one document with one digest, so it holds only what every partner
 * user may read (a need-to-know KPI's readers read it on the dashboard).
 */
export const reviewKpis = (kpis: readonly Kpi[]) => kpis.filter((k) => k.disclosure !== 'need_to_know');

/** Which way is better for a KPI: down when its band has only an upper limit, up when only a lower one. */
function better(kpi: Kpi): 'down' | 'up' | null {
  const b = kpi.band;
  if (b.method !== 'static') return null;
  if (b.upper !== undefined && b.lower === undefined) return 'down';
  if (b.lower !== undefined && b.upper === undefined) return 'up';
  return null;
}

const round = (v: number) => Number(v.toPrecision(12));

/** A scope's closed periods of the month against their bands, and its month-on-month change. */
function scopeOf(
  kpi: Kpi,
  scope: string,
  judged: readonly JudgedPeriod[],
  month: number | null,
  previousMonth: number | null,
): ReviewScope {
  const disclosed = judged.filter((j) => j.value !== null);
  const inBand = disclosed.filter((j) => !j.outside).length;
  const deviations = disclosed
    .filter((j) => j.outside && j.band)
    .map((j) => {
      const lower = j.band!.lower;
      const upper = j.band!.upper;
      const v = j.value!;
      const distance = upper !== null && v > upper ? v - upper : lower !== null && v < lower ? lower - v : 0;
      return { period: j.period, value: v, lower, upper, distance: round(distance) };
    })
    .sort((a, b) => b.distance - a.distance || (a.period < b.period ? -1 : 1))
    .slice(0, 3);
  const change = month !== null && previousMonth !== null ? round(month - previousMonth) : null;
  const way = better(kpi);
  return {
    scope,
    periods: judged.length,
    disclosed: disclosed.length,
    inBand,
    shareInBand: disclosed.length ? round(inBand / disclosed.length) : null,
    deviations,
    series: judged.map((j) => ({
      period: j.period,
      value: j.value,
      lower: j.band?.lower ?? null,
      upper: j.band?.upper ?? null,
    })),
    month,
    previousMonth,
    change,
    improved: change === null || change === 0 || way === null ? null : way === 'down' ? change < 0 : change > 0,
  };
}

/** The month's and the month before's values at month grain, per scope (where the KPI is agreed at month). */
async function monthValues(
  ctx: EvaluationContext,
  kpi: Kpi,
  from: string,
): Promise<Map<string, [number | null, number | null]>> {
  const out = new Map<string, [number | null, number | null]>();
  if (!kpi.grains.includes('month')) return out;
  const prev = addPeriods(from, 'month', -1);
  const bys = kpi.breakdown === 'per_partner' ? (['none', 'partner'] as const) : (['none'] as const);
  for (const by of bys) {
    const r = await runSeries(ctx.reader, ctx.agreementVersion, {
      kpi,
      grain: 'month',
      from: prev,
      to: periodEnd(from, 'month'),
      by: { kind: by },
      snapshot: ctx.snapshot,
      timezone: ctx.agreement.partnership.timezone,
      rules: disclosureRules(ctx.agreement, kpi),
    });
    for (const c of r.cells) {
      const scope = c.group ?? 'combined';
      const pair = out.get(scope) ?? [null, null];
      if (c.period === from) pair[0] = c.value;
      else if (c.period === prev) pair[1] = c.value;
      out.set(scope, pair);
    }
  }
  return out;
}

/**
 * The review of `month` (YYYY-MM, a closed month) at the context's snapshot: each shared KPI
 * against its band (share of periods in band, the largest deviations) and its month-on-month
 * change, the incidents opened in the month with their causes and actions, goal and stage
 * progress, the service levels attained per partner, the agreement versions activated in the
 * month, and what improved. Built from the same
 * functions as GET /v1/kpis/{kpi}/bands, /v1/breaches, /v1/kpis/{kpi}/series and /v1/goals.
 */
export async function buildReview(room: Room, ctx: EvaluationContext, month: string): Promise<Review> {
  const a = ctx.agreement;
  const tz = a.partnership.timezone;
  const from = `${month}-01`;
  const to = periodEnd(from, 'month');
  const kpis = reviewKpis(a.kpis);
  const judged = await judgePeriods(ctx.reader, a, ctx.agreementVersion, kpis, from, to, ctx.today, ctx.snapshot);
  const reviewed: ReviewKpi[] = [];
  const improvements: string[] = [];
  for (const kpi of kpis) {
    const values = await monthValues(ctx, kpi, from);
    const groups: (string | null)[] = [null, ...(kpi.breakdown === 'per_partner' ? a.partners.map((p) => p.id) : [])];
    const scopes = groups.map((g) => {
      const scope = g ?? 'combined';
      const [m, p] = values.get(scope) ?? [null, null];
      return scopeOf(
        kpi,
        scope,
        judged.filter((j) => j.kpi === kpi.id && j.group === g),
        m,
        p,
      );
    });
    for (const s of scopes)
      if (s.improved)
        improvements.push(
          `${kpi.title}${s.scope === 'combined' ? '' : ` (${s.scope})`}: ${s.previousMonth} → ${s.month} ${kpi.unit}`,
        );
    reviewed.push({ id: kpi.id, title: kpi.title, unit: kpi.unit, grain: kpi.evaluate.grain, scopes });
  }
  const { from: start, to: end } = monthBounds(month, tz);
  const incidents = kpis.length
    ? await listIncidentRows(room.control.db, {
        kpis: kpis.map((k) => k.id),
        openedFrom: start,
        openedBefore: end,
        limit: 1000,
      })
    : [];
  const breaches = incidents
    .map((row) =>
      factSheet(
        row,
        a.kpis.find((k) => k.id === row.kpi),
      ),
    )
    .sort((x, y) => (x.openedAt < y.openedAt ? -1 : x.openedAt > y.openedAt ? 1 : x.id < y.id ? -1 : 1))
    .map((f) => ({
      incident: f.id,
      kpi: f.kpi.id,
      scope: f.scope,
      kind: f.kind,
      period: f.period,
      value: f.value,
      state: f.state,
      cause: f.cause,
      narrative: f.narrative,
      actions: f.actions,
      owners: f.owners,
    }));
  const arrivals = await room.duck.feedArrivals(
    new Date(start.getTime() - arrivalsLookbackMs(kpis)),
    new Date(end.getTime() + ARRIVALS_LOOKAHEAD_MS),
    ctx.snapshot,
  );
  const serviceLevels = serviceLevelAttainment({
    agreement: a,
    kpis,
    start,
    end,
    now: ctx.now,
    since: ctx.since,
    arrivals,
    incidents,
  });
  const shared = new Set(kpis.map((k) => k.id));
  const actions = await reviewActions(room, { lastDay: to, from: start, to: end }, shared);
  const goals = await summariseGoals(ctx, (k) => shared.has(k.id));
  const agreementChanges: Review['agreementChanges'] = [];
  const versions = (await listAgreementVersions(room.control.db))
    .filter((v) => v.activated_at !== null)
    .sort((x, y) => x.version - y.version);
  for (const v of versions) {
    const at = new Date(v.activated_at as unknown as string);
    if (at < start || at >= end || v.version === 1) continue;
    const [before, after] = await Promise.all([
      findAgreementDocument(room.control.db, v.version - 1),
      findAgreementDocument(room.control.db, v.version),
    ]);
    const b = validateAgreement(before);
    const n = validateAgreement(after);
    if (!b.ok || !n.ok) continue;
    // What every partner may read of both versions: a KPI need-to-know in either stays out, and
    // with it its goals and the criteria naming it (the review goes to every partner).
    const secret = new Set(
      [...b.agreement.kpis, ...n.agreement.kpis].filter((k) => k.disclosure === 'need_to_know').map((k) => k.id),
    );
    const shared = (k: Kpi) => !secret.has(k.id);
    const changes = diffAgreements(shareableAgreement(b.agreement, shared), shareableAgreement(n.agreement, shared))
      // Need-to-know readers and owners are who reads those KPIs: not the partnership's business.
      .filter((c) => !/(^|\.)needToKnow(\.|$)/.test(c.path))
      .map((c) => c.text);
    if (changes.length) agreementChanges.push({ version: v.version, activatedAt: at.toISOString(), changes });
  }
  const body: Omit<Review, 'digest'> = {
    partnership: { id: a.partnership.id, title: a.partnership.title },
    month,
    from,
    to,
    snapshot: ctx.snapshot,
    agreementVersion: ctx.agreementVersion,
    intent: a.intent ?? null,
    kpis: reviewed,
    breaches,
    stage: goals.stage,
    goals: goals.goals,
    serviceLevels,
    actions,
    agreementChanges,
    improvements,
  };
  return { ...body, digest: canonicalDigest(body) };
}
