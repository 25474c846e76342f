import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { assertReader, findVisibleKpi } from '../governance/access-policy.js';
import { auditRequest, caller } from '../governance/auth.js';
import { isoDate } from '../alerts/fact-sheet.js';
import { problemResponses } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { listAnnotations, listAnnotationVersions } from './feedback-repository.js';
import {
  annotationHistorySchema,
  annotationInputSchema,
  annotationPatchSchema,
  annotationSchema,
  annotationsResponseSchema,
  actionInputSchema,
  actionSchema,
  actionsResponseSchema,
  retroItemInputSchema,
  retrospectiveSchema,
  commentInputSchema,
  commentSchema,
  threadKinds,
  threadSchema,
} from './feedback-schemas.js';
import {
  addRetroAction,
  addRetroItem,
  completeAction,
  listTrackedActions,
  readRetrospective,
  retroPeriod,
} from './retrospectives.js';
import {
  addAnnotation,
  addComment,
  annotationView,
  editAnnotation,
  readThread,
  visibleAnnotation,
} from './feedback-service.js';

const kpiParams = z.strictObject({ kpi: z.string().max(63) });
const annotationParams = z.strictObject({
  id: z.string().regex(/^ann_[A-Za-z0-9_-]{1,40}$/, 'expected an annotation id (ann_…)'),
});
const threadParams = z.strictObject({
  kind: z.enum(threadKinds),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'expected an id (letters, digits, _ and -)'),
});

/**
 * Annotations on a KPI's periods and comment threads (issue #15): what partners say inside the
 * room, readable by everyone who may read the KPI (or proposal) it is about, and by no one else.
 */
