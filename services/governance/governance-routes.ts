import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authenticate } from '../platform/auth.js';
import { canSee } from '../query/series-service.js';
import type { Room } from '../platform/room.js';
import { problemSchema } from '../ingest/receipt-schema.js';

/** GET /v1/agreement: the agreement in force, for every token holder. */
export const governanceRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/v1/agreement',
    {
      schema: {
        summary: 'The agreement in force, with its version and digest',
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: z.object({ version: z.number().int(), digest: z.string(), activatedAt: z.string().nullable(), agreement: z.record(z.string(), z.unknown()) }), 401: problemSchema },
      },
    },
    async (req) => {
      const principal = await authenticate(room.control.db, room.clock, req);
      const a = room.agreement();
      await room.audit({ actor: principal.tokenId, partnerId: principal.partnerId, action: 'agreement.read', target: `v${a.version}` });
      // Need-to-know KPIs are left out for readers who may not see them: not even their definition
      // reaches such a reader. Admins, steering and the operator, who decide on the agreement, get it whole.
      const whole = principal.role === 'admin' || principal.role === 'steering' || principal.role === 'operator';
      const agreement = whole ? a.agreement : { ...a.agreement, kpis: a.agreement.kpis.filter((k) => k.disclosure !== 'need_to_know' || canSee(principal, k)) };
      return { version: a.version, digest: a.digest, activatedAt: a.activatedAt?.toISOString() ?? null, agreement: agreement as unknown as Record<string, unknown> };
    },
  );
};
