import type { FieldError } from '../platform/errors.js';

/** Messages from the lander to an ingest worker. */
export type ToWorker =
  | {
      type: 'start';
      id: number;
      agreement: unknown;
      version: number;
      partnerId: string;
      kind: string;
      nowMs: number;
      clockSkewMs: number;
      partial: boolean;
      spoolDir: string;
      segmentRows: number;
    }
  | { type: 'chunk'; id: number; buf: ArrayBuffer }
  | { type: 'end'; id: number };

/** Messages from an ingest worker back to the lander. */
export type FromWorker =
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'segment'; id: number; path: string; rows: number }
  | { type: 'done'; id: number; rows: number; accepted: number; rejected: number; errors: FieldError[]; errorsTruncated: boolean; checksum: string; bodySha: string }
  | { type: 'problem'; id: number; status: number; title: string; detail: string; extra: Record<string, unknown> }
  | { type: 'failed'; id: number; message: string };
