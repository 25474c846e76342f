import type { MessagePort } from 'node:worker_threads';
import type { FieldError } from '../platform/errors.js';

/**
 * A batch flows through two threads: the parse worker reads and checks the body and hands
 * compact rows (raw subjects included, in memory only) over a private MessageChannel to the
 * spool worker, which pseudonymises them and writes the landed form to spool segments.
 */

/** Lander → parse worker. */
export type ToParse =
  | {
      type: 'start';
      id: number;
      agreement: unknown;
      version: number;
      kind: string;
      nowMs: number;
      clockSkewMs: number;
      partial: boolean;
      rows: MessagePort;
    }
  | { type: 'chunk'; id: number; buf: ArrayBuffer }
  | { type: 'end'; id: number };

/** Parse worker → lander. */
export type FromParse =
  | { type: 'ack'; id: number; bytes: number }
  /** Rows parsed since the last word (a second or more ago): the pool's stall watchdog hears it. */
  | { type: 'progress'; id: number; rows: number }
  | {
      type: 'done';
      id: number;
      rows: number;
      accepted: number;
      rejected: number;
      errors: FieldError[];
      errorsTruncated: boolean;
      bodySha: string;
      kpis: string[];
    }
  | { type: 'problem'; id: number; status: number; title: string; detail: string; extra: Record<string, unknown> }
  | { type: 'failed'; id: number; message: string };

/** Lander → spool worker. */
export type ToSpool = {
  type: 'start';
  id: number;
  partnerId: string;
  spoolDir: string;
  segmentRows: number;
  rows: MessagePort;
};

/** Spool worker → lander. */
export type FromSpool =
  | { type: 'segment'; id: number; path: string; rows: number }
  | { type: 'done'; id: number; written: number; checksum: string }
  | { type: 'failed'; id: number; message: string };

/**
 * Parse → spool, over the batch's channel: `n` checked rows as columns. KPI ids and
 * dimension JSON are indices into a dictionary that grows by `newEntries`; -1 is no dims.
 */
export type RowsMessage =
  | {
      type: 'rows';
      n: number;
      kpi: Int32Array;
      ms: Float64Array;
      value: Float64Array;
      dims: Int32Array;
      subject: string[];
      newEntries: string[];
    }
  | { type: 'end' };

/** Spool → parse: one rows message taken (flow control). */
export type RowsAck = { type: 'ack' };
