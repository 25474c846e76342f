import { z } from 'zod';
import { fieldErrorSchema } from '../platform/errors.js';

/** What a partner gets back for a batch: counts, row errors and a checksum, never the points. */
export const receiptSchema = z.object({
  batchId: z.string(),
  partner: z.string(),
  snapshot: z.number().int().describe('the room snapshot this batch created'),
  agreementVersion: z.number().int(),
  contentType: z.string(),
  accepted: z.number().int(),
  rejected: z.number().int(),
  errors: z.array(fieldErrorSchema).describe('the first 100 row errors'),
  errorsTruncated: z.boolean(),
  checksum: z.string().describe('SHA-256 over the landed points in canonical form; equal for every content type'),
  idempotencyKey: z.string().nullable(),
  receivedAt: z.string(),
  landedAt: z.string(),
});

export type Receipt = z.infer<typeof receiptSchema>;
