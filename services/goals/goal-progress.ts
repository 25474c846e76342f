import type { Agreement, Condition, Goal, Kpi } from '../platform/agreement-schema.js';
import { comparators, stages } from '../platform/agreement-schema.js';
import { addPeriods, periodEnd, periodStart, shiftDays, type Grain } from '../platform/calendar.js';
import { canonicalDigest } from '../platform/canonical-json.js';
import { disclosureRules } from '../query/disclosure.js';
import type { EvaluationContext } from '../query/kpi-summary.js';
import { runSeries } from '../query/series-service.js';
import type {
  ConditionResult,
  Evidence,
  GoalProgress,
  GoalsResponse,
  MilestoneProgress,
  StageProgress,
} from './goal-schemas.js';

export type { GoalProgress, GoalsResponse, MilestoneProgress, StageProgress, ConditionResult };

/**
 * Goals, milestones, exit criteria and stage gates judged on disclosed values only (issue #14):
 * every figure here is a cell of a served series at the context's snapshot — a withheld or held
 * cell counts as what the series shows (no value, or the value served since asOf) — and each
 * judgement carries the series request that reproduces it (`evidence`). Nothing here reads a
 * point or a raw cell, so a goal can tell no more than the dashboard already does.
 */

/** One scope of one KPI at one grain, read as a series at the context's snapshot. */
interface ScopeValues {
  /** Disclosed value by period start; null where withheld or empty. */
  byPeriod: Map<string, number | null>;
  evidence: Evidence;
}

async function readScope(
  ctx: EvaluationContext,
  kpi: Kpi,
  scope: string,
  grain: Grain,
  from: string,
  to: string,
): Promise<ScopeValues> {
  const partner = scope === 'combined' ? null : scope;
  const r = await runSeries(ctx.reader, ctx.agreementVersion, {
    kpi,
    grain,
    from,
    to,
    by: partner ? { kind: 'partner' } : { kind: 'none' },
    snapshot: ctx.snapshot,
    timezone: ctx.agreement.partnership.timezone,
    rules: disclosureRules(ctx.agreement, kpi),
  });
  const byPeriod = new Map<string, number | null>();
  for (const c of r.cells) if (c.group === partner) byPeriod.set(c.period, c.value);
  return {
    byPeriod,
    evidence: {
      kpi: kpi.id,
      grain,
      by: partner ? 'partner' : null,
      from,
      to,
      snapshot: ctx.snapshot,
      digest: r.digest,
    },
  };
}

/** Period starts from the one holding `from` up to (not including) `end`, oldest first. */
function periodsFrom(from: string, end: string, grain: Grain): string[] {
  const out: string[] = [];
  for (let p = periodStart(from, grain); p < end; p = addPeriods(p, grain, 1)) out.push(p);
  return out;
}

const reaches = (value: number, target: number, direction: Goal['direction']) =>
  direction === 'at_most' ? value <= target : value >= target;

/**
 * Where the latest disclosed values head by period `at` (an index past the last one): the least
 * squares line through the last three of them, or the last value when there is only one.
 */
function projected(points: readonly { i: number; v: number }[], at: number): number {
  const last = points.slice(-3);
  if (last.length < 2) return last[0]!.v;
  const mi = last.reduce((s, p) => s + p.i, 0) / last.length;
  const mv = last.reduce((s, p) => s + p.v, 0) / last.length;
  const sxx = last.reduce((s, p) => s + (p.i - mi) ** 2, 0);
  const slope = last.reduce((s, p) => s + (p.i - mi) * (p.v - mv), 0) / sxx;
  return mv + slope * (at - mi);
}

/**
 * One milestone (or the due date) against the closed periods: met or missed once its period is
 * closed (no_data when that period is withheld); before that on track when the latest closed value
 * or the trend of the last three reaches its target by its period, at risk otherwise.
 */
