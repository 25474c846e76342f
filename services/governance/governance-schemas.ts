import { z } from 'zod';
import { agreementSchema } from '../platform/agreement-schema.js';
import { roles } from './token-repository.js';

/**
 * What the governance routes (agreement, proposals, tokens, audit, transparency) answer, written
 * once: the routes declare these as their responses (the serializer sends exactly these fields)
 * and the room's own types are inferred from them.
 */

/** Any JSON value: audit details and the before/after of an agreement change are free-form by nature. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export const jsonValueSchema: z.ZodType<JsonValue> = z
  .lazy(() =>
    z.union([
      z.string(),
      z.number(),
      z.boolean(),
      z.null(),
      z.array(jsonValueSchema),
      z.record(z.string(), jsonValueSchema),
    ]),
  )
  // Recursive: described once, as a component of /openapi.json that every use refers to.
  .meta({ id: 'JsonValue', description: 'any JSON value' });

/**
 * The agreement as the room serves it: every field of the agreement schema, without the checks
 * only a whole document passes (a reader is shown only the KPIs it may see, possibly none).
 */
export const servedAgreementSchema = z.strictObject({
  ...agreementSchema.shape,
  kpis: z.array(agreementSchema.shape.kpis.element),
});

export const agreementResponseSchema = z.object({
  version: z.number().int(),
  digest: z.string().describe('SHA-256 of the canonical JSON of the whole agreement'),
  activatedAt: z.string().nullable(),
  agreement: servedAgreementSchema.describe('need-to-know KPIs the reader may not see are left out'),
});
export type AgreementResponse = z.infer<typeof agreementResponseSchema>;

export const agreementVersionSchema = z.object({
  version: z.number().int(),
  digest: z.string(),
  source: z.string().describe('where the version came from: a file, the demo, or the proposal that made it'),
  activatedAt: z.string().nullable(),
  proposal: z.string().nullable(),
});
export type AgreementVersionView = z.infer<typeof agreementVersionSchema>;

export const versionsResponseSchema = z.object({ versions: z.array(agreementVersionSchema) });
export type VersionsResponse = z.infer<typeof versionsResponseSchema>;

/** One difference between two agreement versions, in plain terms. */
export const agreementChangeSchema = z.object({
  path: z.string().describe('where, with KPIs, partners and steering members named by id (kpis.lead_time.band.upper)'),
  change: z.enum(['added', 'removed', 'changed']),
  before: jsonValueSchema.optional(),
  after: jsonValueSchema.optional(),
  text: z.string().describe('the change in a sentence: "KPI lead_time: band.upper 72 → 60"'),
  loosensPrivacy: z.boolean().describe('set when the change lets more be seen, by more people, or for longer'),
  privacy: z.string().optional().describe('why the change loosens privacy'),
});
export type AgreementChange = z.infer<typeof agreementChangeSchema>;

/** A proposal as the API shows it: the document, the plain-terms diff and who has decided. */
export const proposalSchema = z.object({
  id: z.string(),
  state: z.enum(['open', 'active', 'rejected', 'superseded', 'expired']),
  baseVersion: z.number().int(),
  resultVersion: z.number().int().nullable(),
  reason: z.string(),
  proposedBy: z.object({ tokenId: z.string(), partner: z.string() }),
  createdAt: z.string(),
  expiresAt: z.string(),
  decidedAt: z.string().nullable(),
  digest: z.string(),
  loosensPrivacy: z.boolean(),
  changes: z.array(agreementChangeSchema),
  requiredPartners: z
    .array(z.string())
    .describe('every partner whose admin must approve: the partners of the version it changes'),
  decisions: z.array(
    z.object({
      partner: z.string(),
      decision: z.enum(['approve', 'reject']),
      tokenId: z.string(),
      at: z.string(),
      note: z.string().nullable(),
    }),
  ),
  waitingFor: z.array(z.string()),
  agreement: servedAgreementSchema.describe('the proposed agreement'),
  widensTokens: z
    .array(z.object({ id: z.string(), partner: z.string().nullable(), role: z.string(), name: z.string() }))
    .describe(
      'live tokens that would read more once this version is active (their holder is newly a steering member, need-to-know reader or KPI owner)',
    ),
});
export type ProposalView = z.infer<typeof proposalSchema>;

export const proposalsResponseSchema = z.object({ proposals: z.array(proposalSchema) });
export type ProposalsResponse = z.infer<typeof proposalsResponseSchema>;

