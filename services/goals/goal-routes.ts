import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { assertReader, canSee } from '../governance/access-policy.js';
import { auditRequest } from '../governance/auth.js';
import { canonicalJson } from '../platform/canonical-json.js';
import { problemResponses, unauthorized } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { requestContext } from '../query/kpi-summary.js';
import type { SeriesReader } from '../query/series-reader.js';
import { summariseGoals } from './goal-progress.js';
import { goalsResponseSchema } from './goal-schemas.js';

/** GET /v1/goals: the partnership's intent, stage gate and goals, judged on disclosed values at a snapshot. */
export const goalRoutes: FastifyPluginAsync<{ room: Room; reader: SeriesReader }> = async (
  fastify,
  { room, reader },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/v1/goals',
    {
      config: { auth: 'optional' },
      schema: {
        summary: 'The intent, the stage and its gate, and each goal with its milestones, judged on disclosed values',
        tags: ['goals'],
        security: [{ bearer: [] }, {}],
        querystring: z.strictObject({ snapshot: z.string().max(12).optional() }),
        response: { 200: goalsResponseSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      assertReader(principal);
      // Without a token only published public KPIs are readable, and goals are the partners' own.
      if (!principal) throw unauthorized();
      const { snapshot, result } = await room.duck.stableRead(async () => {
        const ctx = requestContext(room, reader.forRequest(req), req.query.snapshot);
        return { snapshot: ctx.snapshot, result: await summariseGoals(ctx, (k) => canSee(principal, k)) };
      });
      await auditRequest(room, req, {
        action: 'query.goals',
        // The KPIs named too: the audit log shows an entry only to those who may read them.
        details: {
          role: principal.role,
          snapshot,
          goals: result.goals.map((g) => g.id),
          kpis: [
            ...new Set([
              ...result.goals.flatMap((g) => [g.kpi, ...g.exitCriteria.map((c) => c.kpi)]),
              ...(result.stage?.criteria.map((c) => c.kpi) ?? []),
            ]),
          ],
        },
      });
      void reply.headers({ 'x-parity-digest': result.digest, 'x-parity-snapshot': String(snapshot) });
      // The canonical JSON string itself: every partner gets the same bytes (the schema describes them).
      return (reply as FastifyReply).type('application/json; charset=utf-8').send(canonicalJson(result));
    },
  );
};
