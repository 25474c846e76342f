// A time-zone change moves every point's local day. The disclosure red team of 2026-12-05 found
// the current series left on the old days while reads from the points gave the new ones. Here the
// same points must sit on the new day in the current series (rollups) and in a read of the same
// snapshot over another range, and both answers must agree. This room did not reproduce the
// red team's finding (neither with 200,000 other points to re-localise): the test holds the
// outcome, not the race; docs/privacy.md keeps the finding open.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { readFileSync } from 'node:fs';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';
import { ndjson } from '../helpers/points.js';

// A room of each test's own: each starts on Berlin days and changes the zone once. One writer:
// a batch waiting for it lands after the re-localising (which takes freed writers first).
let t: TestRoom;
beforeEach(async () => {
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_INGEST_CONCURRENCY: '1' } });
});
afterEach(async () => t?.close());

/** lead_time points of one partner: `n` at each instant, subjects `${partner}-${tag}-i`, values from `base`. */
async function push(partner: string, rows: { at: string; tag: string; n: number; base?: number }[]) {
  const body = ndjson(
    rows.flatMap((r) =>
      Array.from({ length: r.n }, (_, i) => ({
        kpi: 'lead_time',
        at: r.at,
        value: (r.base ?? 20) + i,
        subject: `${partner}-${r.tag}-${i}`,
      })),
    ),
  );
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body,
  });
  expect(res.status, await res.text()).toBe(202);
}

async function call(method: string, path: string, token: string, body?: unknown) {
  const r = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as any };
}

/** The day cells of lead_time between two days, with their values (null when withheld). */
async function days(token: string, from: string, to: string, snapshot?: number) {
  const q = `grain=day&from=${from}&to=${to}${snapshot === undefined ? '' : `&snapshot=${snapshot}`}`;
  const r = await call('GET', `/v1/kpis/lead_time/series?${q}`, token);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return Object.fromEntries(
    (r.body.cells as { period: string; value: number | null; state: string }[])
      .filter((c) => c.state !== 'suppressed')
      .map((c) => [c.period, c.value]),
  );
}

/** The local days the room's points are stored on, with how many on each. */
async function pointDays() {
  const c = await t.room.duck.connect();
  try {
    return (
      await c.runAndReadAll(
        'SELECT local_day::VARCHAR AS day, count(*)::INTEGER AS n FROM points GROUP BY ALL ORDER BY day',
      )
    ).getRowObjectsJson();
  } finally {
    t.room.duck.release(c);
  }
}

const rolledUp = () =>
  expect.poll(() => t.app.reader.rollups?.current, { timeout: timeout(60_000), interval: 50 }).toBe(true);

/** The demo agreement in UTC, proposed by acme and approved by globex; then the rollups are current. */
async function toUtc() {
  const doc = YAML.parse(readFileSync('fixtures/demo-agreement.yaml', 'utf8'));
  doc.partnership.timezone = 'UTC';
  const made = await call('POST', '/v1/agreement/proposals', await t.token('acme', 'admin'), {
    document: doc,
    reason: 'one clock for both hubs',
  });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  const approved = await call(
    'POST',
    `/v1/agreement/proposals/${made.body.id}/approve`,
    await t.token('globex', 'admin'),
    {},
  );
  expect(approved.body).toMatchObject({ state: 'active' });
  await rolledUp();
}

