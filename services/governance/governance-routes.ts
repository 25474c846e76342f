import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authenticate } from '../platform/auth.js';
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
      return { version: a.version, digest: a.digest, activatedAt: a.activatedAt?.toISOString() ?? null, agreement: a.agreement as unknown as Record<string, unknown> };
    },
  );
};
