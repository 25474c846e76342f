import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ndjson, leadTimePoints } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

// One analyst's loop over reads that go to the points (old snapshots, periods not rolled up) took
// another partner's pushes from 50 ms to seconds and ran DuckDB out of memory (a red team's
// finding). Those reads now take turns: at most PARITY_POINT_READS at once, a freed turn going
// to another caller first, and a caller with PARITY_POINT_READS_WAITING waiting (four here) is
// told to come back (429).
describe('reads from the points take turns among callers', () => {
  let t: TestRoom;
  beforeAll(async () => {
    // No rollups and no cache: every series read goes to the points.
    t = await startTestRoom({
      env: {
        PARITY_POINT_READS: '1',
        PARITY_POINT_READS_WAITING: '4',
        PARITY_ROLLUPS: 'off',
        PARITY_QUERY_CACHE: 'off',
        PARITY_ALERTS: 'off',
      },
    });
    for (const partner of ['acme', 'globex']) {
      const res = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await t.token(partner, 'ingest')}`,
          'content-type': 'application/x-ndjson',
        },
        body: ndjson(leadTimePoints(60, partner.toUpperCase())),
      });
      expect(res.status).toBe(202);
    }
  });
  afterAll(() => t?.close());

  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await t.metrics())?.[1]);

  it('a flood of one analyst waits its turns and is refused past four waiting; another partner’s read goes next', async () => {
    const real = t.room.duck.query.bind(t.room.duck);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const spy = vi.spyOn(t.room.duck, 'query').mockImplementation(async (s) => {
      await gate;
      return real(s);
    });
    const done: string[] = [];
    const read = async (partner: string, name: string, from: string, role: 'analyst' | 'admin' = 'analyst') => {
      const res = await fetch(`${t.url}/v1/kpis/lead_time/series?grain=day&from=${from}&to=2026-11-20`, {
        headers: { authorization: `Bearer ${await t.token(partner, role)}` },
      });
      done.push(name);
      return res;
    };
    try {
      const acme = [read('acme', 'a1', '2026-11-01')];
      await vi.waitFor(() => expect(spy).toHaveBeenCalledTimes(1), { timeout: timeout(10_000) });
      acme.push(...['a2', 'a3', 'a4', 'a5'].map((n, i) => read('acme', n, `2026-11-0${i + 2}`)));
      await vi.waitFor(async () => expect(await metric('parity_store_reads_waiting')).toBe(4), {
        timeout: timeout(10_000),
      });
      // A fifth waiting read of the same partner, with another of its tokens (turns are the
      // partner's: an admin mints tokens at will): refused, nothing computed for it.
      const refused = await read('acme', 'a6', '2026-11-07', 'admin');
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(((await refused.json()) as { status: number }).status).toBe(429);
      expect(await metric('parity_store_reads_refused_total')).toBe(1);
      // globex's analyst is not refused for acme's flood, and its read is the next to run.
      const globex = read('globex', 'g1', '2026-11-01');
      await vi.waitFor(async () => expect(await metric('parity_store_reads_waiting')).toBe(5), {
        timeout: timeout(10_000),
      });
      // The metadata report's scan of the month's points waits its partner's turn too.
      const report = fetch(`${t.url}/v1/transparency`, {
        headers: { authorization: `Bearer ${await t.token('globex', 'admin')}` },
      });
      await vi.waitFor(async () => expect(await metric('parity_store_reads_waiting')).toBe(6), {
        timeout: timeout(10_000),
      });
      open();
      const answers = await Promise.all([...acme, globex, report]);
      for (const r of answers) expect(r.status).toBe(200);
      expect(done.indexOf('g1')).toBeLessThan(done.indexOf('a3'));
      expect(done.indexOf('a1')).toBeLessThan(done.indexOf('g1'));
      expect([await metric('parity_store_reads_running'), await metric('parity_store_reads_waiting')]).toEqual([0, 0]);
    } finally {
      open();
      spy.mockRestore();
    }
  });
});
