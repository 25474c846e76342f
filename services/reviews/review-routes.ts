import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { assertReader } from '../governance/access-policy.js';
import { auditRequest, caller, requireRole } from '../governance/auth.js';
import { canonicalJson } from '../platform/canonical-json.js';
import { problemResponses } from '../platform/errors.js';
import { negotiate } from '../platform/negotiate.js';
import type { Room } from '../platform/room.js';
import type { SeriesReader } from '../query/series-reader.js';
import { reviewPdf } from './review-pdf.js';
import { reviewHtml, reviewText } from './review-render.js';
import { listReviews } from './review-repository.js';
import { reviewListSchema, reviewSchema } from './review-schemas.js';
import { closedMonth, monthlyReview } from './monthly-review-service.js';
import { sendReview } from './review-sender.js';
import type { Review } from './review-schemas.js';

/** What a review is served as, JSON first (no Accept, or `*\/*`), and the ?format= of each. */
const REVIEW_TYPES = ['application/json', 'text/html', 'text/plain', 'application/pdf'];
const REVIEW_FORMATS: Record<string, 'json' | 'html' | 'text' | 'pdf'> = {
  'application/json': 'json',
  'text/html': 'html',
  'text/plain': 'text',
  'application/pdf': 'pdf',
};

/** GET /v1/reviews and /v1/reviews/{month}: the monthly review, one document for every partner. */
/**
 * A review's PDF, drawn once per kept document (month and digest: the same bytes for every
 * reader) and kept for the most recent PDF_KEPT of them; requests for one being drawn wait for it.
 * Drawn on every request, its 20–100 ms of the room's thread, asked for on four connections at
 * once, took another partner's pushes from 0.1 s to 7 s (a red team's finding).
 */
const PDF_KEPT = 24;
const pdfs = new Map<string, Promise<Buffer>>();
function pdfOf(review: Review): Promise<Buffer> {
  const key = `${review.month}|${review.digest}`;
  let pdf = pdfs.get(key);
  if (pdf) {
    pdfs.delete(key);
    pdfs.set(key, pdf);
    return pdf;
  }
  pdf = reviewPdf(review);
  pdfs.set(key, pdf);
  // A failed drawing is not kept.
  pdf.catch(() => pdfs.get(key) === pdf && pdfs.delete(key));
  if (pdfs.size > PDF_KEPT) pdfs.delete(pdfs.keys().next().value!);
  return pdf;
}

export const reviewRoutes: FastifyPluginAsync<{ room: Room; reader: SeriesReader; kick?: () => void }> = async (
  fastify,
  { room, reader, kick },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/reviews',
    {
      schema: {
        summary: 'The monthly reviews kept so far, newest first',
        tags: ['reviews'],
        security: [{ bearer: [] }],
        response: { 200: reviewListSchema, ...problemResponses(401, 403) },
      },
    },
    async (req) => {
      const p = caller(req);
      assertReader(p);
      const rows = await listReviews(room.control.db);
      await auditRequest(room, req, { action: 'query.reviews', details: { role: p.role, returned: rows.length } });
      return {
        reviews: rows.map((r) => ({
          month: r.month,
          snapshot: r.snapshot,
          digest: r.digest,
          createdAt: new Date(r.created_at as unknown as string).toISOString(),
          sentAt: r.sent_at ? new Date(r.sent_at as unknown as string).toISOString() : null,
        })),
      };
    },
  );

  app.get(
    '/v1/reviews/:month',
    {
      schema: {
        summary:
          "A closed month's review: each shared KPI against its band, breaches with their causes and actions, goals and stage, service levels, agreement changes, what improved (JSON, HTML, text or PDF by Accept or ?format=)",
        tags: ['reviews'],
        security: [{ bearer: [] }],
        params: z.strictObject({ month: z.string().max(7) }),
        querystring: z.strictObject({ format: z.enum(['json', 'html', 'text', 'pdf']).optional() }),
        response: {
          200: reviewSchema.describe(
            'application/json; text/html, text/plain and application/pdf (with a chart per KPI) render the same document',
          ),
          ...problemResponses(400, 401, 403, 406),
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      assertReader(p);
      // Decided before the review is put together (406 when Accept admits none of its forms).
      const format =
        req.query.format ?? REVIEW_FORMATS[negotiate(req.headers.accept, REVIEW_TYPES, 'json|html|text|pdf')]!;
      const month = closedMonth(room, req.params.month);
      const review = await room.duck.stableRead(() => monthlyReview(room, reader.forRequest(req), month));
      await auditRequest(room, req, { action: 'query.review', details: { role: p.role, month, format } });
      void reply.headers({
        'x-parity-digest': review.digest,
        'x-parity-snapshot': String(review.snapshot),
        vary: 'accept',
      });
      const r = reply as FastifyReply;
      if (format === 'html') return r.type('text/html; charset=utf-8').send(reviewHtml(review));
      if (format === 'text') return r.type('text/plain; charset=utf-8').send(reviewText(review));
      if (format === 'pdf')
        return r
          .type('application/pdf')
          .header('content-disposition', `attachment; filename="review-${month}.pdf"`)
          .send(await pdfOf(review));
      // The canonical JSON itself: the same bytes for every partner (the schema describes them).
      return r.type('application/json; charset=utf-8').send(canonicalJson(review));
    },
  );

  /** How long after a month's review was sent a partner admin may send it again. */
  const RESEND_PAUSE_MS = 12 * 3_600_000;

  app.post(
    '/v1/reviews/:month/send',
    {
      schema: {
        summary:
          "Send a closed month's review again by e-mail to every partner's contacts and the steering committee (the same kept document)",
        tags: ['reviews'],
        security: [{ bearer: [] }],
        params: z.strictObject({ month: z.string().max(7) }),
        body: z.strictObject({}).optional(),
        response: {
          202: z.object({ month: z.string(), digest: z.string(), messages: z.number().int() }),
          ...problemResponses(400, 401, 403, 413, 415, 429),
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      requireRole(p, 'steering', 'admin');
      const month = closedMonth(room, req.params.month);
      const { review, messages } = await room.duck.stableRead(() =>
        // A partner admin's resend waits RESEND_PAUSE_MS after the last send (a red team's admin
        // sent one month's review 20 times in a row to every contact); steering may resend at once.
        sendReview(room, reader.forRequest(req), month, {
          resend: true,
          pauseMs: p.role === 'steering' ? 0 : RESEND_PAUSE_MS,
        }),
      );
      kick?.();
      await auditRequest(room, req, { action: 'review.send', details: { role: p.role, month, messages } });
      return reply.code(202).send({ month, digest: review.digest, messages });
    },
  );
};
