import { paced } from './body-pace.js';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole, caller, auditRequest } from '../governance/auth.js';
import { WriterSaturated } from '../platform/duck-store.js';
import { Problem, notFound } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import type { Clock } from '../platform/clock.js';
import { ingestTypes, type IngestKind } from './body-parsers.js';
import { BatchLander, bodyTooLarge } from './batch-lander.js';
import { receiptSchema } from './receipt-schema.js';
import { problemSchema } from '../platform/errors.js';

const idempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'expected 1–200 visible ASCII characters');

/** A lander for the room: the app makes one for its routes; the CLI makes its own on a stopped room. */
export function createLander(room: Room, clock: Clock = room.clock): BatchLander {
  return new BatchLander(room.duck, room.secret, clock, {
    maxBody: room.config.maxBody,
    spoolPerPartner: room.config.spoolPerPartner,
    clockSkewMs: room.config.clockSkewMs,
    spoolDir: join(room.config.dataDir, 'spool'),
    rotations: room.pseudonymRotations,
    workerHeap: room.config.workerHeap,
    activeAgreement: () => {
      const a = room.agreement();
      return { version: a.version, agreement: a.agreement };
    },
  });
}

/** POST /v1/points and GET /v1/batches/{id}: partner systems pushing metric points. */
export const ingestRoutes: FastifyPluginAsync<{ room: Room; lander: BatchLander }> = async (
  fastify,
  { room, lander },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  // Bodies stream straight into the parsers; nothing here buffers a whole upload.
  fastify.addHook('onClose', async () => lander.close());
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.post(
    '/v1/points',
    {
      // The body is a stream the route paces itself (body-pace.ts), not a JSON body to buffer.
      config: { streamsBody: true },
      schema: {
        summary: 'Push metric points (JSON, NDJSON, CSV or Arrow IPC stream)',
        description:
          'Body: application/json `{"points":[…]}`, application/x-ndjson (one point per line), text/csv (columns kpi, at, value, subject and one per agreed dimension) or application/vnd.apache.arrow.stream. The partner is the token\'s; a `partner` field is rejected. Any invalid point → 422 and nothing lands, unless ?partial=true.',
        tags: ['ingest'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({ partial: z.enum(['true', 'false']).optional() }),
        headers: z.object({ 'idempotency-key': idempotencyKey.optional() }).loose(),
        response: {
          200: receiptSchema,
          202: receiptSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          409: problemSchema,
          413: problemSchema,
          415: problemSchema,
          422: problemSchema,
          429: problemSchema,
          500: problemSchema,
          503: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const principal = caller(req);
      requireRole(principal, 'ingest');
      const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const kind: IngestKind | undefined = (ingestTypes as Record<string, IngestKind>)[mediaType];
      if (!kind) {
        throw new Problem(
          415,
          'Unsupported Media Type',
          `content type ${JSON.stringify(mediaType.slice(0, 80))} is not accepted; send ${Object.keys(ingestTypes).join(', ')}`,
          { field: 'content-type' },
        );
      }
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > room.config.maxBody) {
        throw bodyTooLarge(room.config.maxBody);
      }
      if (room.duck.closed)
        throw new Problem(503, 'Service Unavailable', 'the room is shutting down', {}, { 'retry-after': '5' });
      const key = req.headers['idempotency-key'] ?? null;
      const partnerId = principal.partnerId!;
      try {
        const result = await lander.land({
          partnerId,
          kind,
          contentType: mediaType,
          // Cut off with a 408 if it trickles in: a slow upload must not hold a writer slot.
          body: paced(req.body as AsyncIterable<Buffer>, room.config.ingestPace),
          idempotencyKey: key,
          partial: req.query.partial === 'true',
        });
        const r = result.receipt;
        await auditRequest(room, req, {
          partnerId,
          action: result.status === 202 ? 'ingest.landed' : 'ingest.replayed',
          target: r.batchId,
          // No point counts: the shared log's whole-log readers (steering, the operator) would get
          // every partner's volume. The partner has them on its receipt (docs/privacy.md §4).
          details: { snapshot: r.snapshot, contentType: mediaType, checksum: r.checksum },
        });
        req.log.info(
          { batchId: r.batchId, snapshot: r.snapshot },
          result.status === 202 ? 'batch landed' : 'batch replayed',
        );
        return reply.code(result.status).send(r);
      } catch (err) {
        if (err instanceof WriterSaturated) {
          throw new Problem(
            429,
            'Too Many Requests',
            'the ingest writer is saturated; retry after the delay',
            {},
            { 'retry-after': '1' },
          );
        }
        if (err instanceof Problem) {
          await auditRequest(room, req, {
            partnerId,
            action: 'ingest.refused',
            details: {
              status: err.status,
              contentType: mediaType,
              rejected: (err.extra['rejected'] as number | undefined) ?? null,
            },
          });
        }
        throw err;
      }
    },
  );

  app.get(
    '/v1/batches/:id',
    {
      schema: {
        summary: "A receipt of one of the caller's own batches",
        tags: ['ingest'],
        security: [{ bearer: [] }],
        params: z.object({ id: z.string().max(64) }),
        response: {
          200: receiptSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const principal = caller(req);
      requireRole(principal, 'ingest', 'admin');
      const receipt = await lander.findReceipt(principal.partnerId!, req.params.id);
      await auditRequest(room, req, {
        action: 'batch.receipt.read',
        target: req.params.id,
        details: { found: !!receipt },
      });
      // Another partner's batch is "not found", not "forbidden": its existence is not ours to reveal.
      if (!receipt) throw notFound(`no batch ${req.params.id} of yours`);
      return receipt;
    },
  );
};
