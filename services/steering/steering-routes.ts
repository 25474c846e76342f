import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { assertReader } from '../governance/access-policy.js';
import { auditRequest, caller } from '../governance/auth.js';
import { Problem, problemResponses } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { committee, listDecisionViews, readDecision, recordDecision } from './steering-service.js';
import {
  committeeSchema,
  decisionIdSchema,
  decisionInputSchema,
  decisionSchema,
  decisionsResponseSchema,
} from './steering-schemas.js';

const decisionParams = z.strictObject({ id: decisionIdSchema });

/** The steering committee and its decision log: read by every partner, written by the committee. */
export const steeringRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/steering',
    {
      schema: {
        summary: 'The steering committee: its members, the chair of today and the rotation',
        tags: ['steering'],
        security: [{ bearer: [] }],
        response: { 200: committeeSchema, ...problemResponses(401, 403) },
      },
    },
    async (req) => {
      assertReader(caller(req));
      await auditRequest(room, req, { action: 'query.steering', details: {} });
      return committee(room);
    },
  );

  app.get(
    '/v1/decisions',
    {
      schema: {
        summary: "The committee's decision records, newest first (superseded ones name their successor)",
        tags: ['steering'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(200) }),
        response: { 200: decisionsResponseSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const { decisions, kpis } = await listDecisionViews(room, p, req.query.limit);
      await auditRequest(room, req, { action: 'query.decisions', details: { returned: decisions.length, kpis } });
      return { decisions };
    },
  );

  app.get(
    '/v1/decisions/:id',
    {
      schema: {
        summary: 'One decision record',
        tags: ['steering'],
        security: [{ bearer: [] }],
        params: decisionParams,
        response: { 200: decisionSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const { decision, kpis } = await readDecision(room, p, req.params.id);
      await auditRequest(room, req, { action: 'query.decision', target: decision.id, details: { kpis } });
      return decision;
    },
  );

  app.post(
    '/v1/decisions',
    {
      schema: {
        summary: 'Record a decision (steering); to change one, record its successor with `supersedes`',
        tags: ['steering'],
        security: [{ bearer: [] }],
        body: decisionInputSchema,
        response: { 201: decisionSchema, ...problemResponses(400, 401, 403, 409, 413, 415) },
      },
    },
    async (req, reply) => reply.code(201).send(await recordDecision(room, caller(req), req.body)),
  );

  // Decision records are append-only: no route changes or removes one, and these say so.
  for (const method of ['PUT', 'PATCH', 'DELETE'] as const)
    app.route({
      method,
      url: '/v1/decisions/:id',
      schema: { hide: true, params: decisionParams },
      handler: async (req) => {
        caller(req);
        throw new Problem(
          405,
          'Method Not Allowed',
          'decision records are append-only: record a new decision with "supersedes" naming this one',
          { field: 'method' },
          { allow: 'GET' },
        );
      },
    });
};
