import { z } from 'zod';
import { isoDate } from '../alerts/fact-sheet.js';
import { userText } from '../feedback/feedback-schemas.js';

/**
 * The steering committee (issue #15): its members and rotating chair, and its decision records —
 * append-only, superseded by a later record, each length-limited text stored and served as text.
 */

const person = z.object({ name: z.string(), email: z.string() });

export const committeeSchema = z.object({
  members: z.array(person.extend({ chair: z.boolean().describe('chairs the committee now') })),
  chair: person.extend({
    since: z.string().nullable().describe('the first day of the current term (null: the chair does not rotate)'),
    until: z.string().nullable().describe("the first day of the next chair's term"),
    next: person.nullable(),
  }),
  rotation: z
    .object({ every: z.string(), from: z.string(), order: z.array(person) })
    .nullable()
    .describe("the agreement's chair rotation, or null: the first member chairs"),
});
export type Committee = z.infer<typeof committeeSchema>;

export const decisionIdSchema = z.string().regex(/^dec_[A-Za-z0-9_-]{1,40}$/, 'expected a decision id (dec_…)');

export const decisionInputSchema = z.strictObject({
  title: userText(200),
  context: userText(4000).describe('what the committee faced'),
  options: z.array(userText(1000)).min(1).max(10).describe('the options it considered'),
  decision: userText(4000),
  decisionMakers: z.array(z.email().max(254)).min(1).max(20).describe("the deciding members' e-mails"),
  date: isoDate.describe('the day it was decided (not in the future)'),
  consequences: userText(4000),
  incidents: z
    .array(z.string().regex(/^inc_[A-Za-z0-9_-]{1,40}$/, 'expected an incident id (inc_…)'))
    .max(20)
    .default([]),
  agreementVersions: z.array(z.number().int().min(1).max(1_000_000)).max(20).default([]),
  supersedes: decisionIdSchema.optional().describe('the earlier record this one replaces'),
});
export type DecisionInput = z.infer<typeof decisionInputSchema>;

export const decisionSchema = z.object({
  id: z.string(),
  number: z
    .number()
    .int()
    .describe('D-1, D-2 … in the order recorded, among the records you may see (a need-to-know record leaves no gap)'),
  title: z.string(),
  context: z.string(),
  options: z.array(z.string()),
  decision: z.string(),
  decisionMakers: z.array(person),
  date: z.string(),
  consequences: z.string(),
  incidents: z.array(z.string()),
  agreementVersions: z.array(z.number().int()),
  supersedes: z.string().nullable(),
  supersededBy: z.string().nullable().describe('the later record that replaced this one: this one no longer holds'),
  recordedBy: z.string(),
  recordedAt: z.string(),
});
export type DecisionView = z.infer<typeof decisionSchema>;
export const decisionsResponseSchema = z.object({ decisions: z.array(decisionSchema) });
