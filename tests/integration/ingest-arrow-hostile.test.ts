// Issue #13, bounded parsers: a valid Arrow stream lands whatever its record-batch size (one
// batch of a million rows, as pyarrow, polars and DuckDB write them), and mutated Arrow streams
// (random bytes overwritten, lengths and counts set to hostile values, cut short) never get a 5xx
// or hang: each gets its answer, a refused body lands nothing, and the room stays up.
import { Dictionary, Float64, Int32, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mediaTypes } from '../helpers/points.js';
import { rowCount, startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { byDepth, runs } from '../helpers/depth.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
beforeAll(async () => {
  // Rollups and alerts off: this suite is about reading bodies, not about the cells of a million points.
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_ROLLUPS: 'off' } });
});
afterAll(async () => t?.close());

const RUNS = runs('PARITY_ARROW_FUZZ_RUNS', 120, 400);
/** One record batch as big as the writers make them: a million rows in full depth, a quarter of that quick. */
const BIG = byDepth(250_000, 1_000_000);

function stream(rows: number, subject = (i: number) => `S-${i}`): Uint8Array {
  const days = ['2026-11-17T08:00:00Z', '2026-11-18T09:30:00Z', '2026-11-19T11:15:00Z'];
  return tableToIPC(
    new Table({
      kpi: vectorFromArray(
        Array.from({ length: rows }, () => 'lead_time'),
        new Utf8(),
      ),
      at: vectorFromArray(
        Array.from({ length: rows }, (_, i) => days[i % 3]!),
        new Utf8(),
      ),
      value: vectorFromArray(
        Array.from({ length: rows }, (_, i) => (i % 100) + 0.5),
        new Float64(),
      ),
      subject: vectorFromArray(
        Array.from({ length: rows }, (_, i) => subject(i)),
        new Utf8(),
      ),
    }),
    'stream',
  );
}

async function post(body: Uint8Array, ms = timeout(30_000)) {
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token('acme', 'ingest')}`, 'content-type': mediaTypes.arrow },
    body: body as BodyInit,
    signal: AbortSignal.timeout(ms),
  });
  return { status: res.status, body: await res.text() };
}

const pointCount = () => rowCount(t, 'points');

describe('Arrow bodies', () => {
  it(
    `a valid stream with one record batch of ${BIG.toLocaleString('en')} rows lands`,
    async () => {
      const body = stream(BIG);
      const before = await pointCount();
      const r = await post(body, timeout(120_000));
      expect(r.status, r.body.slice(0, 300)).toBe(202);
      expect(JSON.parse(r.body)).toMatchObject({ accepted: BIG, rejected: 0 });
      expect((await pointCount()) - before).toBe(BIG);
    },
    timeout(180_000),
  );

  it(
    `${RUNS} mutated streams: no 5xx, no hang, a refused body lands nothing`,
    async () => {
      const base = stream(40, (i) => `M-${i}`);
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.oneof(
              // a byte overwritten
              fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
              // a 32-bit word set to a hostile length or count
              fc.record({
                at: fc.nat(),
                word: fc.constantFrom(0x7fffffff, 0xffffffff, 0x10000000, 0x00ffffff, 0, 1, 0x7ffffff8),
              }),
            ),
            { minLength: 1, maxLength: 4 },
          ),
          fc.option(fc.nat(), { nil: undefined }),
          async (mutations, cut) => {
            const b = Buffer.from(base);
            for (const m of mutations) {
              const at = m.at % b.length;
              if ('byte' in m) b[at] = m.byte;
              else if (at + 4 <= b.length) b.writeUInt32LE(m.word, at);
            }
            const body = cut === undefined ? b : b.subarray(0, cut % b.length);
            const before = await pointCount();
            const r = await post(body);
            statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
            expect(r.status, r.body.slice(0, 300)).toBeLessThan(500);
            if (r.status >= 400) {
              expect(r.body).toMatch(/"status":4\d\d/);
              expect(await pointCount()).toBe(before);
            }
          },
        ),
        { numRuns: RUNS, seed: 1302 },
      );
      // Controls: the mutations broke some streams and left others readable.
      expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    },
    timeout(300_000),
  );
});

describe('dictionary-encoded Arrow columns', () => {
  // The reader caches every decoded dictionary value for good: a million distinct subjects
  // overflowed an ingest worker's 48 MB of old space, and the batch got a 400. The rows are few
  // bytes each, so the full million runs at every depth.
  const ROWS = 1_000_000;
  let small: TestRoom;
  beforeAll(async () => {
    small = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_ROLLUPS: 'off' } });
  });
  afterAll(async () => small?.close());

  it(
    `a stream whose subjects are one dictionary of ${ROWS.toLocaleString('en')} distinct values (as JS writers encode strings) lands`,
    async () => {
      const days = ['2026-11-17T08:00:00Z', '2026-11-18T09:30:00Z'];
      const dict = () => new Dictionary(new Utf8(), new Int32());
      const body = tableToIPC(
        new Table({
          kpi: vectorFromArray(
            Array.from({ length: ROWS }, () => 'lead_time'),
            dict(),
          ),
          at: vectorFromArray(
            Array.from({ length: ROWS }, (_, i) => days[i % 2]!),
            dict(),
          ),
          value: vectorFromArray(
            Array.from({ length: ROWS }, (_, i) => (i % 50) + 0.25),
            new Float64(),
          ),
          subject: vectorFromArray(
            Array.from({ length: ROWS }, (_, i) => `DICT-SUBJECT-${i.toString().padStart(9, '0')}`),
            dict(),
          ),
        }),
        'stream',
      );
      const before = await rowCount(small, 'points');
      const res = await fetch(`${small.url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await small.token('acme', 'ingest')}`, 'content-type': mediaTypes.arrow },
        body: body as BodyInit,
        signal: AbortSignal.timeout(timeout(120_000)),
      });
      const text = await res.text();
      expect(res.status, text.slice(0, 300)).toBe(202);
      expect(JSON.parse(text)).toMatchObject({ accepted: ROWS, rejected: 0 });
      expect((await rowCount(small, 'points')) - before).toBe(ROWS);
    },
    timeout(180_000),
  );
});
