import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRetention } from '../../services/governance/retention.js';
import { startRollups, stopRollups } from '../../services/query/rollups.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';
import { TestClock } from '../../services/platform/clock.js';

// The demo agreement keeps points for P3Y; the test clock stands at 2026-11-23, so local days
// before 2023-11-23 (Europe/Berlin) are past retention.
let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off' } });
});
afterAll(async () => t?.close());

const day = (date: string, values: number[], prefix: string): TestPoint[] =>
  values.map((value, i) => ({ kpi: 'lead_time', at: `${date}T10:00:00Z`, value, subject: `${prefix}-${i}` }));

async function push(partner: string, points: TestPoint[]): Promise<number> {
  const r = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(points),
  });
  expect(r.status).toBe(202);
  return ((await r.json()) as { snapshot: number }).snapshot;
}

async function week(snapshot?: number) {
  const q = `/v1/kpis/lead_time/series?grain=week&from=2023-11-13&to=2023-12-03${snapshot === undefined ? '' : `&snapshot=${snapshot}`}`;
  const r = await fetch(`${t.url}${q}`, { headers: { authorization: `Bearer ${await t.token('acme', 'steering')}` } });
  return {
    status: r.status,
    body: (await r.json()) as {
      snapshot: number;
      cells: { period: string; value: number | null; n: number | null; state: string; reasonCode?: string }[];
      field?: string;
    },
  };
}

