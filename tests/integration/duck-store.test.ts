import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { duckdbThreads } from '../../services/platform/config.js';
import { compileReleaseStep, DOMINANCE_VERDICTS } from '../../services/query/aggregate-compiler.js';
import { DuckStore, HOLD_ATOMS_LISTED } from '../../services/platform/duck-store.js';

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
  it('re-keys the held atoms with their points when the zone changes: a pending point stays pending', async () => {
    const store = await DuckStore.open(join(dir, 'atoms.duckdb'));
    const c = await store.connect();
    try {
      await store.localise('UTC');
      // [snapshot, ts, subject]: 23:30Z is the next day in Berlin (CEST), 10:00Z the same day.
      const points = [
        [1, '2026-03-31 10:00', 'a'],
        [1, '2026-03-31 23:30', 'b'],
        [2, '2026-04-01 12:00', 'c'],
        [3, '2026-04-02 23:30', 'd'],
        [3, '2026-04-03 10:00', 'e'],
        [5, '2026-04-05 23:30', 'f'],
        [5, '2026-04-06 10:00', 'g'],
      ] as const;
      for (const [snapshot, ts, subject] of points)
        await c.run(
          `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day)
           VALUES ($1, 'acme', 'k', $2::TIMESTAMPTZ, 1, $3, timezone('UTC', $2::TIMESTAMPTZ)::DATE)`,
          [snapshot, `${ts}:00+00`, subject],
        );
      for (const snapshot of [1, 2, 3, 5]) await c.run(HOLD_ATOMS_LISTED, [snapshot]);
      // In UTC: snapshot 1's day (a, b) pending; snapshot 2 released with its batch (no row);
      // d's day released late, at 4; e's and g's days released with their batches; f's pending.
      await c.run('DELETE FROM held_atoms WHERE snapshot = 2');
      await c.run("UPDATE held_atoms SET released = 4 WHERE snapshot = 3 AND local_day = DATE '2026-04-02'");
      await c.run("DELETE FROM held_atoms WHERE local_day IN (DATE '2026-04-03', DATE '2026-04-06')");
      const listed = await c.runAndReadAll('SELECT list_sort(subjects) AS subjects FROM held_atoms WHERE snapshot = 1');
      expect(listed.getRowObjectsJson()).toEqual([{ subjects: ['a', 'b'] }]);
      await store.localise('Europe/Berlin');
      const rows = (
        await c.runAndReadAll(
          "SELECT snapshot::INTEGER AS s, strftime(local_day, '%Y-%m-%d') AS day, released::INTEGER AS r, d, subjects FROM held_atoms ORDER BY s, day",
        )
      ).getRowObjectsJson();
      // The atoms listed their subjects in UTC; re-keyed, they list none (a step counts such a
      // small part from its points), so no list can name a day's subjects it no longer holds.
      expect(rows).toEqual([
        // a stays on 31 March, b moves to 1 April: both pending, each its own atom now.
        { s: 1, day: '2026-03-31', r: null, d: 1, subjects: null },
        { s: 1, day: '2026-04-01', r: null, d: 1, subjects: null },
        // d joins e's day: released at 4, the later of the two releases.
        { s: 3, day: '2026-04-03', r: 4, d: 2, subjects: null },
        // f joins g's day: pending, since f was (fail closed).
        { s: 5, day: '2026-04-06', r: null, d: 2, subjects: null },
      ]);
      // The step guard's history, rebuilt on the new days: c's day released with its batch (2),
      // d and e's at 4; a, b and f's days hold no released point.
      const released = await c.runAndReadAll(
        "SELECT strftime(local_day, '%Y-%m-%d') AS day, last::INTEGER AS last FROM released_atoms ORDER BY day",
      );
      expect(released.getRowObjectsJson()).toEqual([
        { day: '2026-04-01', last: 2 },
        { day: '2026-04-03', last: 4 },
      ]);
    } finally {
      store.release(c);
      await store.close();
    }
  });
});

