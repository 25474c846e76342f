import { z } from 'zod';
import { isoDate as isoDay } from '../alerts/fact-sheet.js';

/**
 * Annotations and comment threads (issue #15): text written by partner users, stored and served
 * as text only (every page and e-mail renders it escaped), each length-limited.
 */

/** Text a person writes: trimmed, 1–2000 characters, no control characters but line breaks and tabs. */
export const userText = (max: number) =>
  z
    .string()
    .trim()
    .min(1, 'write something')
    .max(max, `at most ${max} characters`)
    .refine((s) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s), {
      message: 'control characters are not allowed',
    });

export const annotationInputSchema = z
  .strictObject({
    scope: z.string().min(1).max(63).default('combined').describe("'combined' or a partner's id"),
    from: isoDay.describe('the first day the note is about'),
    to: isoDay.optional().describe('the last day (default: from)'),
    text: userText(2000),
  })
  .refine((a) => !a.to || a.to >= a.from, { message: 'to must not be before from', path: ['to'] });

export const annotationPatchSchema = z
  .strictObject({
    scope: z.string().min(1).max(63).optional(),
    from: isoDay.optional(),
    to: isoDay.optional(),
    text: userText(2000).optional(),
  })
  .refine((a) => Object.keys(a).length > 0, { message: 'change at least one of scope, from, to, text' });

const authorSchema = z.object({ partner: z.string().nullable(), name: z.string() });

export const annotationSchema = z.object({
  id: z.string(),
  kpi: z.string(),
  scope: z.string(),
  from: z.string(),
  to: z.string(),
  text: z.string().describe('as written: render it as text'),
  author: authorSchema,
  version: z.number().int().describe('1 when never edited'),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Annotation = z.infer<typeof annotationSchema>;

export const annotationsResponseSchema = z.object({ annotations: z.array(annotationSchema) });

export const annotationHistorySchema = z.object({
  id: z.string(),
  versions: z.array(
    z.object({
      version: z.number().int(),
      scope: z.string(),
      from: z.string(),
      to: z.string(),
      text: z.string(),
      editedAt: z.string(),
    }),
  ),
});

export const threadKinds = ['incident', 'annotation', 'goal', 'proposal'] as const;
export type ThreadKind = (typeof threadKinds)[number];

export const commentInputSchema = z.strictObject({
  text: userText(4000).describe('@name@example.org mentions a person of the partnership, who is notified'),
});

export const commentSchema = z.object({
  id: z.string(),
  text: z.string().describe('as written: render it as text'),
  author: authorSchema,
  mentions: z.array(z.string()),
  createdAt: z.string(),
});
export type Comment = z.infer<typeof commentSchema>;

export const threadSchema = z.object({
  kind: z.enum(threadKinds),
  id: z.string(),
  comments: z.array(commentSchema),
});

export const retroItemInputSchema = z.strictObject({
  kind: z.enum(['strengthened', 'weakened']).describe('what strengthened trust, or what weakened it'),
  text: userText(1000),
});

export const actionInputSchema = z.strictObject({
  description: userText(500),
  owner: z.string().max(254).describe("the owner's e-mail: a person of the partnership"),
  due: isoDay,
});

export const actionSchema = z.object({
  id: z.string(),
  source: z.string().describe("'retrospective:<period>' or 'incident:<id>'"),
  kpi: z.string().nullable().describe("the KPI an incident's action concerns"),
  description: z.string(),
  owner: z.object({ partner: z.string().nullable(), name: z.string(), email: z.string().nullable() }),
  due: z.string(),
  state: z.enum(['open', 'done']),
  overdue: z.boolean().describe('open and due before today (partnership time zone)'),
  doneAt: z.string().nullable(),
  doneBy: z.string().nullable(),
});
export type ActionView = z.infer<typeof actionSchema>;

const retroItemSchema = z.object({
  id: z.string(),
  text: z.string(),
  author: authorSchema,
  createdAt: z.string(),
});

export const retrospectiveSchema = z.object({
  period: z.string(),
  strengthened: z.array(retroItemSchema),
  weakened: z.array(retroItemSchema),
  actions: z.array(actionSchema),
});
export type Retrospective = z.infer<typeof retrospectiveSchema>;

export const actionsResponseSchema = z.object({ actions: z.array(actionSchema) });
