import { createHash, randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Agreement } from '../platform/agreement-schema.js';
import type { Clock } from '../platform/clock.js';
import type { DuckStore } from '../platform/duck-store.js';
import { Problem, type FieldError } from '../platform/errors.js';
import type { IngestKind } from './body-parsers.js';
import { IngestWorkerPool, type BatchRun } from './worker-pool.js';
import type { Receipt } from './receipt-schema.js';

export interface ActiveAgreement {
  version: number;
  agreement: Agreement;
}

export interface LandRequest {
  partnerId: string;
  kind: IngestKind;
  contentType: string;
  body: AsyncIterable<Buffer>;
  idempotencyKey: string | null;
  partial: boolean;
}

export interface LandResult {
  /** 202 for a batch landed now, 200 for the replay of an earlier one. */
  status: 200 | 202;
  receipt: Receipt;
}

const SEGMENT_ROWS = 50_000;
// Spool rows are `kpi, epoch ms, value, pseudonym, dims JSON` separated by tabs; nothing in
// them can hold a tab or newline (ids are checked, JSON escapes control characters).
const INSERT_SEGMENT = `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, dims, local_day)
  SELECT $1::UINTEGER, $2::VARCHAR, kpi, make_timestamptz(ms * 1000), value, subject, nullif(dims, ''), timezone($4, make_timestamptz(ms * 1000))::DATE
  FROM read_csv($3, delim = '\t', header = false, quote = '', escape = '', auto_detect = false, buffer_size = 4194304,
    columns = {'kpi': 'VARCHAR', 'ms': 'BIGINT', 'value': 'DOUBLE', 'subject': 'VARCHAR', 'dims': 'VARCHAR'})`;

/** Lands batches: parse, check, pseudonymise and append in one DuckDB transaction. */
export class BatchLander {
  readonly #locks = new Map<string, Promise<unknown>>();
  private readonly pool: IngestWorkerPool;

  constructor(
    private readonly duck: DuckStore,
    secret: Buffer,
    private readonly clock: Clock,
    private readonly opts: {
      maxBody: number;
      clockSkewMs: number;
      spoolDir: string;
      activeAgreement: () => ActiveAgreement;
      rotations?: readonly Buffer[];
    },
  ) {
    this.pool = new IngestWorkerPool(secret, opts.rotations);
  }

  async land(req: LandRequest): Promise<LandResult> {
    if (!req.idempotencyKey) return this.#landNew(req, this.opts.activeAgreement());
    // Requests with one key run one after another, so ten identical retries land once.
    const lockKey = `${req.partnerId}\u0000${req.idempotencyKey}`;
    const prev = this.#locks.get(lockKey) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.#landIdempotent(req));
    this.#locks.set(lockKey, run);
    try {
      return await run;
    } finally {
      if (this.#locks.get(lockKey) === run) this.#locks.delete(lockKey);
    }
  }

  /** The receipt of one of the partner's own batches, or undefined (also for another's). */
  async findReceipt(partnerId: string, batchId: string): Promise<Receipt | undefined> {
    return (await this.#findBatch(partnerId, 'id', batchId))?.receipt;
  }

  /** A batch of the partner's by its id or idempotency key (column names are constants here). */
  async #findBatch(
    partnerId: string,
    by: 'id' | 'idempotency_key',
    value: string,
  ): Promise<{ receipt: Receipt; bodySha: string } | undefined> {
    const conn = await this.duck.connect();
    try {
      const r = await conn.runAndReadAll(`SELECT * FROM batches WHERE partner = $1 AND ${by} = $2`, [partnerId, value]);
      const row = r.getRowObjectsJson()[0];
      return row ? { receipt: receiptOf(row), bodySha: String(row['body_sha256']) } : undefined;
    } finally {
      this.duck.release(conn);
    }
  }

  async #landIdempotent(req: LandRequest): Promise<LandResult> {
    const existing = await this.#findBatch(req.partnerId, 'idempotency_key', req.idempotencyKey!);
    if (!existing) return this.#landNew(req, this.opts.activeAgreement());
    const sha = createHash('sha256');
    for await (const _ of meter(req.body, this.opts.maxBody, sha)) void _;
    if (sha.digest('hex') !== existing.bodySha) {
      throw new Problem(409, 'Conflict', 'this Idempotency-Key was already used with a different body', {
        field: 'Idempotency-Key',
        batchId: existing.receipt.batchId,
      });
    }
    return { status: 200, receipt: existing.receipt };
  }

