import { createHash, randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Agreement } from '../platform/agreement-schema.js';
import type { Clock } from '../platform/clock.js';
import type { WorkerHeap } from '../platform/config.js';
import type { BatchRecord, DuckStore, WriterSlots } from '../platform/duck-store.js';
import { Problem, type FieldError } from '../platform/errors.js';
import type { IngestKind } from './body-parsers.js';
import { SpooledBody } from './body-spool.js';
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

/** How long a streaming batch's client may stay quiet while another batch waits, before it gives its writer up. */
export const YIELD_AFTER_MS = 1000;

/**
 * How long a streaming batch may hold its writer while waiting on its client for more than half
 * of that time, before it gives the writer to a ready batch: the trickle that is never quiet for
 * YIELD_AFTER_MS.
 */
export const CLIENT_BOUND_MS = 5000;

/** Thrown inside a batch's transaction to roll it back and give its writer to a batch that is ready. */
class GaveWriterUp extends Error {}

/** Lands batches: parse, check, pseudonymise and append in one DuckDB transaction. */
export class BatchLander {
  readonly #locks = new Map<string, Promise<unknown>>();
  #spoolMade: Promise<unknown> | undefined;
  /** Bytes of each partner's bodies on disk now (their spool files). */
  readonly #spooled = new Map<string, number>();
  private readonly pool: IngestWorkerPool;
  /** Batches that gave their writer up to a ready one while their client was quiet (/metrics). */
  gaveUp = 0;

  constructor(
    private readonly duck: DuckStore,
    secret: Buffer,
    private readonly clock: Clock,
    private readonly opts: {
      maxBody: number;
      /** Bytes of one partner's bodies kept on disk at once; a waiting body past it is a 429. */
      spoolPerPartner?: number;
      clockSkewMs: number;
      spoolDir: string;
      activeAgreement: () => ActiveAgreement;
      rotations?: readonly Buffer[];
      workerHeap?: WorkerHeap;
    },
  ) {
    this.pool = new IngestWorkerPool(secret, opts.rotations, opts.workerHeap);
  }

  async land(req: LandRequest): Promise<LandResult> {
    if (!req.idempotencyKey) return this.#landNew(req);
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

  /** A batch of the partner's by its id or idempotency key. */
  async #findBatch(
    partnerId: string,
    by: 'id' | 'idempotency_key',
    value: string,
  ): Promise<{ receipt: Receipt; bodySha: string } | undefined> {
    const batch = await this.duck.findBatch(partnerId, by, value);
    return batch ? { receipt: receiptOf(batch), bodySha: batch.bodySha256 } : undefined;
  }