describe('a time-zone change', () => {
  it('moves the points to their new local days in the rollups and in reads from the points alike', async () => {
    // 23:30 UTC on 19 November is 00:30 on the 20th in Berlin (the demo's zone).
    for (const partner of ['acme', 'globex'])
      await push(partner, [{ at: '2026-11-19T23:30:00Z', tag: 'TZ', n: 12, base: 10 }]);
    await rolledUp();
    const analyst = await t.token('acme', 'analyst');
    expect(Object.keys(await days(analyst, '2026-11-18', '2026-11-21'))).toEqual(['2026-11-20']);

    await toUtc();
    const snapshot = t.room.duck.snapshots.latest;
    // The current series (rollups) and the same snapshot over a range the rollups do not serve
    // as they stand (from the points): both put the points on the 19th, and say the same of it
    // (withheld: released points moved in, so its value against the 20th's before would be theirs).
    const cells = async (from: string, to: string, at?: number) => {
      const q = `grain=day&from=${from}&to=${to}${at === undefined ? '' : `&snapshot=${at}`}`;
      const r = await call('GET', `/v1/kpis/lead_time/series?${q}`, analyst);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.cells as { period: string; state: string; reasonCode?: string }[];
    };
    const current = await cells('2026-11-18', '2026-11-21');
    expect(current.map((c) => [c.period, c.state, c.reasonCode])).toEqual([['2026-11-19', 'suppressed', 'zone']]);
    expect(await cells('2026-11-19', '2026-11-19', snapshot)).toEqual(current);
  });

  it("lands a batch that waited for the writer while the zone changed on the new zone's days", async () => {
    // The writer is held (as by a long batch) while both partners' points for 23:30 UTC on 19
    // November (the 20th in Berlin) wait on disk; the zone becomes UTC meanwhile. Whichever
    // goes first once the writer is free — the waiting batches or the re-localising — every
    // point must end on the 19th (the hostile-input review found them landed on Berlin's days).
    const slots = t.room.duck.slots;
    const held: (() => void)[] = [];
    for (let i = 0; i < slots.size; i++) held.push(await slots.acquire());
    const pushes = ['acme', 'globex'].map((partner) =>
      push(partner, [{ at: '2026-11-19T23:30:00Z', tag: 'WAIT', n: 12, base: 10 }]),
    );
    await expect.poll(() => slots.readyWaiting, { timeout: timeout(20_000), interval: 20 }).toBe(2);
    const changed = toUtc();
    // The new version's snapshot (the re-localising in it) waits in the queue too; freed, the
    // writer goes to it first, and the batches land after it: on the version they find in force then.
    await expect.poll(() => slots.readyWaiting, { timeout: timeout(20_000), interval: 20 }).toBe(3);
    expect(t.room.agreement().agreement.partnership.timezone).toBe('Europe/Berlin');
    for (const release of held) release();
    await Promise.all([...pushes, changed]);
    expect(await pointDays()).toEqual([{ day: '2026-11-19', n: 24 }]);
    const analyst = await t.token('acme', 'analyst');
    expect(Object.keys(await days(analyst, '2026-11-18', '2026-11-21'))).toEqual(['2026-11-19']);
  });

  it("two changes asked at once both finish, one after the other, and the points end on the last one's days", async () => {
    // Each takes every writer: taking them in turn, they would each hold some and wait for good.
    // The second reads the zone the first left, not the one before it.
    await t.close(); // this one needs two writers
    t = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_INGEST_CONCURRENCY: '2' } });
    for (const partner of ['acme', 'globex'])
      await push(partner, [{ at: '2026-11-19T23:30:00Z', tag: 'TWO', n: 6, base: 10 }]);
    const duck = t.room.duck;
    const held = [await duck.slots.acquire(), await duck.slots.acquire()];
    const both = Promise.all([duck.localise('UTC'), duck.localise('Europe/Berlin')]);
    for (const release of held) release();
    await both;
    expect(duck.localisedZone).toBe('Europe/Berlin');
    expect(await pointDays()).toEqual([{ day: '2026-11-20', n: 12 }]);
  });

  it('withholds from then on every period the new zone changed by fewer than k of a partner’s subjects, at every breakdown', async () => {
    // Berlin days, k = 5. Six subjects of each partner at noon on 16–18 November; globex also has
    // one at 23:30 UTC on the 17th, which is the 18th in Berlin. In UTC it moves to the 17th:
    // globex's 18th before (7 subjects) against after (6) would be that one point.
    for (const partner of ['acme', 'globex'])
      await push(partner, [
        { at: '2026-11-16T12:00:00Z', tag: 'D16', n: 6 },
        { at: '2026-11-17T12:00:00Z', tag: 'D17', n: 6 },
        { at: '2026-11-18T12:00:00Z', tag: 'D18', n: 6 },
        ...(partner === 'globex' ? [{ at: '2026-11-17T23:30:00Z', tag: 'LATE', n: 1, base: 99 }] : []),
      ]);
    await rolledUp();
    const analyst = await t.token('acme', 'analyst');
    const series = async (grain: string, by: string) => {
      const r = await call(
        'GET',
        `/v1/kpis/lead_time/series?grain=${grain}&by=${by}&from=2026-11-16&to=2026-11-18`,
        analyst,
      );
      expect(r.status).toBe(200);
      return r.body.cells as { period: string; group: string | null; state: string; reasonCode?: string }[];
    };
    expect((await series('day', 'partner')).every((c) => c.state === 'ok')).toBe(true);
    await toUtc();
    for (const by of ['none', 'partner']) {
      const cells = await series('day', by);
      expect(
        cells.filter((c) => c.period === '2026-11-16').every((c) => c.state === 'ok'),
        by,
      ).toBe(true);
      for (const day of ['2026-11-17', '2026-11-18'])
        expect(
          cells.filter((c) => c.period === day).map((c) => [c.state, c.reasonCode]),
          `${by} ${day}`,
        ).toEqual(cells.filter((c) => c.period === day).map(() => ['suppressed', 'zone']));
    }
    // The point stayed in its week and month: those did not change, and are served.
    expect((await series('week', 'partner')).every((c) => c.state === 'ok')).toBe(true);
    expect((await series('month', 'partner')).every((c) => c.state === 'ok')).toBe(true);
    // Kept with the points (a restart reads them back), at the new version's snapshot.
    const c = await t.room.duck.connect();
    try {
      const rows = (
        await c.runAndReadAll(
          "SELECT kpi, grain, strftime(period, '%Y-%m-%d') AS period FROM withheld_periods WHERE reason = 'zone' ORDER BY kpi, grain, period",
        )
      ).getRowObjectsJson();
      expect(rows).toEqual([
        { kpi: 'lead_time', grain: 'day', period: '2026-11-17' },
        { kpi: 'lead_time', grain: 'day', period: '2026-11-18' },
      ]);
    } finally {
      t.room.duck.release(c);
    }
  });

  it('judges the released points that move too: pending ones do not lift a single released point to k', async () => {
    // As above, and then globex sends 4 more subjects at 23:40 UTC on the 17th: a change below
    // k, pending. The move takes 5 of globex's subjects out of Berlin's 18th, but only one of them
    // is released, and served cells show released points only.
    for (const partner of ['acme', 'globex'])
      await push(partner, [
        { at: '2026-11-17T12:00:00Z', tag: 'D17', n: 6 },
        { at: '2026-11-18T12:00:00Z', tag: 'D18', n: 6 },
        ...(partner === 'globex' ? [{ at: '2026-11-17T23:30:00Z', tag: 'LATE', n: 1, base: 99 }] : []),
      ]);
    await push('globex', [{ at: '2026-11-17T23:40:00Z', tag: 'MORE', n: 4 }]);
    await rolledUp();
    await toUtc();
    const analyst = await t.token('acme', 'analyst');
    const r = await call(
      'GET',
      '/v1/kpis/lead_time/series?grain=day&by=partner&from=2026-11-17&to=2026-11-18',
      analyst,
    );
    expect(r.status).toBe(200);
    const globex = (r.body.cells as { period: string; group: string; state: string; reasonCode?: string }[]).filter(
      (c) => c.group === 'globex',
    );
    expect(globex.map((c) => [c.period, c.state])).toEqual([
      ['2026-11-17', 'suppressed'],
      ['2026-11-18', 'suppressed'],
    ]);
  });

  it('withholds a held cell in which the change left one partner fewer than k released subjects, though all its points reach k', async () => {
    // Berlin days (the demo's zone), k = 5. globex's 18 November: 2 points at 23:30 UTC on the
    // 17th and 3 on the 18th, released together. acme's 17th: 6 points, released. globex's 17th:
    // 3 more points, a change below k: pending. In UTC the 2 released points move to the 17th,
    // beside acme's 6 and globex's 3 pending ones: globex has 5 subjects there in all but 2 of
    // them released, and a held cell would show them with acme's 6 — acme, knowing its own,
    // would read what globex's 2 add. The cell is withheld.
    await push('globex', [
      { at: '2026-11-17T23:30:00Z', tag: 'LATE', n: 2 },
      { at: '2026-11-18T10:00:00Z', tag: 'DAY', n: 3 },
    ]);
    await push('acme', [{ at: '2026-11-17T12:00:00Z', tag: 'A', n: 6 }]);
    await push('globex', [{ at: '2026-11-17T12:00:00Z', tag: 'MORE', n: 3 }]);
    await rolledUp();
    const analyst = await t.token('acme', 'analyst');
    const cells = async () => {
      const r = await call('GET', '/v1/kpis/lead_time/series?grain=day&from=2026-11-17&to=2026-11-17', analyst);
      expect(r.status).toBe(200);
      return r.body.cells as { period: string; state: string; reasonCode?: string; value: number | null }[];
    };
    // Berlin: globex has 3 subjects on the 17th in all, under k: withheld.
    expect(await cells()).toEqual([
      expect.objectContaining({ period: '2026-11-17', state: 'suppressed', reasonCode: 'few_subjects' }),
    ]);
    await toUtc();
    expect(await cells()).toEqual([
      expect.objectContaining({ period: '2026-11-17', state: 'suppressed', reasonCode: 'few_subjects', value: null }),
    ]);
    // The same from the points (a snapshot read over another range).
    const snapshot = t.room.duck.snapshots.latest;
    const r = await call(
      'GET',
      `/v1/kpis/lead_time/series?grain=day&from=2026-11-16&to=2026-11-17&snapshot=${snapshot}`,
      analyst,
    );
    expect(r.body.cells.find((c: { period: string }) => c.period === '2026-11-17')).toMatchObject({
      state: 'suppressed',
      reasonCode: 'few_subjects',
    });
  });
});
