import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DuckStore } from '../../services/platform/duck-store.js';

const dir = mkdtempSync(join(tmpdir(), 'parity-duck-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('local days', () => {
  it('fills rows without a local day and recomputes all of them when the zone changes', async () => {
    const store = await DuckStore.open(join(dir, 'p.duckdb'));
    const c = await store.connect();
    // 23:30Z on 31 March is 1 April in Berlin (CEST) and 31 March in UTC.
    await c.run(
      `INSERT INTO points (snapshot, partner, kpi, ts, value, subject) VALUES (1, 'acme', 'lead_time', TIMESTAMPTZ '2026-03-31 23:30:00+00', 1, 's')`,
    );
    const day = async () =>
      String(
        (await c.runAndReadAll("SELECT strftime(local_day, '%Y-%m-%d') AS d FROM points")).getRowObjectsJson()[0]!['d'],
      );
    await store.localise('Europe/Berlin');
    expect(await day()).toBe('2026-04-01');
    await store.localise('Europe/Berlin');
    expect(await day()).toBe('2026-04-01');
    await store.localise('UTC');
    expect(await day()).toBe('2026-03-31');
    store.release(c);
    await store.close();
  });
});