describe("a landing batch's points under a provisional number", () => {
  /** A spooled segment (the spool worker's tab-separated rows) of `rows` points of `kpi`. */
  const segment = (name: string, rows: number, kpi = 'k') => {
    const path = join(dir, `${name}.tsv`);
    const lines = Array.from(
      { length: rows },
      (_, i) => `${kpi}\t${Date.UTC(2026, 0, 1 + (i % 50))}\t${i % 7}\ts-${i % 997}\t`,
    );
    writeFileSync(path, lines.join('\n') + '\n');
    return path;
  };
  const perSnapshot = async (store: DuckStore) => {
    const c = await store.connect();
    try {
      return (
        await c.runAndReadAll(
          'SELECT snapshot::INTEGER AS s, partner, count(*)::INTEGER AS n FROM points GROUP BY ALL ORDER BY s, partner',
        )
      ).getRowObjectsJson();
    } finally {
      store.release(c);
    }
  };
  const gate = () => {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    return { open, opened };
  };

  it('renumbers only its own points when another batch took the number first, whichever began first', async () => {
    const store = await DuckStore.open(join(dir, 'overtaken.duckdb'));
    try {
      const [a, b, c] = [segment('a', 3), segment('b', 2), segment('c', 4)];
      const aIn = gate();
      const bLanded = gate();
      const cBegun = gate();
      // acme's first segment goes in, then beta's batch lands whole, then acme's body ends.
      const acme = store.transaction(async (tx) => {
        await tx.appendPoints(a, { partner: 'acme', timezone: 'UTC' });
        aIn.open();
        await bLanded.opened;
        const snap = store.snapshots.reserve();
        await tx.stampSnapshot(snap, 3);
        return snap;
      });
      await aIn.opened;
      // gamma's transaction has begun before beta's lands; its first segment goes in after.
      const gamma = store.transaction(async (tx) => {
        cBegun.open();
        await bLanded.opened;
        await tx.appendPoints(c, { partner: 'gamma', timezone: 'UTC' });
        const snap = store.snapshots.reserve();
        await tx.stampSnapshot(snap, 4);
        return snap;
      });
      await cBegun.opened;
      const beta = await store.transaction(async (tx) => {
        await tx.appendPoints(b, { partner: 'beta', timezone: 'UTC' });
        const snap = store.snapshots.reserve();
        await tx.stampSnapshot(snap, 2);
        return snap;
      });
      bLanded.open();
      const [sa, sc] = [await acme, await gamma];
      expect(new Set([beta, sa, sc]).size).toBe(3);
      // Each batch's points, and only they, carry its number: beta's were not renumbered by
      // acme's stamp (its provisional number was beta's), nor by gamma's.
      expect(await perSnapshot(store)).toEqual(
        [
          { s: beta, partner: 'beta', n: 2 },
          { s: sa, partner: 'acme', n: 3 },
          { s: sc, partner: 'gamma', n: 4 },
        ].sort((x, y) => x.s - y.s),
      );
    } finally {
      await store.close();
    }
  });

  it('fails the batch, landing nothing, when a stamp would renumber other points than its own', async () => {
    const store = await DuckStore.open(join(dir, 'guard.duckdb'));
    try {
      const seg = segment('guard', 5);
      const landing = store.transaction(async (tx) => {
        await tx.appendPoints(seg, { partner: 'acme', timezone: 'UTC' });
        store.snapshots.reserve(); // another batch took the provisional number
        await tx.stampSnapshot(store.snapshots.reserve(), 4); // counts 4 of its 5 points
      });
      await expect(landing).rejects.toThrow('stamped 5 points of a batch of 4');
      expect(await perSnapshot(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("keeps a lone big batch's rows as DuckDB wrote them while it streamed; a renumbered one is written again", async () => {
    // Over a row group (122,880 rows), DuckDB writes an appended batch's rows to the file as
    // they come and its commit logs where they are; an UPDATE of them makes it log every row.
    const rows = 130_000;
    const seg = segment('big', rows);
    const walGrowth = async (name: string, overtaken: boolean) => {
      const path = join(dir, `${name}.duckdb`);
      const store = await DuckStore.open(path);
      const wal = () => (existsSync(`${path}.wal`) ? statSync(`${path}.wal`).size : 0);
      try {
        const before = wal();
        await store.transaction(async (tx) => {
          await tx.appendPoints(seg, { partner: 'acme', timezone: 'UTC' });
          if (overtaken) store.snapshots.reserve();
          await tx.stampSnapshot(store.snapshots.reserve(), rows);
        });
        expect((await perSnapshot(store)).map((r) => r['n'])).toEqual([rows]);
        return wal() - before;
      } finally {
        await store.close();
      }
    };
    const lone = await walGrowth('lone', false);
    const renumbered = await walGrowth('renumbered', true);
    expect(renumbered).toBeGreaterThan(rows * 10);
    expect(lone).toBeLessThan(renumbered / 100);
  });
});

describe('the KPI changes a store reads back when it opens', () => {
  it('counts a KPI as changed where a later snapshot released its atoms, not only where its batches landed', async () => {
    const path = join(dir, 'touched.duckdb');
    const first = await DuckStore.open(path);
    const c = await first.connect();
    // Snapshot 3 landed a batch of `left`; its atoms were released by the step of snapshot 4
    // (grouped with it, or waiting until then); snapshot 4 itself landed only `right`.
    for (const [snapshot, kpi] of [
      [3, 'left'],
      [4, 'right'],
    ] as const)
      await c.run(
        `INSERT INTO batches (id, snapshot, partner, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at, kpis)
         VALUES ('b${snapshot}', ${snapshot}, 'acme', '', 'application/x-ndjson', 1, 0, '', '{}', 1, now(), now(), ['${kpi}'])`,
      );
    await c.run(
      `INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, released) VALUES ('left', 'acme', 3, DATE '2026-11-16', NULL, 4)`,
    );
    first.release(c);
    await first.close();
    const again = await DuckStore.open(path);
    try {
      expect(again.touched.effective('left', 3)).toBe(3);
      expect(again.touched.effective('left', 4)).toBe(4);
      expect(again.touched.effective('right', 4)).toBe(4);
      expect(again.touched.effective('right', 3)).toBe(0);
    } finally {
      await again.close();
    }
  });
});

describe("the step guard's history", () => {
  it('is built from the points and their atoms when a store first opens with it, and not again', async () => {
    const path = join(dir, 'released.duckdb');
    const first = await DuckStore.open(path);
    const c = await first.connect();
    // Two points of one day released with their batches (1, then 3), one of another day held and
    // released at 5, one pending: as a store kept them before released_atoms existed.
    for (const [snapshot, day, subject] of [
      [1, '2026-11-16', 'a'],
      [3, '2026-11-16', 'b'],
      [4, '2026-11-17', 'c'],
      [6, '2026-11-18', 'd'],
    ] as const)
      await c.run(
        `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day)
         VALUES ($1, 'acme', 'k', $2::TIMESTAMPTZ, 1, $3, $2::DATE)`,
        [snapshot, `${day} 12:00:00+00`, subject],
      );
    await c.run(
      `INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, released) VALUES
       ('k', 'acme', 4, DATE '2026-11-17', NULL, 5), ('k', 'acme', 6, DATE '2026-11-18', NULL, NULL)`,
    );
    await c.run("DELETE FROM room_settings WHERE key = 'released_atoms_built'");
    first.release(c);
    await first.close();
    const rows = async (store: DuckStore) => {
      const r = await store.connect();
      try {
        return (
          await r.runAndReadAll(
            "SELECT strftime(local_day, '%Y-%m-%d') AS day, last::INTEGER AS last FROM released_atoms ORDER BY day",
          )
        ).getRowObjectsJson();
      } finally {
        store.release(r);
      }
    };
    const again = await DuckStore.open(path);
    try {
      expect(await rows(again)).toEqual([
        { day: '2026-11-16', last: 3 },
        { day: '2026-11-17', last: 5 },
      ]);
      // Built once: a store that has it keeps what its steps recorded.
      const c2 = await again.connect();
      await c2.run("UPDATE released_atoms SET last = 9 WHERE local_day = DATE '2026-11-16'");
      again.release(c2);
    } finally {
      await again.close();
    }
    const third = await DuckStore.open(path);
    try {
      expect((await rows(third))[0]).toEqual({ day: '2026-11-16', last: 9 });
    } finally {
      await third.close();
    }
  });
});

describe('threads', () => {
  it('runs as many DuckDB threads as its pool feeds (duckdbThreads), or as many as it is told', async () => {
    const threads = async (store: DuckStore) =>
      Number((await store.query({ sql: "SELECT current_setting('threads') AS n", params: [] }))[0]!['n']);
    const fed = await DuckStore.open(join(dir, 'threads-96.duckdb'), undefined, '96MB');
    try {
      expect(await threads(fed)).toBe(duckdbThreads(96e6));
    } finally {
      await fed.close();
    }
    const told = await DuckStore.open(join(dir, 'threads-told.duckdb'), undefined, '64MB', 3);
    try {
      expect(await threads(told)).toBe(3);
    } finally {
      await told.close();
    }
  });
});

describe('closing', () => {
  it('interrupts a statement still running and waits for it, instead of closing its connection under it', async () => {
    const store = await DuckStore.open(join(dir, 'closing.duckdb'));
    // Minutes of work on any machine: only an interrupt ends it within the test.
    const slow = store.query({ sql: 'SELECT count(*) AS n FROM range(30000000000) t(i) WHERE i % 7 = 3', params: [] });
    const outcome = slow.then(
      () => 'finished',
      (err: unknown) => String(err),
    );
    await new Promise((r) => setTimeout(r, 500)); // running by now
    const t0 = performance.now();
    // A second close() waits for the same one.
    await Promise.all([store.close(), store.close()]);
    expect(await outcome).toMatch(/INTERRUPT/);
    // It had its grace period first (2 s), then was interrupted.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1_900);
    expect(store.closed).toBe(true);
    await expect(store.query({ sql: 'SELECT 1', params: [] })).rejects.toThrow(/closed/);
  });

  /** Σ value × snapshot over those points (value i, snapshot 1 + i div 1000): moves if a point is lost or changes snapshot. */
  const WEIGHTED = Array.from({ length: 5000 }, (_, i) => i * (1 + Math.floor(i / 1000))).reduce((a, b) => a + b, 0);

  /** A store holding 5,000 points of two partners in five snapshots of 1,000, each point with its own subject `old-<i>`. */
  async function storeWithSubjects(path: string): Promise<DuckStore> {
    const store = await DuckStore.open(path);
    const c = await store.connect();
    await c.run(
      `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day)
       SELECT 1 + i // 1000, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, 'lead_time', TIMESTAMPTZ '2026-11-01 00:00:00+00', i, 'old-' || i, DATE '2026-11-01'
       FROM range(5000) t(i)`,
    );
    store.release(c);
    return store;
  }

  /** What a re-key, finished or not, must leave of those points: all of them, each in its place, and no mapping. */
  const INTACT = { n: 5000, weighted: WEIGHTED, out_of_order: 0, mapping: 0 };

  /** `fn` over the store at `path`, opened afresh (what a restart finds) and closed after. */
  async function withStore<T>(path: string, fn: (store: DuckStore) => Promise<T>): Promise<T> {
    const store = await DuckStore.open(path);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  }

  /** The store's pseudonym generation, its points still under an old pseudonym, and any re-key mapping left in it. */
  const rekeyState = (path: string) =>
    withStore(path, async (store) => {
      const [row] = await store.query({
        sql: `SELECT count(*) FILTER (WHERE subject LIKE 'old-%')::INTEGER AS old, count(*)::INTEGER AS n,
             sum(value * snapshot)::INTEGER AS weighted, count(*) FILTER (WHERE back)::INTEGER AS out_of_order,
             (SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%rekey%')::INTEGER AS mapping
           FROM (SELECT *, value < lag(value) OVER (ORDER BY rowid) AS back FROM points)`,
        params: [],
      });
      return { generation: store.pseudonymGeneration, ...row };
    });

  it('waits for a pseudonym re-key under way, which then commits whole', async () => {
    const path = join(dir, 'closing-rekey.duckdb');
    const store = await storeWithSubjects(path);
    const before = store.pseudonymGeneration;
    // Asked once the re-key holds its connections and streams the pseudonyms (the first chunk of
    // 2,048 is re-keyed): close() waits for it instead of closing its connections under it.
    let closing: Promise<void> | undefined;
    const rekeyed = await store.rekeyPseudonyms(
      before + 1,
      (partner, subject) => `${partner}:${subject.slice(4)}`,
      () => {
        closing ??= store.close();
      },
    );
    expect(closing).toBeDefined();
    await closing;
    expect(rekeyed).toEqual({ pseudonyms: 5000, points: 5000 });
    // Every point re-keyed, none lost or moved to another snapshot, each in its place, no mapping kept.
    expect(await rekeyState(path)).toEqual({ ...INTACT, generation: before + 1, old: 0 });
  });

  it("unlists the held atoms' subjects when it re-keys: no part is counted from old and new pseudonyms side by side", async () => {
    const path = join(dir, 'rekey-listed.duckdb');
    const store = await storeWithSubjects(path);
    const c = await store.connect();
    // A small atom of snapshot 6 that waits, listing two of the points' old pseudonyms.
    await c.run(
      `INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, d, s, subjects)
       VALUES ('lead_time', 'acme', 6, DATE '2026-11-01', NULL, 2, 3, ['old-1', 'old-2'])`,
    );
    store.release(c);
    await store.rekeyPseudonyms(
      store.pseudonymGeneration + 1,
      (partner, subject) => `${partner}:${subject.slice(4)}`,
      () => {},
    );
    await store.close();
    const rows = await withStore(path, (again) =>
      again.query({ sql: 'SELECT snapshot::INTEGER AS snapshot, d, s, subjects FROM held_atoms', params: [] }),
    );
    // Its counts stay (a re-key changes no subject's identity); its list is gone.
    expect(rows).toEqual([{ snapshot: 6, d: 2, s: 3, subjects: null }]);
  });

  it('re-keys more points than DuckDB could hold as one update in its memory', async () => {
    // 500k points under a 64 MB pool: an in-place UPDATE of their pseudonyms ran out of memory.
    // On one thread the copy's sorted INSERT ran out of it too, and not on two (duckdbThreads).
    const store = await DuckStore.open(join(dir, 'big-rekey.duckdb'), undefined, '64MB');
    try {
      const c = await store.connect();
      await c.run(
        `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day)
         SELECT 1 + i // 100000, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, 'lead_time', TIMESTAMPTZ '2026-11-01 00:00:00+00', i, sha256(i::VARCHAR), DATE '2026-11-01'
         FROM range(500000) t(i)`,
      );
      store.release(c);
      const rekeyed = await store.rekeyPseudonyms(
        store.pseudonymGeneration + 1,
        (partner, subject) => `${partner}:${subject}`,
        () => {},
      );
      expect(rekeyed).toEqual({ pseudonyms: 500000, points: 500000 });
    } finally {
      await store.close();
    }
    // Every point re-keyed once, and back in the order ingest appended them (value i at row i):
    // five row groups, where a copy without its sort came back shuffled (98 rows out of order on a 2-core machine).
    const rows = await withStore(join(dir, 'big-rekey.duckdb'), (again) =>
      again.query({
        sql: `SELECT count(*) FILTER (WHERE subject LIKE partner || ':%')::INTEGER AS rekeyed,
                count(DISTINCT subject)::INTEGER AS distinct_subjects,
                count(*) FILTER (WHERE back)::INTEGER AS out_of_order
              FROM (SELECT *, value < lag(value) OVER (ORDER BY rowid) AS back FROM points)`,
        params: [],
      }),
    );
    expect(rows).toEqual([{ rekeyed: 500000, distinct_subjects: 500000, out_of_order: 0 }]);
  });

  it('rolls the re-key back when a point has no re-keyed pseudonym, instead of losing it', async () => {
    // A point that lands after the pseudonyms were read (a room that was not stopped) has none in
    // the mapping: the rewrite's count differs and nothing is changed.
    const path = join(dir, 'miscounted-rekey.duckdb');
    const store = await storeWithSubjects(path);
    const before = store.pseudonymGeneration;
    const other = await store.connect();
    let landed = false;
    const rekeying = expect(
      store.rekeyPseudonyms(
        before + 1,
        (partner, subject) => `${partner}:${subject.slice(4)}`,
        async () => {
          if (landed) return;
          landed = true;
          await other.run(
            `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day)
             VALUES (6, 'acme', 'lead_time', TIMESTAMPTZ '2026-11-01 00:00:00+00', 5000, 'old-late', DATE '2026-11-01')`,
          );
        },
      ),
    ).rejects.toThrow('5001 points held, 5000 re-keyed; nothing was changed');
    try {
      await rekeying;
    } finally {
      store.release(other);
    }
    await store.close();
    const state = await rekeyState(path);
    expect(state).toEqual({
      ...INTACT,
      n: 5001,
      weighted: WEIGHTED + 5000 * 6,
      generation: before,
      old: 5001,
    });
  });

  it('re-keys nothing and keeps no mapping when a re-key fails part-way', async () => {
    const path = join(dir, 'failed-rekey.duckdb');
    const store = await storeWithSubjects(path);
    const before = store.pseudonymGeneration;
    let seen = 0;
    await expect(
      store.rekeyPseudonyms(
        before + 1,
        (partner, subject) => {
          if (++seen === 3000) throw new Error('key derivation failed');
          return `${partner}:${subject.slice(4)}`;
        },
        () => {},
      ),
    ).rejects.toThrow('key derivation failed');
    // The store is still usable, and the next attempt starts over.
    expect(await store.query({ sql: 'SELECT count(*)::INTEGER AS n FROM points', params: [] })).toEqual([{ n: 5000 }]);
    await store.close();
    expect(await rekeyState(path)).toEqual({ ...INTACT, generation: before, old: 5000 });
  });

  it('starts no new work once closing, not even on an idle pooled connection', async () => {
    const store = await DuckStore.open(join(dir, 'closing-pool.duckdb'));
    // Two reads at once leave two idle connections in the pool.
    await Promise.all([store.ping(), store.query({ sql: 'SELECT 1 AS one', params: [] })]);
    await store.query({ sql: 'SELECT 1 AS one', params: [] });
    const closing = store.close();
    // Asked while the close is under way: refused, not run on a connection about to close.
    await expect(store.query({ sql: 'SELECT 1 AS one', params: [] })).rejects.toThrow(/closed/);
    await expect(store.rollupThrough()).rejects.toThrow(/closed/);
    await closing;
    expect(store.closed).toBe(true);
  });
});

describe('reads beside a rewrite of the points (a new agreement version, retention)', () => {
  // One point at 23:30Z on 31 March: 1 April in Berlin, 31 March in UTC. A read takes the
  // snapshot and the version in force, then reads the point's day.
  async function storeWithPoint(name: string) {
    const store = await DuckStore.open(join(dir, name));
    await store.localise('Europe/Berlin');
    await store.recordAgreement(1);
    const c = await store.connect();
    await c.run(
      `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, local_day) VALUES (0, 'acme', 'k', TIMESTAMPTZ '2026-03-31 23:30:00+00', 1, 's', DATE '2026-04-01')`,
    );
    store.release(c);
    let version = 1;
    const read = async (pause?: Promise<void>) => {
      const snapshot = store.snapshots.latest;
      const v = version;
      await pause;
      const rows = await store.query({ sql: "SELECT strftime(local_day, '%Y-%m-%d') AS d FROM points", params: [] });
      return { snapshot, version: v, day: String(rows[0]!['d']) };
    };
    const adopt = () =>
      store.adoptAgreement({ version: 2, timezone: 'UTC' }, { partner: '(room)', at: new Date() }, () => (version = 2));
    return { store, read, adopt };
  }

  /** A stable read that has taken its snapshot and version and waits for `resume` before it reads. */
  async function readInFlight<T>(store: DuckStore, read: (pause: Promise<void>) => Promise<T>) {
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const inFlight = store.stableRead(() => {
      entered();
      return read(paused);
    });
    await inside;
    return { inFlight, resume };
  }

  it('the rewrite commits once the reads in flight have ended: they answer the snapshot before it whole', async () => {
    const { store, read, adopt } = await storeWithPoint('straddle.duckdb');
    const { inFlight, resume } = await readInFlight(store, read); // at snapshot 0 under version 1, not read yet
    let adopted = false;
    const adopting = adopt().then(() => (adopted = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(adopted).toBe(false); // waiting for the read, its transaction not committed
    expect(store.snapshots.latest).toBe(0);
    resume();
    // Without the wait it would read the UTC day under snapshot 0 and version 1.
    expect(await inFlight).toEqual({ snapshot: 0, version: 1, day: '2026-04-01' });
    await adopting;
    expect(await store.stableRead(() => read())).toEqual({ snapshot: 1, version: 2, day: '2026-03-31' });
    await store.close();
  });

  it('a retention run that deletes nothing holds no reader up', async () => {
    const { store, read } = await storeWithPoint('nothing-old.duckdb');
    const { inFlight, resume } = await readInFlight(store, read);
    // Nothing before 2026-01-01: no deletion, so no wait for the read in flight (it would never end here).
    expect(
      await store.retirePoints('2026-01-01', { id: 'r', partner: '(room)', at: new Date(), agreementVersion: 1 }),
    ).toBeUndefined();
    resume();
    expect(await inFlight).toEqual({ snapshot: 0, version: 1, day: '2026-04-01' });
    await store.close();
  });

  it("retention ends the step guard's waits (their history lost days) and keeps a dominated atom's (it rests on no history)", async () => {
    const { store } = await storeWithPoint('retire-waits.duckdb');
    const c = await store.connect();
    await c.run(`INSERT INTO held_atoms (kpi, partner, snapshot, local_day, waiting, waited_after, verdicts) VALUES
      ('k', 'acme', 1, DATE '2026-05-04', 'X', NULL, NULL), ('k', 'acme', 1, DATE '2026-05-05', 'X', 1, 1)`);
    store.release(c);
    const retired = await store.retirePoints('2026-05-01', {
      id: 'r',
      partner: '(room)',
      at: new Date(),
      agreementVersion: 1,
    });
    expect(retired).toBeDefined();
    const rows = await store.query({
      sql: "SELECT strftime(local_day, '%Y-%m-%d') AS day, waiting, waited_after FROM held_atoms ORDER BY local_day",
      params: [],
    });
    expect(rows).toEqual([
      { day: '2026-05-04', waiting: null, waited_after: null },
      { day: '2026-05-05', waiting: 'X', waited_after: 1 },
    ]);
    await store.close();
  });

  it('a switch to the version that throws fails the adoption, and leaves neither readers nor the watermark waiting', async () => {
    const { store, read } = await storeWithPoint('throws.duckdb');
    const seen: number[] = [];
    store.snapshots.onAdvance((n) => seen.push(n));
    await expect(
      store.adoptAgreement({ version: 2, timezone: 'UTC' }, { partner: '(room)', at: new Date() }, () => {
        throw new Error('a listener failed');
      }),
    ).rejects.toThrow('a listener failed');
    expect(seen).toEqual([1]); // the listeners after it still heard of the snapshot
    expect(await store.stableRead(() => read())).toEqual({ snapshot: 1, version: 1, day: '2026-03-31' });
    await store.close();
  });

  it('a read that begins while the rewrite commits waits for its snapshot', async () => {
    const { store, read, adopt } = await storeWithPoint('wait.duckdb');
    // The new snapshot's settle step is held: committed, not yet visible.
    let step!: () => void;
    const stepping = new Promise<void>((r) => (step = r));
    let stepped!: () => void;
    const reached = new Promise<void>((r) => (stepped = r));
    store.snapshots.settleWith(async () => {
      stepped();
      await stepping;
    });
    const adopted = adopt();
    await reached;
    expect(store.snapshots.latest).toBe(0);
    let answered: unknown;
    const waiting = store.stableRead(() => read()).then((r) => (answered = r));
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBeUndefined(); // not snapshot 0 on the UTC day
    step();
    await adopted;
    await waiting;
    expect(answered).toEqual({ snapshot: 1, version: 2, day: '2026-03-31' });
    await store.close();
  });
});

describe('the periods an agreement change withholds', () => {
  const by = { partner: '(room)', at: new Date() };
  async function storeWith(name: string, zone: string, points: [string, string, string, string | null][]) {
    const store = await DuckStore.open(join(dir, name));
    await store.localise(zone);
    await store.recordAgreement(1);
    const c = await store.connect();
    try {
      // [partner, UTC instant, subject, region]: released (no held atom), in the store's zone.
      for (const [partner, at, subject, region] of points)
        await c.run(
          `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, dims, local_day)
           VALUES (0, $1, 'k', $2::TIMESTAMPTZ, 1, $3, $4, timezone($5, $2::TIMESTAMPTZ)::DATE)`,
          [partner, at, subject, region === null ? null : JSON.stringify({ region }), zone],
        );
    } finally {
      store.release(c);
    }
    return store;
  }
  const rows = async (store: DuckStore) => {
    const c = await store.connect();
    try {
      return (
        await c.runAndReadAll(
          "SELECT reason, grain, strftime(period, '%Y-%m-%d') AS period FROM withheld_periods ORDER BY reason, grain, period",
        )
      ).getRowObjectsJson();
    } finally {
      store.release(c);
    }
  };

  it('a zone moving points two days: a week∩month slice it changes withholds its week and month', async () => {
    // From UTC−12 to UTC+14: 26 hours. September 2026 begins on a Tuesday, so the week of Monday
    // 31 August shares one day with August. b's one released subject at 11:00Z on 30 August
    // moves from Saturday 29 to Monday 31 August: out of the week of 24 August, into the next,
    // and from one slice of August into another while August holds it throughout. August minus
    // its whole weeks, before against after, is that one point: August is withheld too.
    const store = await storeWith('slice.duckdb', 'Etc/GMT+12', [['b', '2026-08-30 11:00:00+00', 'one', null]]);
    try {
      await store.adoptAgreement({ version: 2, timezone: 'Pacific/Kiritimati' }, by, () => undefined);
      expect(await rows(store)).toEqual([
        { reason: 'zone', grain: 'day', period: '2026-08-29' },
        { reason: 'zone', grain: 'day', period: '2026-08-31' },
        { reason: 'zone', grain: 'month', period: '2026-08-01' },
        { reason: 'zone', grain: 'week', period: '2026-08-24' },
        { reason: 'zone', grain: 'week', period: '2026-08-31' },
      ]);
      expect(store.withheldPeriods.get('k')?.get('month|2026-08-01')).toBe('zone');
    } finally {
      await store.close();
    }
  });

  it('a zone moving only pending points withholds nothing: their release is judged on the new days', async () => {
    const store = await storeWith('pending.duckdb', 'UTC', [['b', '2026-08-30 23:30:00+00', 'late', null]]);
    const c = await store.connect();
    try {
      await c.run(HOLD_ATOMS_LISTED, [0]);
      store.release(c);
      await store.adoptAgreement({ version: 2, timezone: 'Europe/Berlin' }, by, () => undefined);
      expect(await rows(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('a zone moving a pending point into the atom of a released one withholds the periods holding it: the atom is pending from then on', async () => {
    // One batch of b: one subject on Monday 9 November at 08:00Z, released; one on Sunday 8
    // November at 23:30Z, pending (alone in its week). Under UTC+14 the Sunday point is on Monday
    // 13:30, in the released point's atom, and the Monday point (22:00) does not move: nothing
    // released leaves or enters a day, but the atom is pending now, so Monday's week would show
    // the week before it less that one released point.
    const store = await storeWith('joined.duckdb', 'UTC', [
      ['b', '2026-11-09 08:00:00+00', 'one', null],
      ['b', '2026-11-08 23:30:00+00', 'late', null],
    ]);
    const c = await store.connect();
    try {
      await c.run(HOLD_ATOMS_LISTED, [0]);
      await c.run("UPDATE held_atoms SET released = 0 WHERE local_day = DATE '2026-11-09'");
      store.release(c);
      await store.adoptAgreement({ version: 2, timezone: 'Pacific/Kiritimati' }, by, () => undefined);
      expect(await rows(store)).toEqual([
        { reason: 'zone', grain: 'day', period: '2026-11-09' },
        { reason: 'zone', grain: 'month', period: '2026-11-01' },
        { reason: 'zone', grain: 'week', period: '2026-11-09' },
      ]);
    } finally {
      await store.close();
    }
  });

  it('a family a version adds: every period of a grain added, and of a dimension added back where points carry it, read back at start', async () => {
    const store = await storeWith('added.duckdb', 'UTC', [
      ['a', '2026-03-02 10:00:00+00', 's1', 'north'],
      ['a', '2026-04-15 10:00:00+00', 's2', null],
    ]);
    let previous: number | undefined;
    await store.adoptAgreement(
      { version: 2, timezone: 'UTC' },
      by,
      () => undefined,
      (v) => {
        previous = v;
        return {
          added: [
            { kpi: 'k', grain: 'month', key: null },
            { kpi: 'k', grain: 'week', key: 'region' },
            { kpi: 'other', grain: 'day', key: null },
          ],
        };
      },
    );
    // Compared with the version the store answered under until then, read in its transaction.
    expect(previous).toBe(1);
    expect(await rows(store)).toEqual([
      { reason: 'version', grain: 'month', period: '2026-03-01' },
      { reason: 'version', grain: 'month', period: '2026-04-01' },
      // Only the point that carries a region: the other one was never in a region's cells.
      { reason: 'version', grain: 'week', period: '2026-03-02' },
    ]);
    await store.close();
    const again = await DuckStore.open(join(dir, 'added.duckdb'));
    try {
      // A grain added: every breakdown of it; a dimension added back: its own breakdown only.
      expect(Object.fromEntries(again.withheldPeriods.get('k') ?? [])).toEqual({
        'month|2026-03-01': 'version',
        'month|2026-04-01': 'version',
        'week|by=region|2026-03-02': 'version',
      });
      expect(again.withheldPeriods.has('other')).toBe(false);
    } finally {
      await again.close();
    }
  });

  it("a later zone takes a version's withheld periods along with the points from before it, and weeks added over them", async () => {
    // Days added at version 2 over two points; at version 3 a zone 14 hours east moves both a day
    // on. The days they land on hold points from before version 2: withheld for the version, and
    // the days they left no longer need to be.
    const store = await storeWith('follows.duckdb', 'UTC', [
      ['a', '2026-03-02 10:00:00+00', 's1', null],
      ['a', '2026-03-31 23:30:00+00', 's2', null],
    ]);
    try {
      await store.adoptAgreement(
        { version: 2, timezone: 'UTC' },
        by,
        () => undefined,
        () => ({ added: [{ kpi: 'k', grain: 'day', key: null }] }),
      );
      const version = async () => (await rows(store)).filter((r) => r['reason'] === 'version');
      expect(await version()).toEqual([
        { reason: 'version', grain: 'day', period: '2026-03-02' },
        { reason: 'version', grain: 'day', period: '2026-03-31' },
      ]);
      // Version 3 also adds weeks over the days agreed before: withheld where those days were
      // (the rows the move recomputes are read before it, not after).
      await store.adoptAgreement(
        { version: 3, timezone: 'Pacific/Kiritimati' },
        by,
        () => undefined,
        () => ({ added: [{ kpi: 'k', grain: 'week', key: null, viaDays: true }] }),
      );
      expect(await version()).toEqual([
        { reason: 'version', grain: 'day', period: '2026-03-03' },
        { reason: 'version', grain: 'day', period: '2026-04-01' },
        { reason: 'version', grain: 'week', period: '2026-03-02' },
        { reason: 'version', grain: 'week', period: '2026-03-30' },
      ]);
      expect(store.withheldPeriods.get('k')?.get('day|2026-04-01')).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it('a store from before withheld_periods keeps the periods its zone changes withheld', async () => {
    const path = join(dir, 'older.duckdb');
    const store = await DuckStore.open(path);
    const c = await store.connect();
    await c.run(
      'CREATE TABLE zone_withheld (kpi VARCHAR NOT NULL, grain VARCHAR NOT NULL, period DATE NOT NULL, snapshot UINTEGER NOT NULL)',
    );
    await c.run("INSERT INTO zone_withheld VALUES ('k', 'day', DATE '2026-11-17', 3)");
    store.release(c);
    await store.close();
    // Copied once (opened twice: no second copy); the old table stays for an older build.
    for (let i = 0; i < 2; i++) {
      const again = await DuckStore.open(path);
      try {
        expect(again.withheldPeriods.get('k')?.get('day|2026-11-17')).toBe('zone');
        expect(await rows(again)).toEqual([{ reason: 'zone', grain: 'day', period: '2026-11-17' }]);
      } finally {
        await again.close();
      }
    }
  });
});

describe("the release step's wake", () => {
  it("makes a waiting atom a candidate again when another partner's candidate is within six days or in its month, across a month's end too", async () => {
    const loaded = loadAgreementFile(join(import.meta.dirname, '../fixtures/public-agreement.yaml'));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const kpi = loaded.agreement.kpis.find((k) => k.id === 'lead_time')!;
    const store = await DuckStore.open(join(dir, 'wake.duckdb'));
    const c = await store.connect();
    try {
      // acme's atoms of snapshot 1 wait (under agreement X unless said); the candidates are of snapshot 5.
      await c.run(`INSERT INTO held_atoms (kpi, partner, snapshot, local_day, waiting) VALUES
        ('lead_time', 'acme', 1, DATE '2026-10-31', 'X'),   -- globex's Monday 2 November: two days on, another month
        ('lead_time', 'acme', 1, DATE '2026-08-03', 'X'),   -- globex's 25 August: the same month, 22 days on
        ('lead_time', 'acme', 1, DATE '2026-09-15', 'X'),   -- nothing of another partner near
        ('lead_time', 'acme', 1, DATE '2026-12-20', 'X'),   -- only acme's own candidate near
        ('lead_time', 'acme', 1, DATE '2026-09-16', 'Y'),   -- judged under another agreement: a candidate already
        ('lead_time', 'globex', 5, DATE '2026-11-02', NULL),
        ('lead_time', 'globex', 5, DATE '2026-08-25', NULL),
        ('lead_time', 'acme', 5, DATE '2026-12-21', NULL)`);
      const step = compileReleaseStep([kpi], 5, 3, 'X');
      await c.run(step.wake.sql, step.wake.params);
      const rows = await c.runAndReadAll(
        "SELECT strftime(local_day, '%Y-%m-%d') AS day, waiting FROM held_atoms WHERE snapshot = 1 ORDER BY local_day",
      );
      expect(rows.getRowObjects()).toEqual([
        { day: '2026-08-03', waiting: null },
        { day: '2026-09-15', waiting: 'X' },
        { day: '2026-09-16', waiting: 'Y' },
        { day: '2026-10-31', waiting: null },
        { day: '2026-12-20', waiting: 'X' },
      ]);
    } finally {
      store.release(c);
      await store.close();
    }
  });

  it('makes a dominated atom a candidate again when its own part changes, or a bounded number of times on other partners’ later data near it', async () => {
    const loaded = loadAgreementFile(join(import.meta.dirname, '../fixtures/public-agreement.yaml'));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const kpi = loaded.agreement.kpis.find((k) => k.id === 'lead_time')!;
    const store = await DuckStore.open(join(dir, 'wake-dominated.duckdb'));
    const c = await store.connect();
    try {
      // acme's atoms judged dominated at snapshot 3 (under X), after `verdicts` verdicts on their
      // part; the candidates are of snapshots 2 and 5.
      await c.run(`INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, waiting, waited_after, verdicts) VALUES
        ('lead_time', 'acme', 1, DATE '2026-10-31', NULL, 'X', 3, ${DOMINANCE_VERDICTS}),        -- acme's same day, newer: woken, whatever the count
        ('lead_time', 'acme', 1, DATE '2026-12-20', NULL, 'X', 3, ${DOMINANCE_VERDICTS - 1}),    -- initech's newer data a day on: woken
        ('lead_time', 'acme', 1, DATE '2026-12-19', NULL, 'X', 3, ${DOMINANCE_VERDICTS}),        -- the same, its verdicts spent: stays
        ('lead_time', 'acme', 1, DATE '2026-08-03', NULL, 'X', 3, 1),                           -- acme's own 25 August: another part, stays
        ('lead_time', 'acme', 1, DATE '2026-09-15', NULL, 'X', 3, 1),                           -- globex's 16 September landed before the verdict: stays
        ('lead_time', 'acme', 1, DATE '2026-06-26', NULL, 'X', 3, 1),                           -- acme's same day, landed before the verdict: stays
        ('lead_time', 'acme', 1, DATE '2026-05-04', '{"r":"x"}', 'X', 3, ${DOMINANCE_VERDICTS}), -- acme's same day, other dims: stays
        ('lead_time', 'acme', 5, DATE '2026-10-31', NULL, NULL, NULL, NULL),
        ('lead_time', 'initech', 5, DATE '2026-12-21', NULL, NULL, NULL, NULL),
        ('lead_time', 'acme', 5, DATE '2026-08-25', NULL, NULL, NULL, NULL),
        ('lead_time', 'globex', 2, DATE '2026-09-16', NULL, NULL, NULL, NULL),
        ('lead_time', 'acme', 2, DATE '2026-06-26', NULL, NULL, NULL, NULL),
        ('lead_time', 'acme', 5, DATE '2026-05-04', '{"r":"y"}', NULL, NULL, NULL)`);
      const step = compileReleaseStep([kpi], 5, 3, 'X');
      await c.run(step.wake.sql, step.wake.params);
      const rows = await c.runAndReadAll(
        "SELECT strftime(local_day, '%Y-%m-%d') AS day, waiting FROM held_atoms WHERE snapshot = 1 ORDER BY local_day",
      );
      expect(rows.getRowObjects()).toEqual([
        { day: '2026-05-04', waiting: 'X' },
        { day: '2026-06-26', waiting: 'X' },
        { day: '2026-08-03', waiting: 'X' },
        { day: '2026-09-15', waiting: 'X' },
        { day: '2026-10-31', waiting: null },
        { day: '2026-12-19', waiting: 'X' },
        { day: '2026-12-20', waiting: null },
      ]);
      // A verdict counts on: one more on an unchanged part, the first on a changed or new one.
      await c.run(`INSERT INTO held_atoms (kpi, partner, snapshot, local_day, waiting, waited_after, verdicts) VALUES
        ('lead_time', 'acme', 1, DATE '2026-11-02', NULL, 3, 2),
        ('lead_time', 'acme', 1, DATE '2026-11-03', NULL, 3, 2), ('lead_time', 'acme', 5, DATE '2026-11-03', NULL, NULL, NULL),
        ('lead_time', 'acme', 5, DATE '2026-11-04', NULL, NULL, NULL)`);
      const days = ['2026-11-02', '2026-11-03', '2026-11-04'];
      const wait = step.wait(
        days.map((day) => ({ kpi: 'lead_time', partner: 'acme', day, dims: null })),
        true,
      );
      await c.run(wait.sql, wait.params);
      const marked = await c.runAndReadAll(
        "SELECT strftime(local_day, '%Y-%m-%d') AS day, snapshot, waiting, waited_after, verdicts FROM held_atoms WHERE local_day BETWEEN DATE '2026-11-02' AND DATE '2026-11-04' ORDER BY ALL",
      );
      expect(marked.getRowObjects()).toEqual([
        { day: '2026-11-02', snapshot: 1, waiting: 'X', waited_after: 5, verdicts: 3 },
        { day: '2026-11-03', snapshot: 1, waiting: 'X', waited_after: 5, verdicts: 1 },
        { day: '2026-11-03', snapshot: 5, waiting: 'X', waited_after: 5, verdicts: 1 },
        { day: '2026-11-04', snapshot: 5, waiting: 'X', waited_after: 5, verdicts: 1 },
      ]);
    } finally {
      store.release(c);
      await store.close();
    }
  });
});
