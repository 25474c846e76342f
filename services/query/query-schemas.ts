import { z } from 'zod';
import { disclosures, grains, measures } from '../platform/agreement-schema.js';

/**
 * What the query routes answer, written once: the routes declare these as their responses
 * (so /openapi.json describes every field) and the room's own types are inferred from them.
 * The JSON bodies of these routes are sent as canonical JSON strings (the same bytes for every
 * partner, digests over them), which Fastify sends as they are: the schemas describe those
 * bytes, they do not produce them.
 */

export const grainSchema = z.enum(grains);

/** Why a cell is withheld (docs/privacy.md §5): stable codes, rendered in the reader's language by the dashboard. */
export const reasonCodes = [
  'few_subjects',
  'few_partners',
  'dominance',
  'protects',
  'retention',
  'zone',
  'version',
  'pending',
  'held',
] as const;
export const reasonCodeSchema = z.enum(reasonCodes);
export type ReasonCode = z.infer<typeof reasonCodeSchema>;

/**
 * A cell as served: suppressed cells carry a reason instead of a value and a count; held cells
 * (docs/privacy.md §3) carry the value served since snapshot `asOf`, and say why it has not moved.
 */
export const cellSchema = z.object({
  period: z.string().describe('first local day of the period (YYYY-MM-DD)'),
  group: z.string().nullable().describe('partner id or dimension value; null for the combined figure'),
  value: z.number().nullable(),
  n: z
    .number()
    .int()
    .nullable()
    .describe("distinct subjects in the cell; only where the KPI's agreement says counts: exact, else null"),
  state: z.enum(['ok', 'suppressed', 'held']),
  reasonCode: reasonCodeSchema.optional().describe('why a cell is withheld or held, as a stable code'),
  reason: z.string().optional().describe('why a cell is withheld or held, in plain English'),
  asOf: z
    .number()
    .int()
    .optional()
    .describe(
      'held cells: the snapshot since which this value is served; newer points wait until their change passes the rules',
    ),
});
export type Cell = z.infer<typeof cellSchema>;

/** A served series: the same request at the same snapshot gives the same bytes to everyone. */
export const seriesSchema = z.object({
  kpi: z.string(),
  measure: z.enum(measures),
  unit: z.string(),
  grain: grainSchema,
  by: z.string().nullable().describe('partner, a dimension, or null for the combined figure'),
  from: z.string(),
  to: z.string(),
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  minGroupSize: z.number().int(),
  dominance: z.number().nullable().describe("the KPI's dominance rule in percent, or null"),
  approximate: z.boolean(),
  digest: z.string().describe('SHA-256 of the canonical JSON of the cells'),
  cells: z.array(cellSchema),
});
export type SeriesResult = z.infer<typeof seriesSchema>;

export const bandSchema = z.object({
  method: z.enum(['static', 'control']),
  lower: z.number().nullable(),
  upper: z.number().nullable(),
});
export type Band = z.infer<typeof bandSchema>;

export const signalSchema = z
  .enum(['band', '2of3beyond2sigma', '4of5beyond1sigma', '8onOneSide'])
  .describe('why a period counts as out of band: beyond a limit, or a Western Electric run rule');
export type Signal = z.infer<typeof signalSchema>;

export const scopeStateSchema = z.enum(['ok', 'pending', 'breach', 'no_data', 'suppressed']);
export type ScopeState = z.infer<typeof scopeStateSchema>;

/** One partner's feed of one KPI: when its last batch arrived and whether that is too long ago. */
export const feedSchema = z.object({
  partner: z.string(),
  lastArrival: z.string().nullable(),
  dueBy: z
    .string()
    .describe(
      'the feed is expected again by then (last arrival + every + grace, moved to the end of a maintenance window it falls in); past it, stale',
    ),
  stale: z.boolean(),
  maintenanceUntil: z
    .string()
    .nullable()
    .describe(
      'the end of the agreed maintenance window the partner is in now (no freshness breach inside it), else null',
    ),
});
export type FeedFreshness = z.infer<typeof feedSchema>;

