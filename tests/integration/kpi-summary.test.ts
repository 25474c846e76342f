import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { ndjson, type TestPoint } from '../helpers/points.js';

// Clock: 2026-11-23 (a Monday) 12:00Z. lead_time is evaluated weekly against upper 72 h;
// the last closed week starts 2026-11-16, the open one 2026-11-23.
let t: TestRoom;
let analyst: Record<string, string>;

const week = (monday: string, partner: string, hours: number, count: number, tag: string): TestPoint[] =>
  Array.from({ length: count }, (_, i) => ({
    kpi: 'lead_time',
    at: new Date(Date.parse(`${monday}T01:00:00Z`) + i * 3_600_000).toISOString(),
    value: hours,
    subject: `${partner}-${tag}-${i}`,
  }));

async function push(partner: string, points: TestPoint[]) {
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(points),
  });
  expect(res.status).toBe(202);
  return (await res.json()) as { snapshot: number };
}

const get = async (path: string, token: string) => {
  const res = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, text: await res.text() };
};

beforeAll(async () => {
  // Alerts off: their evaluations query too, and this suite counts the query cache's hits and misses.
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off' } });
  analyst = { acme: await t.token('acme', 'analyst'), globex: await t.token('globex', 'analyst') };
  await push('acme', [
    ...week('2026-11-02', 'acme', 40, 10, 'a'),
    ...week('2026-11-09', 'acme', 45, 10, 'b'),
    ...week('2026-11-16', 'acme', 50, 10, 'c'),
    ...week('2026-11-23', 'acme', 30, 6, 'd'),
  ]);
  // globex breaches in the last closed week, and has only 3 orders in the week before (withheld).
  await push('globex', [
    ...week('2026-11-02', 'globex', 60, 10, 'a'),
    ...week('2026-11-09', 'globex', 99, 3, 'b'),
    ...week('2026-11-16', 'globex', 90, 12, 'c'),
  ]);
});
afterAll(async () => t?.close());

describe('GET /v1/kpis', () => {
  it('gives each scope its last closed period, the provisional open one, band, state and change', async () => {
    const r = await get('/v1/kpis', analyst.acme!);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.text);
    expect(body.today).toBe('2026-11-23');
    const lead = body.kpis.find((k: { id: string }) => k.id === 'lead_time');
    expect(lead.grain).toBe('week');
    const scope = (g: string | null) => lead.scopes.find((s: { group: string | null }) => s.group === g);
    // globex's 3 orders in the 2026-11-09 week are withheld, and so is every cell holding them
    // (the combined week, the month). acme's own week stays disclosed: it holds none of them,
    // and with the combined week withheld nothing can be subtracted from it.
    expect(scope('acme')).toMatchObject({
      state: 'ok',
      band: { method: 'static', lower: null, upper: 72 },
      lastClosed: { period: '2026-11-16', value: 50, n: null }, // lead_time does not agree counts: exact
      previous: { period: '2026-11-09', value: 45 },
      change: 5,
      provisional: { period: '2026-11-23', value: 30, n: null },
    });
    expect(scope(null)).toMatchObject({
      previous: { period: '2026-11-09', value: null },
      lastClosed: { period: '2026-11-16', value: 90 },
      change: null,
    });
    expect(scope('globex')).toMatchObject({
      state: 'breach',
      lastClosed: { period: '2026-11-16', value: 90, n: null },
      change: null,
      provisional: null,
    });
    // The week with 3 globex orders is withheld, so no change can be computed from it.
    expect(scope('globex').previous).toMatchObject({ period: '2026-11-09', value: null });
    expect(body.kpis.map((k: { id: string }) => k.id)).not.toContain('compliance');
  });

  it('two partners get identical bytes; ?snapshot=N keeps its answer after more batches land', async () => {
    const a = await get('/v1/kpis', analyst.acme!);
    const g = await get('/v1/kpis', analyst.globex!);
    expect(a.text).toBe(g.text);
    const snapshot = JSON.parse(a.text).snapshot;
    await push('acme', week('2026-11-16', 'acme', 99, 30, 'late'));
    const later = await get(`/v1/kpis?snapshot=${snapshot}`, analyst.globex!);
    expect(later.text).toBe(a.text);
    const now = JSON.parse((await get('/v1/kpis', analyst.acme!)).text);
    expect(now.snapshot).toBeGreaterThan(snapshot);
    expect(now.digest).not.toBe(JSON.parse(a.text).digest);
  });
});

