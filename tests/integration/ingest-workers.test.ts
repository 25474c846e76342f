import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dictionary, Float64, Int32, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { IngestWorkerPool } from '../../services/ingest/worker-pool.js';
import { Problem } from '../../services/platform/errors.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { timeout } from '../helpers/timeouts.js';

const loaded = loadAgreementFile(join(import.meta.dirname, '../fixtures/public-agreement.yaml'));
if (!loaded.ok) throw new Error('the test agreement does not load');
const agreement = loaded.agreement;
const spoolRoot = mkdtempSync(join(tmpdir(), 'parity-workers-'));
afterAll(() => rmSync(spoolRoot, { recursive: true, force: true }));

let batches = 0;
/** A batch started on the pool's parse and spool workers, as the lander starts one. */
function start(pool: IngestWorkerPool, partial = false, kind: 'ndjson' | 'arrow' = 'ndjson') {
  return pool.run(
    { agreement, version: 1, kind, nowMs: Date.parse('2026-11-21T00:00:00Z'), clockSkewMs: 0, partial },
    { partnerId: 'acme', spoolDir: join(spoolRoot, String(++batches)), segmentRows: 1_000 },
    () => undefined,
  );
}

/** One small NDJSON batch through the pool's workers, released as the lander does. */
async function batch(pool: IngestWorkerPool, points = 30): Promise<number> {
  const run = start(pool);
  try {
    await run.send(Buffer.from(ndjson(leadTimePoints(points, `W${batches}`))));
    run.end();
    return (await run.result).parse.accepted;
  } finally {
    await run.release();
  }
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('ingest worker threads under a memory budget', () => {
  it(
    'end with a batch of the bound or more; smaller batches keep their pair',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 16, youngMb: 4, retireAfterRows: 20 });
      try {
        expect(await batch(pool, 19)).toBe(19);
        expect(pool.threads).toEqual({ alive: 2, started: 2 }); // below the bound: kept for the next batch
        expect(await batch(pool, 12)).toBe(12);
        expect(pool.threads).toEqual({ alive: 2, started: 2 }); // …which took the same pair
        expect(await batch(pool, 20)).toBe(20); // at the bound: the pair ends
        expect(await until(() => pool.threads.alive === 0, timeout(10_000))).toBe(true);
        expect(pool.threads.started).toBe(2);
        expect(await batch(pool, 30)).toBe(30); // a new pair, ended in turn
        expect(pool.threads.started).toBe(4);
        expect(await until(() => pool.threads.alive === 0, timeout(10_000))).toBe(true);
        expect(await batch(pool, 5)).toBe(5);
        expect(pool.threads).toEqual({ alive: 2, started: 6 });
      } finally {
        await pool.close();
      }
      expect(pool.threads.alive).toBe(0);
    },
  );

  it(
    'counts the rows the body held, refused ones too: a large batch of bad rows frees its pair as well',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 16, youngMb: 4, retireAfterRows: 20 });
      try {
        const run = start(pool, true);
        const bad = leadTimePoints(25, 'BAD').map((p, i) => (i % 2 ? { ...p, kpi: 'no_such_kpi' } : p));
        await run.send(Buffer.from(ndjson(bad)));
        run.end();
        const done = (await run.result).parse;
        await run.release();
        expect([done.rows, done.accepted, done.rejected]).toEqual([25, 13, 12]);
        expect(await until(() => pool.threads.alive === 0, timeout(10_000))).toBe(true);
      } finally {
        await pool.close();
      }
    },
  );

  it(
    'without a bound (no PARITY_MEMORY_LIMIT) keep their pair however large the batch',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 48, youngMb: 8, retireAfterRows: null });
      try {
        await batch(pool, 25); // over the bound the budgeted pools above use
        expect(await batch(pool, 7)).toBe(7);
        expect(pool.threads).toEqual({ alive: 2, started: 2 });
      } finally {
        await pool.close();
      }
      expect(pool.threads.alive).toBe(0);
    },
  );
});

describe('a parse worker that makes no progress', () => {
  it(
    'is stopped: its batch gets a 400 naming the body once the stall passes, and both its workers end',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], undefined, {
        stallMs: 500,
        parseWorker: new URL('../helpers/stuck-parse-worker.ts', import.meta.url),
      });
      try {
        const run = start(pool);
        await run.send(Buffer.from(ndjson(leadTimePoints(5, 'STUCK'))));
        run.end();
        const t0 = Date.now();
        const err = (await run.result.catch((e: unknown) => e)) as Problem;
        expect(err).toBeInstanceOf(Problem);
        expect(err.status).toBe(400);
        expect(err.detail).toMatch(/its parser made no progress for 500 ms/);
        expect(err.extra).toMatchObject({ field: 'body' });
        expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
        await run.release();
        // The spinning thread is ended (terminate stops a loop), and its spool worker with it.
        expect(await until(() => pool.threads.alive === 0, timeout(10_000))).toBe(true);
      } finally {
        await pool.close();
      }
    },
  );

  it(
    'a quiet client is no stall: a body whose chunks come slower than the stall lands whole',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], undefined, { stallMs: 1_500 });
      try {
        // The pair started first (a worker's start is no part of a body's parse).
        expect(await batch(pool, 3)).toBe(3);
        const run = start(pool);
        const lines = ndjson(leadTimePoints(6, 'SLOW')).split('\n');
        for (const [i, line] of lines.entries()) {
          await run.send(Buffer.from(`${line}${i < lines.length - 1 ? '\n' : ''}`));
          await new Promise((r) => setTimeout(r, 2_000));
        }
        run.end();
        expect((await run.result).parse.accepted).toBe(6);
        await run.release();
      } finally {
        await pool.close();
      }
    },
  );
});

describe('a parse worker that makes progress quietly', () => {
  it(
    'is no stall: an Arrow file whose rows all fail, read whole before its first row, says it is getting on',
    { timeout: timeout(120_000) },
    async () => {
      // The file reader takes every chunk before it yields a row, and refused rows reach no spool:
      // a reviewer's 3M-row file of an unknown KPI was silent for 6 s, and a 2-s watchdog cut it.
      const n = 1_000_000;
      const file = tableToIPC(
        new Table({
          kpi: vectorFromArray(
            Array.from({ length: n }, () => 'no_such_kpi'),
            new Dictionary(new Utf8(), new Int32()),
          ),
          at: vectorFromArray(
            Array.from({ length: n }, () => '2026-11-20T10:00:00Z'),
            new Dictionary(new Utf8(), new Int32()),
          ),
          value: vectorFromArray(
            Array.from({ length: n }, (_, i) => i % 50),
            new Float64(),
          ),
          subject: vectorFromArray(
            Array.from({ length: n }, (_, i) => `Q${i}`),
            new Utf8(),
          ),
        }),
        'file',
      );
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], undefined, { stallMs: 1_000 });
      try {
        expect(await batch(pool, 3)).toBe(3); // the pair started
        const run = start(pool, true, 'arrow');
        for (let i = 0; i < file.length; i += 1 << 20) await run.send(Buffer.from(file.subarray(i, i + (1 << 20))));
        run.end();
        const t0 = Date.now();
        const done = (await run.result).parse;
        await run.release();
        expect([done.rows, done.accepted, done.rejected]).toEqual([n, 0, n]);
        // Quiet longer than the stall for the watchdog to have had its chance (else the test proves nothing).
        expect(Date.now() - t0, 'the parse after the body ended took longer than the stall').toBeGreaterThan(1_000);
      } finally {
        await pool.close();
      }
    },
  );
});
