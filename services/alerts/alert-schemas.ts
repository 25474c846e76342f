import { z } from 'zod';
import { severities } from '../platform/agreement-schema.js';
import { bandSchema, feedSchema } from '../query/query-schemas.js';

/**
 * What the alert routes answer, written once: the routes declare these as their responses (the
 * serializer sends exactly these fields) and the room's own types are inferred from them.
 */

export const incidentStateSchema = z.enum(['open', 'notified', 'acknowledged', 'resolved']);

const personSchema = z.object({ name: z.string(), email: z.string() });

/** An incident as every reader sees it: the figure as the dashboard discloses it, never more. */
export const factSheetSchema = z
  .object({
    id: z.string(),
    kind: z.enum(['breach', 'stale']),
    state: incidentStateSchema,
    kpi: z.object({ id: z.string(), title: z.string(), unit: z.string(), measure: z.string() }),
    scope: z.string().describe("'combined' or the partner whose figure (or feed) it is"),
    reason: z.string(),
    grain: z.string().nullable(),
    firstPeriod: z.string().nullable(),
    period: z.string().nullable(),
    value: z.number().nullable().describe('null where the cell is withheld: the breach is reported without a value'),
    suppressed: z.boolean(),
    band: bandSchema.nullable(),
    snapshot: z.number().int(),
    digest: z.string().nullable(),
    agreementVersion: z.number().int(),
    source: z.string().nullable().describe('where a reader reproduces the figure: the series request at that snapshot'),
    freshness: z.array(feedSchema),
    owners: z.array(z.object({ partner: z.string(), name: z.string() })),
    openedAt: z.string(),
    ackDueAt: z.string(),
    notifiedAt: z.string().nullable(),
    acknowledgedAt: z.string().nullable(),
    escalatedAt: z.string().nullable(),
    resolvedAt: z.string().nullable(),
    resolution: z.enum(['owner', 'auto']).nullable(),
    cause: z.string().nullable(),
    narrative: z.string().nullable(),
    actions: z.array(z.object({ description: z.string(), owner: z.string(), due: z.string() })),
    chair: personSchema
      .optional()
      .describe("an escalation's notification: the steering committee's chair when it was escalated"),
  })
  .describe('the fact sheet: one template for every incident');
export type FactSheet = z.infer<typeof factSheetSchema>;

export const incidentsResponseSchema = z.object({ incidents: z.array(factSheetSchema) });
export type IncidentsResponse = z.infer<typeof incidentsResponseSchema>;

export const incidentEventSchema = z.enum(['incident.opened', 'incident.escalated', 'incident.resolved']);
export type IncidentEvent = z.infer<typeof incidentEventSchema>;
export const goalEventSchema = z.enum(['goal.milestone_missed', 'goal.exit_criterion_met']);
export type GoalEvent = z.infer<typeof goalEventSchema>;
/** E-mails that carry a rendered document: the monthly review, a comment's mention, an overdue action. */
export const documentEventSchema = z.enum(['review.monthly', 'comment.mention', 'action.overdue']);
export type DocumentEvent = z.infer<typeof documentEventSchema>;
/** A drill's notifications: the real chain, each marked as a drill (type and a DRILL marker in e-mails). */
export const drillEventSchema = z.enum(['incident.drill.opened', 'incident.drill.escalated', 'incident.drill.ended']);
export type DrillEvent = z.infer<typeof drillEventSchema>;
export const alertEventSchema = z.enum([
  ...incidentEventSchema.options,
  ...goalEventSchema.options,
  ...documentEventSchema.options,
  ...drillEventSchema.options,
]);
export type AlertEvent = z.infer<typeof alertEventSchema>;

/**
 * What a goal notice tells its readers (the goal's owners and the steering committee): the goal,
 * the milestone missed or the exit criterion met, with the disclosed values it was judged on and
 * the series request that reproduces them. Nothing in it is more than GET /v1/goals shows.
 */
export const goalNoticeSchema = z
  .object({
    kind: z.enum(['milestone_missed', 'exit_criterion_met']),
    goal: z.object({
      id: z.string(),
      title: z.string(),
      scope: z.string(),
      direction: z.enum(['at_most', 'at_least']),
      target: z.number(),
      due: z.string(),
    }),
    kpi: z.object({ id: z.string(), title: z.string(), unit: z.string() }),
    milestone: z
      .object({ date: z.string(), target: z.number(), period: z.string(), value: z.number().nullable() })
      .nullable(),
    criterion: z
      .object({
        text: z.string(),
        kpi: z.string(),
        values: z.array(z.object({ period: z.string(), value: z.number().nullable() })),
      })
      .nullable(),
    snapshot: z.number().int(),
    agreementVersion: z.number().int(),
    source: z.string().describe('where a reader reproduces the figures: the series request at that snapshot'),
    owners: z.array(z.object({ partner: z.string(), name: z.string() })),
  })
  .describe('a missed milestone or a met exit criterion of a goal');
export type GoalNotice = z.infer<typeof goalNoticeSchema>;

/**
 * An escalation drill (services/alerts/drills.ts): a simulated incident on a KPI and scope that
 * runs the real chain — the owner told, acknowledgement awaited, escalation to the committee — and
 * touches no KPI data nor any incident. The times it took are its result.
 */