  async #landNew(req: LandRequest, active: ActiveAgreement): Promise<LandResult> {
    const receivedAt = this.clock.now();
    const release = await this.duck.slots.acquire();
    const batchId = randomUUID();
    const spoolDir = join(this.opts.spoolDir, batchId);
    let conn: DuckDBConnection | undefined;
    let snapshot: number | undefined;
    let open = false;
    let run: BatchRun | undefined;
    try {
      conn = await this.duck.connect();
      await conn.run('BEGIN TRANSACTION');
      open = true;
      const c = conn;
      const snap = (snapshot = this.duck.snapshots.reserve());
      // Segments go into DuckDB while the worker parses the next ones.
      let inserts: Promise<unknown> = Promise.resolve();
      run = this.pool.run(
        {
          agreement: active.agreement,
          version: active.version,
          kind: req.kind,
          nowMs: receivedAt.getTime(),
          clockSkewMs: this.opts.clockSkewMs,
          partial: req.partial,
        },
        { partnerId: req.partnerId, spoolDir, segmentRows: SEGMENT_ROWS },
        (path) => {
          inserts = inserts.then(async () => {
            await c.run(INSERT_SEGMENT, [snap, req.partnerId, path, active.agreement.partnership.timezone]);
            await rm(path, { force: true });
          });
          inserts.catch(() => undefined);
        },
      );
      for await (const chunk of meter(req.body, this.opts.maxBody)) await run.send(chunk);
      run.end();
      const { parse: done, spool } = await run.result;
      await inserts;
      const summary = {
        accepted: 0,
        rejected: done.rejected,
        errors: done.errors,
        errorsTruncated: done.errorsTruncated,
      };
      if (done.rows === 0) throw new Problem(400, 'Bad Request', 'the body holds no points', { field: 'body' });
      if (done.rejected > 0 && !req.partial) {
        throw new Problem(
          422,
          'Unprocessable Content',
          `${done.rejected} of ${done.rows} points are invalid; nothing landed (send ?partial=true to land the valid ones)`,
          { field: done.errors[0]?.field, ...summary },
        );
      }
      if (done.accepted === 0)
        throw new Problem(422, 'Unprocessable Content', `none of the ${done.rows} points is valid; nothing landed`, {
          field: done.errors[0]?.field,
          ...summary,
        });
      if (spool.written !== done.accepted)
        throw new Error(`spooled ${spool.written} of ${done.accepted} accepted points`);
      const receipt: Receipt = {
        batchId,
        partner: req.partnerId,
        snapshot: snap,
        agreementVersion: active.version,
        contentType: req.contentType,
        accepted: done.accepted,
        rejected: done.rejected,
        errors: done.errors,
        errorsTruncated: done.errorsTruncated,
        checksum: spool.checksum,
        idempotencyKey: req.idempotencyKey,
        receivedAt: receivedAt.toISOString(),
        landedAt: this.clock.now().toISOString(),
      };
      await c.run(
        `INSERT INTO batches (id, snapshot, partner, idempotency_key, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at, kpis)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::TIMESTAMPTZ, $13::TIMESTAMPTZ, string_split($14, ','))`,
        [
          batchId,
          snap,
          req.partnerId,
          req.idempotencyKey,
          done.bodySha,
          req.contentType,
          done.accepted,
          done.rejected,
          spool.checksum,
          JSON.stringify({ errors: done.errors, truncated: done.errorsTruncated }),
          active.version,
          receipt.receivedAt,
          receipt.landedAt,
          done.kpis.join(','),
        ],
      );
      await c.run('COMMIT');
      open = false;
      this.duck.landed({
        snapshot: snap,
        partner: req.partnerId,
        kpis: done.kpis,
        receivedAt,
        landedAt: new Date(receipt.landedAt),
      });
      return { status: 202, receipt };
    } catch (err) {
      if (open && conn) await conn.run('ROLLBACK').catch(() => undefined);
      if (snapshot !== undefined) this.duck.snapshots.abort(snapshot);
      // A batch's uncommitted points are held by DuckDB until COMMIT, within PARITY_DUCKDB_MEMORY.
      if (err instanceof Error && err.message.startsWith('Out of Memory Error')) {
        throw new Problem(
          413,
          'Content Too Large',
          'the batch is too large for the memory the room gives DuckDB (PARITY_DUCKDB_MEMORY); split it into smaller batches',
          { field: 'body' },
        );
      }
      throw err;
    } finally {
      // Workers first: a spool worker left mid-batch is ended before its directory goes.
      await run?.release();
      await rm(spoolDir, { recursive: true, force: true });
      if (conn) this.duck.release(conn);
      release();
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** The one 413 of ingest: by Content-Length before reading, or while the body streams. */
export function bodyTooLarge(limit: number): Problem {
  return new Problem(
    413,
    'Content Too Large',
    `the body is larger than the limit of ${limit} bytes (PARITY_MAX_BODY)`,
    { field: 'body', limit },
  );
}

/** Passes the body through, counting bytes (413 past the limit) and hashing it if asked. */
async function* meter(
  body: AsyncIterable<Buffer>,
  max: number,
  sha?: ReturnType<typeof createHash>,
): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > max) throw bodyTooLarge(max);
    sha?.update(chunk);
    yield chunk;
  }
}

function receiptOf(row: Record<string, unknown>): Receipt {
  const errs = JSON.parse(String(row['errors'])) as { errors: FieldError[]; truncated: boolean };
  return {
    batchId: String(row['id']),
    partner: String(row['partner']),
    snapshot: Number(row['snapshot']),
    agreementVersion: Number(row['agreement_version']),
    contentType: String(row['content_type']),
    accepted: Number(row['accepted']),
    rejected: Number(row['rejected']),
    errors: errs.errors,
    errorsTruncated: errs.truncated,
    checksum: String(row['checksum']),
    idempotencyKey: row['idempotency_key'] == null ? null : String(row['idempotency_key']),
    receivedAt: new Date(String(row['received_at'])).toISOString(),
    landedAt: new Date(String(row['landed_at'])).toISOString(),
  };
}