export const scopeSummarySchema = z.object({
  group: z.string().nullable().describe('the partner; null for the combined figure'),
  state: scopeStateSchema,
  band: bandSchema.nullable(),
  signal: signalSchema.nullable().describe('why the last closed period is out of band, else null'),
  outOfBandSince: z.string().nullable().describe('the first closed period of the current out-of-band run, else null'),
  inBandRun: z.number().int().describe('closed periods in a row, up to the last, in band'),
  lastClosed: z
    .object({
      period: z.string(),
      value: z.number().nullable(),
      n: z.number().int().nullable(),
      suppressed: z.boolean(),
    })
    .nullable(),
  previous: z.object({ period: z.string(), value: z.number().nullable() }).nullable(),
  change: z.number().nullable(),
  provisional: z
    .object({ period: z.string(), value: z.number().nullable(), n: z.number().int().nullable() })
    .nullable()
    .describe('the open period so far'),
});
export type ScopeSummary = z.infer<typeof scopeSummarySchema>;

export const kpiSummarySchema = z.object({
  id: z.string(),
  title: z.string(),
  unit: z.string(),
  measure: z.enum(measures),
  disclosure: z.enum(disclosures),
  grain: grainSchema.describe('the evaluation grain'),
  minGroupSize: z.number().int(),
  feeds: z.array(feedSchema).describe("each partner's feed of this KPI"),
  scopes: z.array(scopeSummarySchema),
});
export type KpiSummary = z.infer<typeof kpiSummarySchema>;

export const kpisResultSchema = z.object({
  today: z.string(),
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  digest: z.string().describe('SHA-256 of the canonical JSON of the KPIs'),
  kpis: z.array(kpiSummarySchema),
});
export type KpisResult = z.infer<typeof kpisResultSchema>;

/** GET /v1/kpis: the summary and when its snapshot landed. */
export const kpisResponseSchema = kpisResultSchema.extend({
  asOf: z.string().nullable().describe('when the snapshot landed'),
});
export type KpisResponse = z.infer<typeof kpisResponseSchema>;

export const breachSchema = z.object({
  kpi: z.string(),
  group: z.string().nullable(),
  period: z.string(),
  value: z.number().nullable().describe('null where the cell is withheld'),
  band: bandSchema,
  state: z.literal('breach'),
  suppressed: z.boolean(),
});
export type BreachEntry = z.infer<typeof breachSchema>;

export const breachesResponseSchema = z.object({
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  from: z.string(),
  to: z.string(),
  digest: z.string().describe('SHA-256 of the canonical JSON of the breaches'),
  breaches: z.array(breachSchema),
});
export type BreachesResponse = z.infer<typeof breachesResponseSchema>;

/** A judged period without its value. */
export const periodBandSchema = z.object({
  group: z.string().nullable(),
  period: z.string(),
  method: z.enum(['static', 'control']).nullable(),
  lower: z.number().nullable(),
  upper: z.number().nullable(),
  outside: z.boolean(),
  signal: signalSchema.nullable(),
});
export type PeriodBand = z.infer<typeof periodBandSchema>;

export const bandsResponseSchema = z.object({
  kpi: z.string(),
  grain: grainSchema,
  from: z.string(),
  to: z.string(),
  snapshot: z.number().int(),
  agreementVersion: z.number().int(),
  digest: z.string().describe('SHA-256 of the canonical JSON of the bands'),
  bands: z.array(periodBandSchema),
});
export type BandsResponse = z.infer<typeof bandsResponseSchema>;

/** A series by Accept (or ?format=): canonical JSON, CSV, or an Arrow IPC stream. */
export const seriesContent = {
  'application/json': { schema: seriesSchema },
  'text/csv': {
    schema: z
      .string()
      .describe('a header row (period, group, value, n, state, reason_code, reason) and one row per cell'),
  },
  'application/vnd.apache.arrow.stream': {
    schema: z.string().meta({
      format: 'binary',
      description: 'an Arrow IPC stream: columns period, group, value (Float64), n (Int32), state, reason_code, reason',
    }),
  },
};
