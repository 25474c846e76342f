import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgreementFile, type Agreement } from '../../services/platform/agreement-schema.js';
import { DuckStore } from '../../services/platform/duck-store.js';
import { AggregateCache } from '../../services/query/aggregate-cache.js';
import type { RawCell } from '../../services/query/disclosure.js';
import { resolveSeries } from '../../services/query/series-service.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

/** A promise and the hands that settle it: a computation the test lets finish when it chooses. */
function gate<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const cell = (period: string, value: number): RawCell => ({
  period,
  group: null,
  value,
  n: 12,
  minPart: 6,
  partners: 2,
  protects: false,
  dominated: false,
  pending: false,
  asOf: 1,
  relMinPart: 6,
});

describe('the aggregate cache: one computation per aggregate and snapshot', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parity-coalesce-'));
  let store: DuckStore;
  let agreement: Agreement;
  beforeAll(async () => {
    store = await DuckStore.open(join(dir, 'p.duckdb'));
    const loaded = loadAgreementFile('tests/fixtures/public-agreement.yaml');
    if (!loaded.ok) throw new Error('the fixture agreement does not load');
    agreement = loaded.agreement;
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const query = (kpiId: string, grain: 'week' | 'month', snapshot: number) => {
    const kpi = agreement.kpis.find((k) => k.id === kpiId)!;
    return resolveSeries(
      agreement,
      kpi,
      { grain, by: 'partner', from: '2026-09-01', to: '2026-11-01' },
      snapshot,
      new Date('2026-11-23T12:00:00Z'),
    );
  };

  it('lets requests for an aggregate being computed wait for it, and caches its cells', async () => {
    const cache = new AggregateCache(store);
    const q = query('lead_time', 'week', 0);
    const g = gate<RawCell[]>();
    let computations = 0;
    const compute = () => {
      computations++;
      return g.promise;
    };
    const waiting = Array.from({ length: 6 }, () => cache.get(q, 1, compute));
    // Another aggregate (grain, KPI or agreement version) is computed on its own meanwhile.
    const other = cache.get(query('lead_time', 'month', 0), 1, async () => [cell('2026-10-01', 3)]);
    const otherVersion = cache.get(q, 2, async () => [cell('2026-09-28', 4)]);
    expect(computations).toBe(1);
    const cells = [cell('2026-09-28', 31.5)];
    g.resolve(cells);
    const got = await Promise.all(waiting);
    for (const c of got) expect(c).toBe(cells);
    expect((await other)[0]!.value).toBe(3);
    expect((await otherVersion)[0]!.value).toBe(4);
    expect({ misses: cache.misses, shared: cache.shared, hits: cache.hits }).toEqual({ misses: 3, shared: 5, hits: 0 });
    // Done: the next request is a hit, computed by nobody.
    expect(await cache.get(q, 1, compute)).toBe(cells);
    expect(computations).toBe(1);
    expect(cache.hits).toBe(1);
  });

  it('keeps no failed computation: the requests that shared it fail with it, the next one computes again', async () => {
    const cache = new AggregateCache(store);
    const q = query('customer_value', 'week', 0);
    const g = gate<RawCell[]>();
    const first = cache.get(q, 1, () => g.promise);
    const second = cache.get(q, 1, () => Promise.reject(new Error('not called: it shares the first')));
    g.reject(new Error('Out of Memory Error: the pool is full'));
    await expect(first).rejects.toThrow(/Out of Memory/);
    await expect(second).rejects.toThrow(/Out of Memory/);
    const cells = [cell('2026-09-28', 7)];
    expect(await cache.get(q, 1, async () => cells)).toBe(cells);
    expect({ misses: cache.misses, shared: cache.shared }).toEqual({ misses: 2, shared: 1 });
  });

  it('a reader asking for many ranges evicts the least recently used past the bound; an aggregate too large is not kept', async () => {
    const kpi = agreement.kpis.find((k) => k.id === 'lead_time')!;
    const q = (from: string) =>
      resolveSeries(
        agreement,
        kpi,
        { grain: 'week', by: 'partner', from, to: '2026-11-01' },
        0,
        new Date('2026-11-23T12:00:00Z'),
      );
    const cells = (n: number) =>
      Array.from({ length: n }, (_, i) => cell(`2026-09-${String((i % 28) + 1).padStart(2, '0')}`, i));
    const cache = new AggregateCache(store, { maxCells: 1000 });
    const first = q('2026-01-05');
    await cache.get(first, 1, async () => cells(200));
    // Forty more ranges of 200 cells each: 8,200 cells asked for, at most 1,000 kept.
    for (let i = 0; i < 40; i++) {
      const from = `2026-0${1 + Math.floor(i / 20)}-${String((i % 20) + 6).padStart(2, '0')}`;
      await cache.get(q(from), 1, async () => cells(200));
      expect(cache.cells).toBeLessThanOrEqual(1000);
    }
    expect(cache.cells).toBe(1000);
    // The first range went long ago: computed again.
    let computed = 0;
    await cache.get(first, 1, async () => (computed++, cells(200)));
    expect(computed).toBe(1);
    // More than a quarter of the bound: served, not kept (the next request computes it again).
    const big = q('2025-01-06');
    await cache.get(big, 1, async () => (computed++, cells(300)));
    await cache.get(big, 1, async () => (computed++, cells(300)));
    expect(computed).toBe(3);
    expect(cache.cells).toBe(1000);
  });
});

describe('a burst of identical reads right after a batch', () => {
  let t: TestRoom;
  const points = (partner: string, from: number, n: number): TestPoint[] =>
    Array.from({ length: n }, (_, i) => ({
      kpi: 'lead_time',
      at: new Date(Date.parse('2026-10-01T08:00:00Z') + ((from + i) % 40) * 86_400_000).toISOString(),
      value: 5 + ((from + i) % 17),
      subject: `${partner}-parcel-${from + i}`,
      dims: { region: (from + i) % 3 ? 'north' : 'south' },
    }));
  const push = async (partner: string, body: TestPoint[]) => {
    const res = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(body),
    });
    expect(res.status).toBe(202);
  };
  const counters = async () => {
    const text = await t.metrics();
    const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    return {
      hits: read('parity_aggregate_cache_hits_total'),
      misses: read('parity_aggregate_cache_misses_total'),
      shared: read('parity_aggregate_cache_shared_total'),
    };
  };

  beforeAll(async () => {
    // Band evaluation computes aggregates of its own after each batch: off, so the counters below
    // count this test's reads alone.
    t = await startTestRoom({ agreementFile: 'tests/fixtures/public-agreement.yaml', env: { PARITY_ALERTS: 'off' } });
    for (const partner of ['acme', 'globex']) await push(partner, points(partner, 0, 400));
  });
  afterAll(async () => t?.close());

  it('computes the series once and gives every viewer the same answer', async () => {
    const token = await t.token('acme', 'analyst');
    const path = '/v1/kpis/lead_time/series?grain=week&by=region&from=2026-09-01&to=2026-11-30';
    // A batch touching the KPI: its cached aggregates no longer answer.
    await push('globex', points('globex', 400, 200));
    const before = await counters();
    const answers = await Promise.all(
      Array.from({ length: 12 }, () =>
        fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => ({
          status: r.status,
          body: await r.text(),
        })),
      ),
    );
    for (const a of answers) expect(a.status).toBe(200);
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers[0]!.body).toMatch(/"north"/);
    const after = await counters();
    // One computation; the eleven others waited for it or, arriving after it, read it cached.
    expect(after.misses - before.misses).toBe(1);
    expect(after.shared - before.shared + (after.hits - before.hits)).toBe(11);
    // Every read is still its own audit entry.
    const audited = await t.room.control.db
      .selectFrom('audit_log')
      .select(({ fn }) => fn.countAll<number>().as('n'))
      .where('action', '=', 'query.series')
      .where('target', '=', 'lead_time')
      .executeTakeFirstOrThrow();
    expect(Number(audited.n)).toBe(12);
  });
});
