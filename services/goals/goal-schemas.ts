import { z } from 'zod';
import { comparators, grains, stages } from '../platform/agreement-schema.js';

/**
 * What GET /v1/goals answers, written once (the route declares it, the room's types are inferred
 * from it, the web imports them). Every figure in it is a disclosed value of a served series.
 */

/** Where a judged figure comes from: the series request that reproduces it, and that series' digest. */
export const evidenceSchema = z
  .object({
    kpi: z.string(),
    grain: z.enum(grains),
    by: z.enum(['partner']).nullable().describe('partner for a partner scope, null for the combined figure'),
    from: z.string(),
    to: z.string(),
    snapshot: z.number().int(),
    digest: z.string().describe('the digest GET /v1/series answers for this request at this snapshot'),
  })
  .describe('GET /v1/series?kpi&grain&by&from&to&snapshot answers this digest');
export type Evidence = z.infer<typeof evidenceSchema>;

export const periodValueSchema = z.object({
  period: z.string(),
  value: z.number().nullable().describe('the disclosed value; null where withheld or no data'),
});

export const milestoneStateSchema = z
  .enum(['met', 'missed', 'on_track', 'at_risk', 'no_data'])
  .describe(
    'met/missed: its period is closed and its disclosed value reaches the target or not; on_track/at_risk: ' +
      'the latest closed value, or its trend, reaches the target by then or not; no_data: no disclosed value to judge',
  );
export type MilestoneState = z.infer<typeof milestoneStateSchema>;

export const milestoneProgressSchema = z.object({
  date: z.string(),
  target: z.number(),
  period: z.string().describe('the period (at the goal grain) holding the date: the one judged'),
  state: milestoneStateSchema,
  value: z.number().nullable().describe('met/missed: the value of its period; else the latest closed value'),
  final: z.boolean().describe('the goal itself: its due date and target'),
});
export type MilestoneProgress = z.infer<typeof milestoneProgressSchema>;

export const conditionResultSchema = z.object({
  kpi: z.string(),
  scope: z.string(),
  grain: z.enum(grains),
  comparator: z.enum(comparators),
  threshold: z.number(),
  periods: z.number().int(),
  text: z.string().describe('the condition in plain English'),
  met: z.boolean().describe('every one of the periods disclosed and holding the condition'),
  values: z.array(periodValueSchema).describe('the closed periods judged, oldest first'),
  evidence: evidenceSchema,
});
export type ConditionResult = z.infer<typeof conditionResultSchema>;

export const goalProgressSchema = z.object({
  id: z.string(),
  title: z.string(),
  kpi: z.string(),
  kpiTitle: z.string(),
  unit: z.string(),
  scope: z.string(),
  grain: z.enum(grains),
  direction: z.enum(['at_most', 'at_least']),
  target: z.number(),
  start: z.string(),
  due: z.string(),
  owners: z.array(z.object({ partner: z.string(), name: z.string() })),
  assumptions: z.array(z.string()),
  state: milestoneStateSchema.describe("the goal's own state: its due date judged like a milestone"),
  baseline: z.number().nullable().describe('the first disclosed closed value from start on'),
  current: z.number().nullable().describe('the latest disclosed closed value'),
  progress: z
    .number()
    .nullable()
    .describe('0..1: how far current has come from baseline towards the target (1 once reached)'),
  nextMilestone: milestoneProgressSchema.nullable().describe('the first milestone whose period is still open'),
  milestones: z.array(milestoneProgressSchema).describe('every milestone, then the due date (final)'),
  targetLine: z
    .array(z.object({ date: z.string(), target: z.number() }))
    .describe('the target over time: start at the first milestone target, each milestone, the due date'),
  exitCriteria: z.array(conditionResultSchema),
  values: z.array(periodValueSchema).describe('the closed periods from start on, as disclosed'),
  evidence: evidenceSchema,
});
export type GoalProgress = z.infer<typeof goalProgressSchema>;

export const stageProgressSchema = z.object({
  current: z.enum(stages),
  next: z.enum(stages).nullable(),
  criteria: z.array(conditionResultSchema),
  ready: z
    .boolean()
    .nullable()
    .describe('every criterion met; null when one of them is on a KPI the caller may not read (it is left out)'),
});
export type StageProgress = z.infer<typeof stageProgressSchema>;

export const goalsResponseSchema = z.object({
  today: z.string(),
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  intent: z.string().nullable(),
  stage: stageProgressSchema.nullable(),
  goals: z.array(goalProgressSchema),
  digest: z.string().describe('SHA-256 of the canonical JSON of stage and goals'),
});
export type GoalsResponse = z.infer<typeof goalsResponseSchema>;
