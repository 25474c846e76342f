import { createHash, randomUUID } from 'node:crypto';
import { DOUBLE, DuckDBDataChunk, DuckDBTimestampTZValue, TIMESTAMPTZ, UINTEGER, VARCHAR, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';
import type { Agreement } from '../governance/agreement-schema.js';
import type { Clock } from '../platform/clock.js';
import type { DuckStore } from '../platform/duck-store.js';
import { Problem, type FieldError } from '../platform/errors.js';
import { parseBody, type IngestKind } from './body-parsers.js';
import { compileValidator, RowErrors, type PointValidator } from './point-validator.js';
import type { Pseudonymiser } from './pseudonymiser.js';
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

const CHUNK_ROWS = 2048;
const columnTypes = [UINTEGER, VARCHAR, VARCHAR, TIMESTAMPTZ, DOUBLE, VARCHAR, VARCHAR];

/** Lands batches: parse, check, pseudonymise and append in one DuckDB transaction. */
export class BatchLander {
  readonly #locks = new Map<string, Promise<unknown>>();
  #validator: { version: number; fn: PointValidator; dims: Set<string> } | undefined;

  constructor(
    private readonly duck: DuckStore,
    private readonly pseudonymise: Pseudonymiser,
    private readonly clock: Clock,
    private readonly opts: { maxBody: number; clockSkewMs: number; activeAgreement: () => ActiveAgreement },
  ) {}

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
    const conn = await this.duck.connect();
    try {
      const r = await conn.runAndReadAll('SELECT * FROM batches WHERE id = $1 AND partner = $2', [batchId, partnerId]);
      const row = r.getRowObjectsJson()[0];
      return row ? receiptOf(row) : undefined;
    } finally {
      this.duck.release(conn);
    }
  }

  async #landIdempotent(req: LandRequest): Promise<LandResult> {
    const existing = await this.#findByKey(req.partnerId, req.idempotencyKey!);
    if (!existing) return this.#landNew(req, this.opts.activeAgreement());
    const sha = createHash('sha256');
    for await (const _ of meter(req.body, this.opts.maxBody, sha)) void _;
    if (sha.digest('hex') !== existing.bodySha) {
      throw new Problem(409, 'Conflict', 'this Idempotency-Key was already used with a different body', { field: 'Idempotency-Key', batchId: existing.receipt.batchId });
    }
    return { status: 200, receipt: existing.receipt };
  }

  async #findByKey(partnerId: string, key: string): Promise<{ receipt: Receipt; bodySha: string } | undefined> {
    const conn = await this.duck.connect();
    try {
      const r = await conn.runAndReadAll('SELECT * FROM batches WHERE partner = $1 AND idempotency_key = $2', [partnerId, key]);
      const row = r.getRowObjectsJson()[0];
      return row ? { receipt: receiptOf(row), bodySha: String(row['body_sha256']) } : undefined;
    } finally {
      this.duck.release(conn);
    }
  }

  #validatorFor(active: ActiveAgreement) {
    if (this.#validator?.version !== active.version) {
      this.#validator = {
        version: active.version,
        fn: compileValidator(active.agreement, { now: () => this.clock.now().getTime(), clockSkewMs: this.opts.clockSkewMs }),
        dims: new Set(active.agreement.kpis.flatMap((k) => Object.keys(k.dimensions))),
      };
    }
    return this.#validator;
  }

  async #landNew(req: LandRequest, active: ActiveAgreement): Promise<LandResult> {
    const receivedAt = this.clock.now();
    const validator = this.#validatorFor(active);
    const release = await this.duck.slots.acquire();
    let conn: DuckDBConnection | undefined;
    let snapshot: number | undefined;
    let open = false;
    try {
      conn = await this.duck.connect();
      await conn.run('BEGIN TRANSACTION');
      open = true;
      snapshot = this.duck.snapshots.reserve();
      const bodySha = createHash('sha256');
      const checksum = createHash('sha256');
      const errors = new RowErrors();
      const appender = await conn.createAppender('points');
      let accepted = 0;
      let rows = 0;
      const cols: DuckDBValue[][] = columnTypes.map(() => []);
      let canon = '';
      const flush = () => {
        if (cols[0]!.length === 0) return;
        const chunk = DuckDBDataChunk.create(columnTypes, cols[0]!.length);
        chunk.setColumns(cols);
        appender.appendDataChunk(chunk);
        for (const c of cols) c.length = 0;
        checksum.update(canon);
        canon = '';
      };
      const metered = meter(req.body, this.opts.maxBody, bodySha);
      for await (const parsed of parseBody(req.kind, metered, validator.dims)) {
        for (const p of parsed) {
          rows++;
          if (p.error) {
            errors.add(p.row, p.error.field, p.error.message);
            errors.rejectedRows++;
            continue;
          }
          const v = validator.fn(p.candidate!, p.row, errors, p.extra);
          if (!v) continue;
          // Only the keyed pseudonym goes further; the raw subject is dropped here.
          const pseudonym = this.pseudonymise(req.partnerId, v.subject);
          cols[0]!.push(snapshot);
          cols[1]!.push(req.partnerId);
          cols[2]!.push(v.kpi);
          cols[3]!.push(new DuckDBTimestampTZValue(BigInt(v.atMs) * 1000n));
          cols[4]!.push(v.value);
          cols[5]!.push(pseudonym);
          cols[6]!.push(v.dims);
          canon += `${v.kpi}\t${v.atMs}\t${v.value}\t${pseudonym}\t${v.dims ?? ''}\n`;
          accepted++;
          if (cols[0]!.length >= CHUNK_ROWS) flush();
        }
      }
      flush();
      appender.closeSync();
      if (rows === 0) throw new Problem(400, 'Bad Request', 'the body holds no points', { field: 'body' });
      if (errors.rejectedRows > 0 && !req.partial) {
        throw new Problem(422, 'Unprocessable Content', `${errors.rejectedRows} of ${rows} points are invalid; nothing landed (send ?partial=true to land the valid ones)`, {
          field: errors.kept[0]?.field,
          accepted: 0,
          rejected: errors.rejectedRows,
          errors: errors.kept,
          errorsTruncated: errors.truncated,
        });
      }
      if (accepted === 0) {
        throw new Problem(422, 'Unprocessable Content', `none of the ${rows} points is valid; nothing landed`, { field: errors.kept[0]?.field, accepted: 0, rejected: errors.rejectedRows, errors: errors.kept, errorsTruncated: errors.truncated });
      }
      const landedAt = this.clock.now();
      const receipt: Receipt = {
        batchId: randomUUID(),
        partner: req.partnerId,
        snapshot,
        agreementVersion: active.version,
        contentType: req.contentType,
        accepted,
        rejected: errors.rejectedRows,
        errors: errors.kept,
        errorsTruncated: errors.truncated,
        checksum: checksum.digest('hex'),
        idempotencyKey: req.idempotencyKey,
        receivedAt: receivedAt.toISOString(),
        landedAt: landedAt.toISOString(),
      };
      await conn.run(
        `INSERT INTO batches (id, snapshot, partner, idempotency_key, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::TIMESTAMPTZ, $13::TIMESTAMPTZ)`,
        [receipt.batchId, snapshot, req.partnerId, req.idempotencyKey, bodySha.digest('hex'), req.contentType, accepted, errors.rejectedRows, receipt.checksum, JSON.stringify({ errors: errors.kept, truncated: errors.truncated }), active.version, receipt.receivedAt, receipt.landedAt],
      );
      await conn.run('COMMIT');
      open = false;
      this.duck.snapshots.commit(snapshot);
      return { status: 202, receipt };
    } catch (err) {
      if (open && conn) await conn.run('ROLLBACK').catch(() => undefined);
      if (snapshot !== undefined) this.duck.snapshots.abort(snapshot);
      throw err;
    } finally {
      if (conn) this.duck.release(conn);
      release();
    }
  }
}

/** Counts bytes (413 past the limit) and hashes the raw body as it streams through. */
async function* meter(body: AsyncIterable<Buffer>, max: number, sha: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > max) throw new Problem(413, 'Content Too Large', `the body is larger than the limit of ${max} bytes (PARITY_MAX_BODY)`, { field: 'body', limit: max });
    sha.update(chunk);
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