export const drillSheetSchema = z
  .object({
    drill: z.literal(true).describe('always true: this is an exercise, not an incident'),
    id: z.string(),
    state: z.enum(['running', 'escalated', 'acknowledged', 'ended']),
    kpi: z.object({ id: z.string(), title: z.string(), unit: z.string() }),
    scope: z.string(),
    startedBy: z.string(),
    startedAt: z.string(),
    ackDueAt: z.string(),
    notifiedAt: z.string().nullable(),
    acknowledgedAt: z.string().nullable(),
    acknowledgedBy: z.string().nullable(),
    escalatedAt: z.string().nullable(),
    chair: personSchema.nullable().describe('the chair named in the escalation'),
    endedAt: z.string().nullable(),
    endedBy: z.string().nullable(),
    owners: z.array(z.object({ partner: z.string(), name: z.string() })),
    result: z.object({
      notifySeconds: z.number().nullable().describe('from start to the owner told'),
      acknowledgeSeconds: z.number().nullable().describe('from start to acknowledgement'),
      escalateSeconds: z.number().nullable().describe('from start to escalation (null: acknowledged in time)'),
    }),
    snapshot: z.number().int(),
  })
  .describe('an escalation drill');
export type DrillSheet = z.infer<typeof drillSheetSchema>;
export const drillsResponseSchema = z.object({ drills: z.array(drillSheetSchema) });

/**
 * A document sent by e-mail as its service rendered it (the monthly review): the outbox and the
 * notifier carry it without knowing what it is.
 */
export interface MailDocument {
  id: string;
  digest: string;
  snapshot: number;
  /** The KPIs it is about (a mention's thread, an action's incident): its audit entry names them. */
  kpis?: string[];
  subject: string;
  text: string;
  html: string;
}

/** A kept or delivered notification as its readers see it: where it went, its state, the fact sheet it carried. */
export const notificationSchema = z.object({
  id: z.string(),
  event: alertEventSchema,
  channel: z.enum(['webhook', 'email', 'dashboard']),
  recipientName: z.string(),
  state: z.enum(['pending', 'sending', 'delivered', 'kept', 'failed', 'disabled']),
  attempts: z.number().int(),
  createdAt: z.string(),
  deliveredAt: z.string().nullable(),
  lastError: z.string().nullable(),
  factSheet: factSheetSchema
    .nullable()
    .describe('incident events: the fact sheet as it was when the notification was written'),
  goalNotice: goalNoticeSchema.nullable().describe('goal events: what was missed or met'),
  drill: drillSheetSchema.nullable().describe('drill events: the drill as it was when the notification was written'),
});
export type NotificationView = z.infer<typeof notificationSchema>;

export const notificationsResponseSchema = z.object({ notifications: z.array(notificationSchema) });
export type NotificationsResponse = z.infer<typeof notificationsResponseSchema>;

export const webhookViewSchema = z.object({
  url: z.string(),
  kpis: z.array(z.string()),
  secret: z.string().describe('the Standard Webhooks signing secret (whsec_…)'),
  previousSecret: z
    .string()
    .nullable()
    .describe('after a rotation, the secret that still signs too until previousUntil'),
  previousUntil: z.string().nullable(),
  disabledAt: z.string().nullable(),
});
export type WebhookView = z.infer<typeof webhookViewSchema>;
export const webhooksResponseSchema = z.object({ webhooks: z.array(webhookViewSchema) });
export const rotateWebhookSchema = z.strictObject({
  url: z.string().min(1).max(2000),
  overlapHours: z.number().int().min(0).max(168).optional().describe('how long the old secret keeps signing (24)'),
});
export type WebhooksResponse = z.infer<typeof webhooksResponseSchema>;

const responseLevelSchema = z.object({ acknowledge: z.string(), resolve: z.string() });

/** A month's service-level attainment (services/alerts/service-levels.ts): arrival and incident times only. */
export const serviceLevelAttainmentSchema = z.object({
  agreed: z.boolean().describe('whether the agreement has serviceLevels'),
  partners: z.array(
    z.object({
      partner: z.string().describe("a partner's id, or 'combined' for the incidents of joint figures"),
      feeds: z.object({
        periods: z.number().int().describe("the month's feed periods (each KPI's freshness.every) outside maintenance"),
        onTime: z.number().int().describe('of them, periods in which the feed was never stale'),
        excused: z.number().int().describe('periods inside a maintenance window, not counted'),
        share: z.number().nullable(),
        target: z.number().nullable().describe('serviceLevels.feedsOnTime'),
        met: z.boolean().nullable(),
        byKpi: z.array(
          z.object({
            kpi: z.string(),
            periods: z.number().int(),
            onTime: z.number().int(),
            excused: z.number().int(),
          }),
        ),
      }),
      incidents: z.array(
        z.object({
          severity: z.enum(severities),
          level: responseLevelSchema.nullable(),
          opened: z.number().int().describe('incidents opened in the month'),
          acknowledgedInTime: z.number().int(),
          acknowledgedLate: z.number().int().describe('acknowledged late, or not yet and past the level'),
          resolvedInTime: z.number().int(),
          resolvedLate: z.number().int(),
          acknowledgeShare: z.number().nullable(),
          resolveShare: z.number().nullable(),
        }),
      ),
    }),
  ),
  maintenanceWindows: z.array(
    z.object({
      from: z.string(),
      to: z.string(),
      partners: z.array(z.string()),
      reason: z.string(),
      honoured: z
        .boolean()
        .nullable()
        .describe(
          "whether every covered partner's feeds were back within their allowance after it; null: not yet known",
        ),
    }),
  ),
});
export type ServiceLevelAttainment = z.infer<typeof serviceLevelAttainmentSchema>;