export function judgeMilestone(
  m: { date: string; target: number },
  goal: Pick<Goal, 'direction'> & { grain: Grain },
  closed: readonly { period: string; value: number | null }[],
  open: string,
  final: boolean,
): MilestoneProgress {
  const period = periodStart(m.date, goal.grain);
  const base = { date: m.date, target: m.target, period, final };
  if (period < open) {
    const cell = closed.find((c) => c.period === period);
    const value = cell?.value ?? null;
    if (value === null) return { ...base, state: 'no_data', value: null };
    return { ...base, state: reaches(value, m.target, goal.direction) ? 'met' : 'missed', value };
  }
  const known = closed.flatMap((c, i) => (c.value === null ? [] : [{ i, v: c.value }]));
  const latest = known.at(-1);
  if (!latest) return { ...base, state: 'no_data', value: null };
  let at = closed.length;
  for (let p = open; p < period; p = addPeriods(p, goal.grain, 1)) at++;
  const onTrack =
    reaches(latest.v, m.target, goal.direction) || reaches(projected(known, at), m.target, goal.direction);
  return { ...base, state: onTrack ? 'on_track' : 'at_risk', value: latest.v };
}

const comparatorText: Record<(typeof comparators)[number], string> = {
  above: 'above',
  below: 'below',
  atLeast: 'at least',
  atMost: 'at most',
};

const grainPlural: Record<Grain, string> = { day: 'days', week: 'weeks', month: 'months' };

function comparatorOf(c: Condition): { comparator: (typeof comparators)[number]; threshold: number } {
  for (const op of comparators) if (c[op] !== undefined) return { comparator: op, threshold: c[op] };
  throw new Error('a condition without a comparator passed validation');
}

function holds(value: number, comparator: (typeof comparators)[number], threshold: number): boolean {
  if (comparator === 'above') return value > threshold;
  if (comparator === 'below') return value < threshold;
  if (comparator === 'atLeast') return value >= threshold;
  return value <= threshold;
}

/** A condition over the last `periods` closed periods: met when each of them is disclosed and holds. */
async function judgeCondition(ctx: EvaluationContext, c: Condition): Promise<ConditionResult> {
  const kpi = kpiOf(ctx, c.kpi);
  const { comparator, threshold } = comparatorOf(c);
  const text =
    c.description ??
    `${kpi.title}${c.scope === 'combined' ? '' : ` (${c.scope})`} ${comparatorText[comparator]} ${threshold} ` +
      (c.periods === 1 ? `in the last closed ${c.grain}` : `in ${c.periods} consecutive ${grainPlural[c.grain]}`);
  const base = { kpi: c.kpi, scope: c.scope, grain: c.grain, comparator, threshold, periods: c.periods, text };
  const open = periodStart(ctx.today, c.grain);
  const from = addPeriods(open, c.grain, -c.periods);
  const s = await readScope(ctx, kpi, c.scope, c.grain, from, shiftDays(open, -1));
  const values = periodsFrom(from, open, c.grain).map((period) => ({ period, value: s.byPeriod.get(period) ?? null }));
  const met = values.every((v) => v.value !== null && holds(v.value, comparator, threshold));
  return { ...base, met, values, evidence: s.evidence };
}

const kpiOf = (ctx: EvaluationContext, id: string): Kpi => ctx.agreement.kpis.find((k) => k.id === id)!;