export const feedbackRoutes: FastifyPluginAsync<{ room: Room; kick?: () => void }> = async (
  fastify,
  { room, kick },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/kpis/:kpi/annotations',
    {
      schema: {
        summary: "A KPI's annotations overlapping [from, to], oldest period first",
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: kpiParams,
        querystring: z.strictObject({
          from: isoDate.optional(),
          to: isoDate.optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(500),
        }),
        response: { 200: annotationsResponseSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const kpi = findVisibleKpi(room.agreement().agreement, p, req.params.kpi);
      const rows = await listAnnotations(room.control.db, { kpi: kpi.id, ...req.query });
      await auditRequest(room, req, {
        action: 'query.annotations',
        details: { role: p.role, kpi: kpi.id, returned: rows.length },
      });
      return { annotations: rows.map(annotationView) };
    },
  );

  app.post(
    '/v1/kpis/:kpi/annotations',
    {
      schema: {
        summary: "Annotate a KPI's period or range (optionally one partner's series): every reader of the KPI sees it",
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: kpiParams,
        body: annotationInputSchema,
        response: { 201: annotationSchema, ...problemResponses(400, 401, 403, 404, 413, 415, 429) },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      assertReader(p);
      return reply.code(201).send(await addAnnotation(room, p, req.params.kpi, req.body));
    },
  );

  app.patch(
    '/v1/annotations/:id',
    {
      schema: {
        summary: 'Edit your annotation; every version is kept',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: annotationParams,
        body: annotationPatchSchema,
        response: { 200: annotationSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      return editAnnotation(room, p, req.params.id, req.body);
    },
  );

  app.get(
    '/v1/annotations/:id/history',
    {
      schema: {
        summary: "An annotation's versions, first to last",
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: annotationParams,
        response: { 200: annotationHistorySchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const row = await visibleAnnotation(room, p, req.params.id);
      const versions = await listAnnotationVersions(room.control.db, row.id);
      await auditRequest(room, req, {
        action: 'query.annotation_history',
        target: row.id,
        details: { kpi: row.kpi },
      });
      return {
        id: row.id,
        versions: versions.map((v) => ({
          version: v.version,
          scope: v.scope,
          from: v.period_from,
          to: v.period_to,
          text: v.text,
          editedAt: new Date(v.edited_at as unknown as string).toISOString(),
        })),
      };
    },
  );

  app.get(
    '/v1/threads/:kind/:id',
    {
      schema: {
        summary: 'The comments on an incident, annotation, goal or proposal, oldest first',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: threadParams,
        response: { 200: threadSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const p = caller(req);
      if (req.params.kind !== 'proposal') assertReader(p);
      const { comments, kpis } = await readThread(room, p, req.params.kind, req.params.id);
      await auditRequest(room, req, {
        action: 'query.thread',
        target: `${req.params.kind}:${req.params.id}`,
        details: { role: p.role, kpis, returned: comments.length },
      });
      return { kind: req.params.kind, id: req.params.id, comments };
    },
  );

  app.post(
    '/v1/threads/:kind/:id',
    {
      schema: {
        summary:
          'Comment on an incident, annotation, goal or proposal; each @e-mail mention of a person of the partnership who may read it is notified once',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: threadParams,
        body: commentInputSchema,
        response: {
          201: z.object({
            comment: commentSchema,
            notified: z.number().int().describe('messages queued for the mentions'),
          }),
          ...problemResponses(400, 401, 403, 404, 413, 415, 429),
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      if (req.params.kind !== 'proposal') assertReader(p);
      const r = await addComment(room, p, req.params.kind, req.params.id, req.body.text);
      if (r.notified) kick?.();
      return reply.code(201).send(r);
    },
  );
};

/** Retrospectives and the action tracker (issue #15): a shared record per month or stage, decisions tracked until done. */
export const retrospectiveRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const periodParams = z.strictObject({ period: retroPeriod });

  app.get(
    '/v1/retrospectives/:period',
    {
      schema: {
        summary: "A month's or stage's retrospective: what strengthened and weakened trust, and the actions decided",
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: periodParams,
        response: { 200: retrospectiveSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const r = await readRetrospective(room, p, req.params.period);
      await auditRequest(room, req, { action: 'query.retrospective', details: { period: r.period } });
      return r;
    },
  );

  app.post(
    '/v1/retrospectives/:period/items',
    {
      schema: {
        summary: 'Add what strengthened or weakened trust to a retrospective',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: periodParams,
        body: retroItemInputSchema,
        response: { 201: retrospectiveSchema, ...problemResponses(400, 401, 403, 413, 415, 429) },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      assertReader(p);
      await addRetroItem(room, p, req.params.period, req.body);
      return reply.code(201).send(await readRetrospective(room, p, req.params.period));
    },
  );

  app.post(
    '/v1/retrospectives/:period/actions',
    {
      schema: {
        summary: 'Record a decision as an action with an owner (a person of the partnership) and a due date',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: periodParams,
        body: actionInputSchema,
        response: { 201: actionSchema, ...problemResponses(400, 401, 403, 409, 413, 415, 429) },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      assertReader(p);
      return reply.code(201).send(await addRetroAction(room, p, req.params.period, req.body));
    },
  );

  app.get(
    '/v1/actions',
    {
      schema: {
        summary: "The tracked actions: retrospectives' decisions and incident fact sheets' follow-ups, due first",
        tags: ['feedback'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({ state: z.enum(['open', 'done', 'overdue']).optional() }),
        response: { 200: actionsResponseSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const actions = await listTrackedActions(room, p, req.query.state);
      await auditRequest(room, req, {
        action: 'query.actions',
        details: {
          role: p.role,
          returned: actions.length,
          kpis: [...new Set(actions.flatMap((a) => (a.kpi ? [a.kpi] : [])))],
        },
      });
      return { actions };
    },
  );

  app.post(
    '/v1/actions/:id/done',
    {
      schema: {
        summary: 'Mark an action done (its owner, the steering committee or a partner admin)',
        tags: ['feedback'],
        security: [{ bearer: [] }],
        params: z.strictObject({ id: z.string().regex(/^act_[A-Za-z0-9_-]{1,80}$/, 'expected an action id (act_…)') }),
        body: z.strictObject({}).optional(),
        response: { 200: actionSchema, ...problemResponses(400, 401, 403, 404, 413, 415) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      return completeAction(room, p, req.params.id);
    },
  );
};
