import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { assertReader } from '../governance/access-policy.js';
import { auditRequest, caller } from '../governance/auth.js';
import { problemResponses } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { drillSheetSchema, drillsResponseSchema } from './alert-schemas.js';
import { acknowledgeDrill, drillInputSchema, endDrill, listDrillSheets, readDrill, startDrill } from './drills.js';

const drillParams = z.strictObject({
  id: z.string().regex(/^drl_[A-Za-z0-9_-]{1,40}$/, 'expected a drill id (drl_…)'),
});

/** Escalation drills: started and ended by steering, acknowledged by the owner, escalated on schedule. */
export const drillRoutes: FastifyPluginAsync<{ room: Room; kick?: () => void }> = async (fastify, { room, kick }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/drills',
    {
      schema: {
        summary: 'Escalation drills and their results (times to notify, acknowledge, escalate), newest first',
        tags: ['drills'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(50) }),
        response: { 200: drillsResponseSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const drills = await listDrillSheets(room, p, req.query.limit);
      await auditRequest(room, req, {
        action: 'query.drills',
        details: { drill: true, returned: drills.length, kpis: [...new Set(drills.map((d) => d.kpi.id))] },
      });
      return { drills };
    },
  );

  app.post(
    '/v1/drills',
    {
      schema: {
        summary: 'Start a drill on a KPI and scope (steering): its owners are notified as for a breach, marked DRILL',
        tags: ['drills'],
        security: [{ bearer: [] }],
        body: drillInputSchema,
        response: { 201: drillSheetSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415) },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      const drill = await startDrill(room, p, req.body);
      kick?.();
      return reply.code(201).send(drill);
    },
  );

  app.get(
    '/v1/drills/:id',
    {
      schema: {
        summary: 'One drill',
        tags: ['drills'],
        security: [{ bearer: [] }],
        params: drillParams,
        response: { 200: drillSheetSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const drill = await readDrill(room, p, req.params.id);
      await auditRequest(room, req, {
        action: 'query.drill',
        target: drill.id,
        details: { drill: true, kpi: drill.kpi.id },
      });
      return drill;
    },
  );

  // The two ways a drill ends: its owner acknowledges (the times are recorded), or a member ends it.
  for (const [step, summary, act] of [
    ['ack', 'Acknowledge a drill (its owner): the drill ends and its times are recorded', acknowledgeDrill],
    ['end', 'End a drill without acknowledgement (steering)', endDrill],
  ] as const)
    app.post(
      `/v1/drills/:id/${step}`,
      {
        schema: {
          summary,
          tags: ['drills'],
          security: [{ bearer: [] }],
          params: drillParams,
          response: { 200: drillSheetSchema, ...problemResponses(400, 401, 403, 404, 409) },
        },
      },
      async (req) => {
        const p = caller(req);
        assertReader(p);
        const drill = await act(room, p, req.params.id);
        kick?.();
        return drill;
      },
    );
};
