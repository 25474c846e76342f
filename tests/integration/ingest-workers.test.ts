import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { IngestWorkerPool } from '../../services/ingest/worker-pool.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { timeout } from '../helpers/timeouts.js';

const loaded = loadAgreementFile(join(import.meta.dirname, '../fixtures/public-agreement.yaml'));
if (!loaded.ok) throw new Error('the test agreement does not load');
const agreement = loaded.agreement;
const spoolRoot = mkdtempSync(join(tmpdir(), 'parity-workers-'));
afterAll(() => rmSync(spoolRoot, { recursive: true, force: true }));

let batches = 0;
/** One small NDJSON batch through the pool's parse and spool workers, released as the lander does. */
async function batch(pool: IngestWorkerPool, points = 30): Promise<number> {
  const run = pool.run(
    {
      agreement,
      version: 1,
      kind: 'ndjson',
      nowMs: Date.parse('2026-11-21T00:00:00Z'),
      clockSkewMs: 0,
      partial: false,
    },
    { partnerId: 'acme', spoolDir: join(spoolRoot, String(++batches)), segmentRows: 1_000 },
    () => undefined,
  );
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
  it('end once idle for the bound, and a later batch starts a new pair', { timeout: timeout(60_000) }, async () => {
    const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 16, youngMb: 4, idleMs: 300 });
    try {
      expect(await batch(pool)).toBe(30);
      expect(pool.threads).toBe(2); // the pair waits for the next batch…
      expect(await until(() => pool.threads === 0, timeout(10_000))).toBe(true); // …for the bound, then ends
      expect(await batch(pool, 12)).toBe(12);
      expect(pool.threads).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it(
    'reuse a pair taken again within the bound, and the bound starts again at its release',
    { timeout: timeout(60_000) },
    async () => {
      const idleMs = 1_500;
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 16, youngMb: 4, idleMs });
      try {
        await batch(pool);
        // Batches one after another within the bound: the same two threads, never a second pair,
        // and none ended under a batch (each batch would fail if its worker were terminated).
        const until1 = Date.now() + idleMs * 2;
        let n = 0;
        while (Date.now() < until1) {
          expect(await batch(pool, 5)).toBe(5);
          expect(pool.threads).toBe(2);
          n++;
        }
        expect(n).toBeGreaterThan(1);
        // Released just now: still there well inside the bound, gone after it.
        await new Promise((r) => setTimeout(r, idleMs / 3));
        expect(pool.threads).toBe(2);
        expect(await until(() => pool.threads === 0, timeout(10_000))).toBe(true);
      } finally {
        await pool.close();
      }
    },
  );

  it(
    'without a bound (no PARITY_MEMORY_LIMIT) keep their pair while the room runs',
    { timeout: timeout(60_000) },
    async () => {
      const pool = new IngestWorkerPool(Buffer.alloc(32, 1), [], { oldMb: 48, youngMb: 8, idleMs: null });
      try {
        await batch(pool);
        await new Promise((r) => setTimeout(r, 1_000));
        expect(pool.threads).toBe(2);
      } finally {
        await pool.close();
      }
      expect(pool.threads).toBe(0);
    },
  );
});