describe('GET /v1/breaches', () => {
  it('lists closed periods outside the band per scope, withheld values as null', async () => {
    const r = await get('/v1/breaches?kpi=lead_time&from=2026-11-01&to=2026-11-30&snapshot=2', analyst.globex!);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.text);
    const globex = body.breaches.filter((b: { group: string | null }) => b.group === 'globex');
    // The withheld week (3 orders at 99 h) has no verdict: listing it would tell which side of the
    // band a withheld value lies (docs/privacy.md §4).
    expect(globex).toEqual([
      {
        kpi: 'lead_time',
        group: 'globex',
        period: '2026-11-16',
        value: 90,
        band: { method: 'static', lower: null, upper: 72 },
        state: 'breach',
        suppressed: false,
      },
    ]);
    expect(body.breaches.filter((b: { group: string | null }) => b.group === 'acme')).toEqual([]);
    // The open week is provisional and never listed.
    expect(body.breaches.some((b: { period: string }) => b.period === '2026-11-23')).toBe(false);
  });

  it('refuses bad parameters by name', async () => {
    for (const [q, field] of [
      ['kpi=nope', undefined],
      ['from=2026-13-01', 'querystring.from'],
      ['snapshot=x', 'querystring.snapshot'],
      ['by=partner', 'querystring.by'],
    ] as const) {
      const r = await get(`/v1/breaches?${q}`, analyst.acme!);
      expect(r.status, q).toBe(field ? 400 : 404);
      if (field) expect(JSON.parse(r.text).field).toBe(field);
    }
  });
});

describe('GET /v1/kpis/{kpi}/bands', () => {
  it('judges every closed period per scope with the band in force then; its outside periods are the breaches; no values', async () => {
    const q = 'from=2026-11-01&to=2026-11-30&snapshot=2';
    const r = await get(`/v1/kpis/lead_time/bands?${q}`, analyst.globex!);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.text);
    expect(body).toMatchObject({ kpi: 'lead_time', grain: 'week', snapshot: 2 });
    expect(
      body.bands
        .filter((b: { group: string | null }) => b.group === 'globex')
        .map((b: { period: string; outside: boolean }) => [b.period, b.outside]),
    ).toEqual([
      ['2026-10-26', false],
      ['2026-11-02', false],
      ['2026-11-09', false], // withheld: no verdict
      ['2026-11-16', true],
    ]);
    const breaches = JSON.parse((await get(`/v1/breaches?kpi=lead_time&${q}`, analyst.globex!)).text).breaches;
    expect(
      body.bands
        .filter((b: { outside: boolean }) => b.outside)
        .map((b: { group: string | null; period: string }) => [b.group, b.period]),
    ).toEqual(breaches.map((b: { group: string | null; period: string }) => [b.group, b.period]));
    for (const b of body.bands)
      expect(Object.keys(b).sort()).toEqual(['group', 'lower', 'method', 'outside', 'period', 'signal', 'upper']);
    // Same bytes for both partners.
    expect((await get(`/v1/kpis/lead_time/bands?${q}`, analyst.acme!)).text).toBe(r.text);
  });

  it('refuses bad parameters by name', async () => {
    for (const [q, status, field] of [
      ['kpi', 404, undefined],
      ['from=2026-02-30', 400, 'querystring.from'],
      ['snapshot=99999', 400, 'querystring.snapshot'],
      ['grain=day', 400, 'querystring.grain'],
      ['to=2026-01-01&from=2026-02-01', 400, 'querystring.from'],
    ] as const) {
      const path = q === 'kpi' ? '/v1/kpis/nope/bands' : `/v1/kpis/lead_time/bands?${q}`;
      const r = await get(path, analyst.acme!);
      expect(r.status, q).toBe(status);
      if (field) expect(JSON.parse(r.text).field, q).toBe(field);
    }
  });
});

describe('the aggregate cache', () => {
  it('a new batch invalidates only the KPIs it touched; answers stay exact', async () => {
    const cache = t.app.reader.cache!;
    const lead = '/v1/kpis/lead_time/series?grain=week&by=partner&from=2026-11-01&to=2026-11-22';
    const cv = '/v1/kpis/customer_value/series?grain=week&from=2026-11-01&to=2026-11-22';
    const first = { lead: await get(lead, analyst.acme!), cv: await get(cv, analyst.acme!) };
    const before = { hits: cache.hits, misses: cache.misses };
    expect((await get(lead, analyst.acme!)).text).toBe(first.lead.text);
    expect(cache.hits).toBe(before.hits + 1);

    await push('globex', week('2026-11-16', 'globex', 10, 20, 'cache'));
    const cvAfter = await get(cv, analyst.acme!);
    const leadAfter = await get(lead, analyst.acme!);
    // customer_value was not touched: same cells, served from the cache at the new snapshot.
    expect(JSON.parse(cvAfter.text).cells).toEqual(JSON.parse(first.cv.text).cells);
    expect(JSON.parse(cvAfter.text).snapshot).toBeGreaterThan(JSON.parse(first.cv.text).snapshot);
    expect(cache.hits).toBe(before.hits + 2);
    // lead_time was: recomputed, and it shows the new points.
    expect(cache.misses).toBe(before.misses + 1);
    const g = (text: string) =>
      JSON.parse(text).cells.find(
        (c: { group: string; period: string }) => c.group === 'globex' && c.period === '2026-11-16',
      );
    // 12 orders at 90 h and 20 new ones at 10 h: the median moves from 90 to 10.
    expect([g(first.lead.text).value, g(leadAfter.text).value]).toEqual([90, 10]);
  });
});