/** One goal's progress at the context's snapshot. */
async function judgeGoal(ctx: EvaluationContext, g: Goal, see: (k: Kpi) => boolean): Promise<GoalProgress> {
  const kpi = kpiOf(ctx, g.kpi);
  const grain = g.grain ?? kpi.evaluate.grain;
  const open = periodStart(ctx.today, grain);
  const from = periodStart(g.start, grain);
  // From the start's period to today, or to the end of the due period once it is past.
  const dueEnd = periodEnd(periodStart(g.due, grain), grain);
  const to = ctx.today < from ? from : ctx.today > dueEnd ? dueEnd : ctx.today;
  const s = await readScope(ctx, kpi, g.scope, grain, from, to);
  const closed = periodsFrom(g.start, open, grain)
    .filter((p) => p <= periodStart(g.due, grain))
    .map((period) => ({ period, value: s.byPeriod.get(period) ?? null }));
  const judged = { direction: g.direction, grain };
  const milestones = [
    ...g.milestones.map((m) => judgeMilestone(m, judged, closed, open, false)),
    judgeMilestone({ date: g.due, target: g.target }, judged, closed, open, true),
  ];
  const known = closed.filter((c) => c.value !== null).map((c) => c.value!);
  const baseline = known[0] ?? null;
  const current = known.at(-1) ?? null;
  let progress: number | null = null;
  if (baseline !== null && current !== null) {
    if (reaches(current, g.target, g.direction)) progress = 1;
    else if (baseline === g.target || reaches(baseline, g.target, g.direction)) progress = 0;
    else progress = Math.min(1, Math.max(0, Number(((current - baseline) / (g.target - baseline)).toFixed(4))));
  }
  return {
    id: g.id,
    title: g.title,
    kpi: g.kpi,
    kpiTitle: kpi.title,
    unit: kpi.unit,
    scope: g.scope,
    grain,
    direction: g.direction,
    target: g.target,
    start: g.start,
    due: g.due,
    owners: Object.entries(g.owners).map(([partner, o]) => ({ partner, name: o.name })),
    assumptions: g.assumptions,
    state: milestones.at(-1)!.state,
    baseline,
    current,
    progress,
    nextMilestone: milestones.find((m) => m.period >= open) ?? null,
    milestones,
    targetLine: [...g.milestones, { date: g.due, target: g.target }],
    exitCriteria: await Promise.all(
      g.exitCriteria.filter((c) => see(kpiOf(ctx, c.kpi))).map((c) => judgeCondition(ctx, c)),
    ),
    values: closed,
    evidence: s.evidence,
  };
}

/** The progress of `goals` (each on a KPI the reader may see), in their order. */
export async function judgeGoals(
  ctx: EvaluationContext,
  goals: readonly Goal[],
  see: (k: Kpi) => boolean,
): Promise<GoalProgress[]> {
  const out: GoalProgress[] = [];
  for (const g of goals) out.push(await judgeGoal(ctx, g, see));
  return out;
}

/** The stage the partnership is in and how far it is from the next one. */
async function judgeStage(
  ctx: EvaluationContext,
  stage: NonNullable<Agreement['stage']>,
  see: (k: Kpi) => boolean,
): Promise<StageProgress> {
  const i = stages.indexOf(stage.current);
  const readable = stage.next.filter((c) => see(kpiOf(ctx, c.kpi)));
  const criteria = await Promise.all(readable.map((c) => judgeCondition(ctx, c)));
  return {
    current: stage.current,
    next: stages[i + 1] ?? null,
    criteria,
    // A criterion on a KPI the reader may not read is left out (not even its KPI's id is shown);
    // whether the gate is passed then depends on it, so it is not said.
    ready: readable.length < stage.next.length ? null : criteria.length > 0 && criteria.every((c) => c.met),
  };
}

/**
 * GET /v1/goals: the intent, the stage and its gate, and every goal on a KPI `see` admits. A
 * criterion on a KPI the caller may not read is left out, as the KPI is everywhere else.
 */
export async function summariseGoals(ctx: EvaluationContext, see: (k: Kpi) => boolean): Promise<GoalsResponse> {
  const a = ctx.agreement;
  const stage = a.stage ? await judgeStage(ctx, a.stage, see) : null;
  const goals = await judgeGoals(
    ctx,
    a.goals.filter((g) => see(kpiOf(ctx, g.kpi))),
    see,
  );
  const intent = a.intent ?? null;
  return {
    today: ctx.today,
    snapshot: ctx.snapshot,
    agreementVersion: ctx.agreementVersion,
    intent,
    stage,
    goals,
    digest: canonicalDigest({ intent, stage, goals }),
  };
}