/** A token as its partner's admin sees it: never the token or its hash. */
export const tokenSchema = z.object({
  id: z.string(),
  partner: z.string().nullable(),
  role: z.enum(roles),
  name: z.string(),
  createdAt: z.string(),
  createdBy: z.string().nullable(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  replaces: z.string().nullable(),
  state: z.enum(['live', 'expired', 'revoked']),
  origin: z
    .enum(['token', 'oidc', 'invitation'])
    .describe("'token': issued (systems, embedding, the CLI); 'oidc' or 'invitation': a person's sign-in"),
  lastUsedAt: z.string().nullable().describe('the last request with it (to the minute); null: never used'),
});
export type TokenView = z.infer<typeof tokenSchema>;

export const tokensResponseSchema = z.object({ tokens: z.array(tokenSchema) });
export type TokensResponse = z.infer<typeof tokensResponseSchema>;

export const issuedTokenSchema = tokenSchema.extend({
  token: z.string().describe('the token itself: shown once, only its SHA-256 is kept'),
});
export type IssuedToken = z.infer<typeof issuedTokenSchema>;

export const rotatedTokenSchema = issuedTokenSchema.extend({
  previous: tokenSchema.describe('the token it replaces, valid until its new expiresAt'),
});
export type RotatedToken = z.infer<typeof rotatedTokenSchema>;

export const auditEntrySchema = z.object({
  seq: z.number().int(),
  at: z.string(),
  actor: z.string().describe('token id, system, cli or anonymous'),
  partner: z.string().nullable().describe("the partner that acted; null for the room's own and shared entries"),
  action: z.string(),
  target: z.string().nullable(),
  details: z
    .record(z.string(), jsonValueSchema)
    .describe('what the action was about: counts, ids, roles; never values'),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditEntryView = z.infer<typeof auditEntrySchema>;

export const auditPageSchema = z.object({
  entries: z.array(auditEntrySchema),
  next: z.number().int().nullable().describe('pass as after= for the next page'),
});
export type AuditPage = z.infer<typeof auditPageSchema>;

export const auditVerifySchema = z.union([
  z.object({ ok: z.literal(true), entries: z.number().int() }),
  z.object({
    ok: z.literal(false),
    entries: z.number().int(),
    brokenAt: z.number().int().describe('the sequence number of the first broken link'),
    reason: z.string(),
  }),
]);
export type AuditVerification = z.infer<typeof auditVerifySchema>;

/**
 * The metadata report: which information flowed, in counts and times only. It is built from
 * the batch receipts, the audit log, the outbox and the agreement history; no value, no
 * pseudonym and no query parameter beyond the KPI and the reader's partner and role.
 */
export const transparencyReportSchema = z.object({
  partnership: z.string(),
  month: z.string(),
  from: z.string(),
  to: z.string(),
  generatedAt: z.string(),
  agreementVersion: z.number().int(),
  partners: z.array(
    z.object({
      partner: z.string(),
      batches: z.number().int(),
      pointsAccepted: z
        .number()
        .int()
        .nullable()
        .describe("the reader's own partner only; null for every other partner, steering and the operator"),
      pointsRejected: z
        .number()
        .int()
        .nullable()
        .describe("the reader's own partner only; null for every other partner, steering and the operator"),
      lastArrival: z.string().nullable(),
    }),
  ),
  feeds: z.array(
    z.object({
      partner: z.string(),
      kpi: z.string(),
      batches: z.number().int(),
      points: z
        .number()
        .int()
        .nullable()
        .describe(
          "the reader's own partner's feeds only; null otherwise, for steering and the operator too (for a count KPI it would be the partner's figure)",
        ),
      lastArrival: z.string().nullable(),
      dueBy: z.string(),
      stale: z.boolean(),
    }),
  ),
  queries: z.array(
    z.object({
      kpi: z.string(),
      partner: z.string().nullable(),
      role: z.string(),
      requests: z.number().int(),
      cellsServed: z.number().int(),
      cellsSuppressed: z.number().int(),
    }),
  ),
  incidents: z.array(
    z.object({ kpi: z.string(), scope: z.string(), opened: z.number().int(), resolved: z.number().int() }),
  ),
  notifications: z.array(
    z.object({
      channel: z.string(),
      partner: z.string().nullable(),
      state: z.string(),
      count: z.number().int(),
      lastAt: z.string().nullable(),
    }),
  ),
  agreementChanges: z.array(
    z.object({
      at: z.string(),
      action: z.string(),
      proposal: z.string().nullable(),
      version: z.number().int().nullable(),
      partner: z.string().nullable(),
    }),
  ),
});
export type TransparencyReport = z.infer<typeof transparencyReportSchema>;

/** The report as JSON, or (?format=csv) as one CSV table. */
export const transparencyContent = {
  'application/json': { schema: transparencyReportSchema },
  'text/csv': {
    schema: z
      .string()
      .describe('one table: section, partner, kpi, role_or_channel, measure, count, at (one row per figure)'),
  },
};
