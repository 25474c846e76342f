import type { GoalNotice } from '../alerts/alert-schemas.js';
import { enqueueMessages, steeringRecipients, type Recipient } from '../alerts/outbox.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import type { Goal } from '../platform/agreement-schema.js';
import { canonicalJson } from '../platform/canonical-json.js';
import { inTransaction } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import type { EvaluationContext } from '../query/kpi-summary.js';
import { judgeGoals, type GoalProgress } from './goal-progress.js';
import type { Evidence } from './goal-schemas.js';
import { recordGoalNotice } from './goal-repository.js';

/** The series request that reproduces an evidence's figures. */
export function evidenceSource(e: Evidence): string {
  const by = e.by ? `&by=${e.by}` : '';
  return `/v1/kpis/${e.kpi}/series?grain=${e.grain}&from=${e.from}&to=${e.to}${by}&snapshot=${e.snapshot}`;
}

function recipients(goal: Goal, agreement: EvaluationContext['agreement']): Recipient[] {
  return [
    ...Object.entries(goal.owners).map(([partnerId, o]) => ({ partnerId, ...o })),
    ...steeringRecipients(agreement),
  ];
}

/**
 * After an evaluation: each goal milestone newly missed and each exit criterion newly met
 * notifies the goal's owners and the steering committee through the outbox, once (the
 * goal_notices key). Judged like GET /v1/goals, on disclosed values only; the owners of a goal on
 * a need-to-know KPI are its readers (the agreement refuses others), so a notice tells its
 * recipients nothing they could not read. Returns the messages written.
 */
export async function noticeGoals(
  room: Room,
  ctx: EvaluationContext,
  kpis: ReadonlySet<string> | null,
): Promise<number> {
  const a = ctx.agreement;
  // Only the goals whose KPIs this evaluation touched (every goal on the schedule); no stage gate.
  const touched = kpis
    ? a.goals.filter((g) => [g.kpi, ...g.exitCriteria.map((c) => c.kpi)].some((k) => kpis.has(k)))
    : a.goals;
  if (touched.length === 0) return 0;
  const goals = await judgeGoals(ctx, touched, () => true);
  let written = 0;
  for (const [i, progress] of goals.entries()) {
    const goal = touched[i]!;
    for (const n of noticesOf(progress, ctx)) {
      written += await inTransaction(room.control.db, async (tx) => {
        const fresh = await recordGoalNotice(tx, {
          goal_id: goal.id,
          kind: n.kind,
          key: n.key,
          agreement_version: ctx.agreementVersion,
          snapshot: ctx.snapshot,
          created_at: ctx.now,
        });
        if (!fresh) return 0;
        // The KPIs it names, so the audit log shows the entry only to those who may read them.
        const kpis = [goal.kpi, ...(n.notice.criterion ? [n.notice.criterion.kpi] : [])];
        await appendAuditIn(
          tx,
          {
            actor: 'alerts',
            partnerId: null,
            target: goal.id,
            action: `goal.${n.kind}`,
            details: {
              kpis,
              ...(n.notice.milestone ? { milestone: n.notice.milestone.date } : {}),
              snapshot: ctx.snapshot,
            },
          },
          ctx.now,
        );
        return enqueueMessages(tx, room, {
          payload: { type: `goal.${n.kind}`, timestamp: ctx.now.toISOString(), data: n.notice },
          about: { goal_id: goal.id },
          recipients: recipients(goal, a),
          now: ctx.now,
        });
      });
    }
  }
  return written;
}

/** The notices a goal's progress calls for: its missed milestones and its met exit criteria. */
function noticesOf(
  p: GoalProgress,
  ctx: EvaluationContext,
): { kind: GoalNotice['kind']; key: string; notice: GoalNotice }[] {
  const base = {
    goal: { id: p.id, title: p.title, scope: p.scope, direction: p.direction, target: p.target, due: p.due },
    kpi: { id: p.kpi, title: p.kpiTitle, unit: p.unit },
    snapshot: ctx.snapshot,
    agreementVersion: ctx.agreementVersion,
    owners: p.owners,
  };
  const out: { kind: GoalNotice['kind']; key: string; notice: GoalNotice }[] = [];
  for (const m of p.milestones)
    if (m.state === 'missed')
      out.push({
        kind: 'milestone_missed',
        key: m.date,
        notice: {
          ...base,
          kind: 'milestone_missed',
          milestone: { date: m.date, target: m.target, period: m.period, value: m.value },
          criterion: null,
          source: evidenceSource(p.evidence),
        },
      });
  for (const c of p.exitCriteria)
    if (c.met && c.evidence)
      out.push({
        kind: 'exit_criterion_met',
        key: canonicalJson({
          kpi: c.kpi,
          scope: c.scope,
          grain: c.grain,
          [c.comparator]: c.threshold,
          periods: c.periods,
        }),
        notice: {
          ...base,
          kind: 'exit_criterion_met',
          milestone: null,
          criterion: { text: c.text, kpi: c.kpi, values: c.values },
          source: evidenceSource(c.evidence),
        },
      });
  return out;
}