  async #landIdempotent(req: LandRequest): Promise<LandResult> {
    const existing = await this.#findBatch(req.partnerId, 'idempotency_key', req.idempotencyKey!);
    if (!existing) return this.#landNew(req);
    const sha = createHash('sha256');
    for await (const _ of meter(req.body, this.opts.maxBody, sha)) void _;
    if (sha.digest('hex') !== existing.bodySha) {
      throw new Problem(409, 'Conflict', 'this Idempotency-Key was already used with a different body', {
        field: 'headers.idempotency-key',
        batchId: existing.receipt.batchId,
      });
    }
    // The same bytes read another way, or under other terms, are another request: its own answer
    // (a 422, another content type's receipt) is not the batch's that landed.
    if (mediaType(existing.receipt.contentType) !== mediaType(req.contentType))
      throw new Problem(
        409,
        'Conflict',
        `this Idempotency-Key was already used with the same body sent as ${mediaType(existing.receipt.contentType)}`,
        { field: 'headers.content-type', batchId: existing.receipt.batchId },
      );
    if (existing.receipt.rejected > 0 && !req.partial)
      throw new Problem(
        409,
        'Conflict',
        'this Idempotency-Key was already used with the same body and partial=true, which landed its valid rows and refused the others; without partial the body is refused whole',
        { field: 'querystring.partial', batchId: existing.receipt.batchId },
      );
    return { status: 200, receipt: existing.receipt };
  }

  /**
   * A new batch. With a writer free it streams: its body goes through the workers into DuckDB as
   * it arrives (and to disk beside). With none, it takes a place in the queue (429 when that is
   * full), reads its body to disk, and asks for a writer once the body is in: a batch whose
   * client is still sending holds no writer. A streaming batch whose client goes quiet for a
   * second while a batch that could take its writer is ready gives the writer up (its transaction
   * rolls back), reads the rest of its body to disk and queues again (never refused for a full
   * queue: it was let in); it lands from disk.
   */
  async #landNew(req: LandRequest): Promise<LandResult> {
    const receivedAt = this.clock.now();
    // Made once; a failure is tried again by the next batch, not remembered.
    await (this.#spoolMade ??= mkdir(this.opts.spoolDir, { recursive: true }).catch((err: unknown) => {
      this.#spoolMade = undefined;
      throw err;
    }));
    const body = await SpooledBody.open(
      req.body,
      join(this.opts.spoolDir, `${randomUUID()}.body`),
      this.opts.maxBody,
      () => bodyTooLarge(this.opts.maxBody),
    );
    let place: ReturnType<WriterSlots['enqueue']> | undefined;
    // Every byte of the partner's bodies on disk counts against its spool budget; only a body
    // that waits for a writer from its start is refused for it (one that had a writer was let in).
    const partner = req.partnerId;
    let counted = 0;
    const count = (n: number) => {
      counted += n;
      this.#spooled.set(partner, (this.#spooled.get(partner) ?? 0) + n);
    };
    body.onBytes = count;
    try {
      const slot = this.duck.slots.tryAcquire(partner);
      if (slot) {
        const landed = await this.#landOn(slot, req, receivedAt, body);
        if (landed) return landed;
        this.gaveUp++;
        place = this.duck.slots.enqueue(partner, true);
      } else {
        place = this.duck.slots.enqueue(partner);
        const budget = this.opts.spoolPerPartner ?? Infinity;
        body.onBytes = (n) => {
          if ((this.#spooled.get(partner) ?? 0) + n > budget) throw spoolFull(budget);
          count(n);
        };
      }
      await body.rest();
      const next = await place.ready();
      place = undefined;
      return (await this.#landOn(next, req, receivedAt, body.replay()))!;
    } finally {
      place?.cancel();
      await body.close();
      const left = (this.#spooled.get(partner) ?? 0) - counted;
      if (left > 0) this.#spooled.set(partner, left);
      else this.#spooled.delete(partner);
    }
  }

  /**
   * Lands a batch on the writer slot it holds (`release` gives it back, once, whatever happens).
   * Undefined when it gave the writer up: its body is a client's still arriving, which went quiet
   * for YIELD_AFTER_MS while another batch was ready to take the writer.
   */
  async #landOn(
    release: () => void,
    req: LandRequest,
    receivedAt: Date,
    body: SpooledBody | AsyncIterable<Buffer>,
  ): Promise<LandResult | undefined> {
    // The agreement in force when the batch takes its writer, not when it arrived: a batch that
    // waited on disk while a new version came into force is checked against that version and
    // lands on its zone's days (a new zone waits for every writer slot: DuckStore.localise).
    const active = this.opts.activeAgreement();
    const batchId = randomUUID();
    const spoolDir = join(this.opts.spoolDir, batchId);
    let snapshot: number | undefined;
    let run: BatchRun | undefined;
    let freed = false;
    /** Segments of the batch spooled (SEGMENT_ROWS points each, the last one fewer). */
    let segments = 0;
    // The batch's writer slot, its worker pair and its spool directory, given back once.
    const free = async () => {
      if (freed) return;
      freed = true;
      try {
        // Workers first: a spool worker left mid-batch is ended before its directory goes.
        await run?.release();
        await rm(spoolDir, { recursive: true, force: true });
      } finally {
        release();
      }
    };
    try {
      const { receipt, kpis } = await this.duck.transaction(async (tx) => {
        // Segments go into DuckDB while the worker parses the next ones, under a provisional
        // number: the batch takes its own once its body is in, so a slow upload holds up no reader.
        let inserts: Promise<unknown> = Promise.resolve();
        let ended = false;
        try {
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
              segments++;
              inserts = inserts.then(async () => {
                // A segment spooled after the batch failed is not landed: its directory goes.
                if (ended) return;
                await tx.appendPoints(path, {
                  partner: req.partnerId,
                  timezone: active.agreement.partnership.timezone,
                });
                await rm(path, { force: true });
              });
              inserts.catch(() => undefined);
            },
          );
          if (body instanceof SpooledBody) {
            const since = performance.now();
            const waitedBefore = body.waitedMs;
            // Held for a while, and waiting on its client for most of it: a steady trickle that
            // is never quiet for a whole second holds the writer no longer than a quiet one.
            const clientBound = () => {
              const held = performance.now() - since;
              return held >= CLIENT_BOUND_MS && body.waitedMs - waitedBefore > held / 2;
            };
            for (;;) {
              const chunk = await body.next(YIELD_AFTER_MS);
              if (chunk === undefined) break;
              if ((chunk === 'idle' || clientBound()) && this.duck.slots.wouldServe(req.partnerId))
                throw new GaveWriterUp();
              if (chunk !== 'idle') await run.send(chunk);
            }
          } else for await (const chunk of body) await run.send(chunk);
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
            throw new Problem(
              422,
              'Unprocessable Content',
              `none of the ${done.rows} points is valid; nothing landed`,
              {
                field: done.errors[0]?.field,
                ...summary,
              },
            );
          if (spool.written !== done.accepted)
            throw new Error(`spooled ${spool.written} of ${done.accepted} accepted points`);
          const snap = (snapshot = this.duck.snapshots.reserve());
          await tx.stampSnapshot(snap, done.accepted);
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
          await tx.holdAtoms(snap, done.accepted);
          await tx.insertBatch({
            id: batchId,
            snapshot: snap,
            partner: req.partnerId,
            idempotencyKey: req.idempotencyKey,
            bodySha256: done.bodySha,
            contentType: req.contentType,
            accepted: done.accepted,
            rejected: done.rejected,
            checksum: spool.checksum,
            errors: JSON.stringify({ errors: done.errors, truncated: done.errorsTruncated }),
            agreementVersion: active.version,
            receivedAt: receipt.receivedAt,
            landedAt: receipt.landedAt,
            kpis: done.kpis,
          });
          return { receipt, kpis: done.kpis };
        } catch (err) {
          // The transaction rolls back once no segment insert is running on it.
          ended = true;
          await inserts.catch(() => undefined);
          throw err;
        }
      });
      this.duck.landed({
        snapshot: receipt.snapshot,
        partner: req.partnerId,
        kpis,
        receivedAt,
        landedAt: new Date(receipt.landedAt),
      });
      // Committed: the slot, the workers and the spool go to the next batch now, which lands
      // while this one waits for its release step (steps run one at a time; the batches that
      // commit during one share the next).
      await free();
      // Visible once its release step ran (at once unless an earlier batch is still landing).
      await this.duck.snapshots.visible(receipt.snapshot);
      return { status: 202, receipt };
    } catch (err) {
      if (err instanceof GaveWriterUp) return undefined;
      if (snapshot !== undefined) this.duck.snapshots.abort(snapshot);
      // A batch's uncommitted points are held by DuckDB until COMMIT, within PARITY_DUCKDB_MEMORY.
      // A batch of one segment or less does not fill it: the pool was full of other work (reads,
      // rollups), and the batch can come again as it is (the error handler's 503).
      if (err instanceof Error && err.message.startsWith('Out of Memory Error') && segments > 1) {
        throw new Problem(
          413,
          'Content Too Large',
          'the batch is too large for the memory the room gives DuckDB (PARITY_DUCKDB_MEMORY); split it into smaller batches',
          { field: 'body' },
        );
      }
      throw err;
    } finally {
      await free();
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

/** A partner's bodies waiting on disk have reached its budget (PARITY_INGEST_SPOOL). */
function spoolFull(budget: number): Problem {
  return new Problem(
    429,
    'Too Many Requests',
    `body: your batches landing or waiting for a writer already hold ${budget} bytes on disk (PARITY_INGEST_SPOOL); retry once they have landed`,
    { field: 'body' },
    { 'retry-after': '5' },
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

/** A content type without its parameters, lower-cased: `application/x-ndjson`. */
const mediaType = (t: string) => t.split(';')[0]!.trim().toLowerCase();

function receiptOf(b: BatchRecord): Receipt {
  const errs = JSON.parse(b.errors) as { errors: FieldError[]; truncated: boolean };
  return {
    batchId: b.id,
    partner: b.partner,
    snapshot: b.snapshot,
    agreementVersion: b.agreementVersion,
    contentType: b.contentType,
    accepted: b.accepted,
    rejected: b.rejected,
    errors: errs.errors,
    errorsTruncated: errs.truncated,
    checksum: b.checksum,
    idempotencyKey: b.idempotencyKey,
    receivedAt: new Date(b.receivedAt).toISOString(),
    landedAt: new Date(b.landedAt).toISOString(),
  };
}
