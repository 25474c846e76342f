import { z } from 'zod';
import { serviceLevelAttainmentSchema } from '../alerts/alert-schemas.js';
import { actionSchema } from '../feedback/feedback-schemas.js';
import { stageProgressSchema, goalProgressSchema } from '../goals/goal-schemas.js';
import { grains } from '../platform/agreement-schema.js';

/**
 * The monthly review (issue #14): one document per month, the same bytes for every partner.
 * Every figure in it is a disclosed value of a served series or band at the review's snapshot;
 * need-to-know KPIs stay out of it (it goes to every partner's contacts).
 */

export const deviationSchema = z.object({
  period: z.string(),
  value: z.number(),
  lower: z.number().nullable(),
  upper: z.number().nullable(),
  distance: z.number().describe('how far outside the band (in the KPI unit)'),
});

export const reviewScopeSchema = z.object({
  scope: z.string().describe("'combined' or a partner's id"),
  periods: z.number().int().describe('closed periods of the month judged (at the evaluation grain)'),
  disclosed: z.number().int().describe('of them, with a disclosed value'),
  inBand: z.number().int(),
  shareInBand: z.number().nullable().describe('inBand / disclosed; null when nothing was disclosed'),
  deviations: z.array(deviationSchema).describe('the largest deviations outside the band, largest first (at most 3)'),
  series: z
    .array(
      z.object({
        period: z.string(),
        value: z.number().nullable().describe('the disclosed value; null when withheld or without data'),
        lower: z.number().nullable(),
        upper: z.number().nullable(),
      }),
    )
    .optional()
    .describe(
      "each judged period of the month with its band, as GET /v1/kpis/{kpi}/bands serves it (the PDF's chart); absent in reviews kept before it existed",
    ),
  month: z.number().nullable().describe("the month's value at month grain, where the KPI is agreed at it"),
  previousMonth: z.number().nullable(),
  change: z.number().nullable(),
  improved: z
    .boolean()
    .nullable()
    .describe("whether the month's value moved the better way (by the band's side); null when unclear"),
});

export const reviewKpiSchema = z.object({
  id: z.string(),
  title: z.string(),
  unit: z.string(),
  grain: z.enum(grains),
  scopes: z.array(reviewScopeSchema),
});

export const reviewBreachSchema = z.object({
  incident: z.string(),
  kpi: z.string(),
  scope: z.string(),
  kind: z.enum(['breach', 'stale']),
  period: z.string().nullable(),
  value: z.number().nullable(),
  state: z.string(),
  cause: z.string().nullable(),
  narrative: z.string().nullable(),
  actions: z.array(z.object({ description: z.string(), owner: z.string(), due: z.string() })),
  owners: z.array(z.object({ partner: z.string(), name: z.string() })),
});

export const reviewSchema = z.object({
  partnership: z.object({ id: z.string(), title: z.string() }),
  month: z.string().describe('YYYY-MM'),
  from: z.string(),
  to: z.string(),
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  intent: z.string().nullable(),
  kpis: z.array(reviewKpiSchema),
  breaches: z
    .array(reviewBreachSchema)
    .describe("incidents opened in the month, with their fact sheets' cause and actions"),
  stage: stageProgressSchema.nullable(),
  goals: z.array(goalProgressSchema),
  serviceLevels: serviceLevelAttainmentSchema
    .optional()
    .describe('service-level attainment per partner; absent in reviews kept before service levels existed'),
  actions: z
    .array(actionSchema)
    .optional()
    .describe(
      "open actions due by the month's end and actions done in it (retrospectives' and shared KPIs' incidents'); absent in reviews kept before the tracker existed",
    ),
  agreementChanges: z.array(
    z.object({ version: z.number().int(), activatedAt: z.string(), changes: z.array(z.string()) }),
  ),
  improvements: z.array(z.string()).describe('what moved the better way since last month, in plain words'),
  digest: z.string().describe('SHA-256 of the canonical JSON of everything above'),
});
export type Review = z.infer<typeof reviewSchema>;
export type ReviewKpi = z.infer<typeof reviewKpiSchema>;
export type ReviewScope = z.infer<typeof reviewScopeSchema>;

export const reviewListSchema = z.object({
  reviews: z.array(
    z.object({
      month: z.string(),
      snapshot: z.number().int(),
      digest: z.string(),
      createdAt: z.string(),
      sentAt: z.string().nullable(),
    }),
  ),
});
export type ReviewList = z.infer<typeof reviewListSchema>;