async function rolledUp() {
  // A bound, not a speed check: the rollups catch up in the background, slowly on a busy machine.
  const deadline = Date.now() + timeout(60_000);
  while (!t.app.reader.rollups?.current && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  expect(t.app.reader.rollups?.current).toBe(true);
}

describe('retention', () => {
  it("deletes the points past the agreement's retention, counts them in the audit log, and moves the snapshot on", async () => {
    await push('acme', day('2023-11-21', [100, 110, 120, 130, 140], 'OLD'));
    const s0 = await push('acme', day('2023-11-24', [10, 20, 30, 40, 50], 'NEW'));
    await push('globex', day('2026-11-02', [1, 2, 3, 4, 5], 'NOW'));
    await rolledUp();
    const before = await week();
    expect(before.body.cells.find((c) => c.period === '2023-11-20')).toMatchObject({ value: 75, state: 'ok' });

    // The rollup maintainer is stopped across the deletion: a new one (as after a restart) must
    // learn from the database which days to recompute.
    await stopRollups(t.app.reader);
    const r = await runRetention(t.room);
    expect(r).toMatchObject({ before: '2023-11-23', deleted: 5, perKpi: { lead_time: 5 } });
    expect(r.snapshot).toBeGreaterThan(before.body.snapshot);
    expect(t.room.duck.snapshots.latest).toBe(r.snapshot);
    const entry = await t.room.control.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'retention.deleted')
      .executeTakeFirstOrThrow();
    // The shared entry names the KPIs and the horizon, and holds no counts: the total minus one's
    // own deleted points would be the others' volume (docs/privacy.md §3).
    expect(entry.details).toEqual({
      kpis: ['lead_time'],
      before: '2023-11-23',
      retention: 'P3Y',
      snapshot: r.snapshot,
    });

    // The days to recompute are kept with the deletion (a restart would not forget them), and cleared once rolled up.
    const pending = async () => {
      const c = await t.room.duck.connect();
      try {
        return (await c.runAndReadAll(`SELECT key, value FROM room_settings WHERE key LIKE 'rollup_removed:%'`))
          .getRowObjectsJson()
          .map((x) => [String(x['key']), JSON.parse(String(x['value']))]);
      } finally {
        t.room.duck.release(c);
      }
    };
    expect(await pending()).toEqual([
      ['rollup_removed:lead_time', { lo: '2023-11-21', hi: '2023-11-21', snapshot: r.snapshot }],
    ]);
    // The step guard's history (released_atoms) drops the deleted days with their points.
    const releasedDays = async () => {
      const c = await t.room.duck.connect();
      try {
        return (await c.runAndReadAll(`SELECT DISTINCT local_day::VARCHAR AS d FROM released_atoms ORDER BY d`))
          .getRowObjectsJson()
          .map((x) => String(x['d']));
      } finally {
        t.room.duck.release(c);
      }
    };
    expect(await releasedDays()).toEqual(['2023-11-24', '2026-11-02']);
    // The week that straddles the horizon lost points: it is withheld (its change would be what was
    // deleted, docs/privacy.md §2.7) — first from points, then from its rollup, which holds what is left.
    const after = await week();
    expect(after.body.snapshot).toBe(r.snapshot);
    expect(after.body.cells.find((c) => c.period === '2023-11-20')).toMatchObject({
      value: null,
      state: 'suppressed',
      reasonCode: 'retention',
    });

    startRollups(t.app.reader, () => t.room.agreement().agreement, { info: () => {}, warn: () => {}, error: () => {} });
    await rolledUp();
    await t.app.reader.rollups?.loop.idle();
    expect(await pending()).toEqual([]);
    expect((await week()).body).toEqual(after.body);
    const c2 = await t.room.duck.connect();
    const rolled = (
      await c2.runAndReadAll(
        `SELECT value FROM rollup_cells WHERE kpi = 'lead_time' AND grain = 'week' AND breakdown = 'none' AND period = '2023-11-20'`,
      )
    ).getRowObjectsJson();
    t.room.duck.release(c2);
    // The rollup recomputed the straddling week from the points left (p50 of 10 … 50).
    expect(rolled).toEqual([{ value: 30 }]);

    // An earlier snapshot counted deleted points: it is refused rather than answered differently.
    const old = await week(s0);
    expect(old.status).toBe(400);
    expect(old.body.field).toBe('querystring.snapshot');
    expect((await week(r.snapshot!)).status).toBe(200);

    // Nothing more to delete: no snapshot, no entry.
    expect(await runRetention(t.room)).toMatchObject({ deleted: 0, snapshot: null });
    expect(
      (
        await t.room.control.db
          .selectFrom('audit_log')
          .select('seq')
          .where('action', '=', 'retention.deleted')
          .execute()
      ).length,
    ).toBe(1);
  });

  it('a KPI the run deleted nothing from is cut at the horizon too, however its cells were cached before', async () => {
    // Its own room: customer_value points on both sides of a later horizon and none before it, so
    // a run that deletes lead_time's points leaves customer_value untouched; its week that
    // straddles the horizon must be withheld as it is after a restart (the same bytes).
    const clock = new TestClock('2026-11-23T12:00:00Z');
    const own = await startTestRoom({ env: { PARITY_ALERTS: 'off' }, clock });
    try {
      const send = async (partner: string, points: TestPoint[]) => {
        const r = await fetch(`${own.url}/v1/points`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${await own.token(partner, 'ingest')}`,
            'content-type': 'application/x-ndjson',
          },
          body: ndjson(points),
        });
        expect(r.status).toBe(202);
      };
      const survey = (date: string, prefix: string): TestPoint[] =>
        [6, 7, 8, 9, 8].map((value, i) => ({
          kpi: 'customer_value',
          at: `${date}T10:00:00Z`,
          value,
          subject: `${prefix}-${i}`,
        }));
      for (const partner of ['acme', 'globex']) {
        await send(partner, survey('2024-11-21', `${partner}-A`)); // Thursday of the week of 18 Nov 2024
        await send(partner, survey('2024-11-22', `${partner}-B`)); // Friday
      }
      await send('acme', day('2023-11-21', [1, 2, 3, 4, 5], 'OLD'));
      const series = async (q: string) => {
        const r = await fetch(`${own.url}/v1/kpis/customer_value/series?grain=week&${q}`, {
          headers: { authorization: `Bearer ${await own.token('acme', 'steering')}` },
        });
        expect(r.status).toBe(200);
        return (await r.json()) as {
          snapshot: number;
          cells: { period: string; state: string; reasonCode?: string }[];
        };
      };
      const week = (b: Awaited<ReturnType<typeof series>>) => b.cells.find((c) => c.period === '2024-11-18');
      // Read (and cached) before the run: the week is served.
      for (const q of ['from=2024-11-11&to=2024-12-01', 'from=2024-11-18&to=2024-11-24'])
        expect(week(await series(q))).toMatchObject({ state: 'ok' });

      // A year later the horizon (P3Y, Berlin days) falls on Thursday 21 Nov 2024: lead_time's
      // points go, customer_value's week loses none of its points, yet its period starts before the cut.
      clock.set(new Date('2027-11-21T12:00:00Z'));
      const r = await runRetention(own.room);
      expect(r).toMatchObject({ before: '2024-11-21', perKpi: { lead_time: 5 } });
      expect(Object.keys(r.perKpi)).toEqual(['lead_time']);
      for (const q of [
        'from=2024-11-11&to=2024-12-01',
        'from=2024-11-18&to=2024-11-24',
        `from=2024-11-18&to=2024-11-24&snapshot=${r.snapshot}`,
      ]) {
        const b = await series(q);
        expect(b.snapshot).toBe(r.snapshot);
        expect(week(b), q).toMatchObject({ state: 'suppressed', reasonCode: 'retention' });
      }
    } finally {
      await own.close();
    }
  });

  it('the retention snapshot is stored with the deletion, where the store reads it at start', async () => {
    const retired = t.room.duck.retiredBefore;
    expect(retired).toBeGreaterThan(0);
    const conn = await t.room.duck.connect();
    const row = (
      await conn.runAndReadAll(`SELECT value FROM room_settings WHERE key = 'retired_before_snapshot'`)
    ).getRowObjectsJson()[0];
    t.room.duck.release(conn);
    expect(Number(row?.['value'])).toBe(retired);
  });
});
