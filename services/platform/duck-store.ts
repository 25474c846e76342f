import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { sqlDir } from './paths.js';

/**
 * Snapshot numbers are handed out when a batch starts landing and become visible only
 * when every lower number has committed or aborted. A reader at the watermark therefore
 * never sees a later batch before an earlier one, and "as of N" is stable forever.
 */
export class SnapshotTracker {
  #next: number;
  #latest: number;
  readonly #pending = new Set<number>();
  readonly #committed = new Set<number>();
  readonly #listeners = new Set<(latest: number) => void>();

  constructor(latestLanded: number) {
    this.#latest = latestLanded;
    this.#next = latestLanded + 1;
  }
  /** The highest snapshot whose batch and all earlier ones are settled. */
  get latest(): number {
    return this.#latest;
  }
  reserve(): number {
    const n = this.#next++;
    this.#pending.add(n);
    return n;
  }
  commit(n: number): void {
    this.#settle(n, true);
  }
  abort(n: number): void {
    this.#settle(n, false);
  }
  onAdvance(fn: (latest: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
  #settle(n: number, committed: boolean): void {
    if (!this.#pending.delete(n)) return;
    if (committed) this.#committed.add(n);
    const before = this.#latest;
    let low = Infinity;
    for (const p of this.#pending) low = Math.min(low, p);
    const ceiling = low === Infinity ? this.#next - 1 : low - 1;
    // The watermark names the last landed batch at or below the ceiling.
    for (const c of this.#committed) {
      if (c <= ceiling) {
        this.#latest = Math.max(this.#latest, c);
        this.#committed.delete(c);
      }
    }
    if (this.#latest !== before) for (const fn of this.#listeners) fn(this.#latest);
  }
}

/**
 * Which snapshots touched which KPI. An aggregate of KPI k "as of snapshot S" equals the one
 * as of the last snapshot ≤ S that touched k, which is what query caches key on.
 */
export class KpiChanges {
  readonly #byKpi = new Map<string, number[]>();
  readonly #listeners = new Set<(snapshot: number, kpis: readonly string[]) => void>();
  /** Called with the KPIs each landed batch touched, once the snapshot watermark includes it (alerts evaluate those). */
  onChange(fn: (snapshot: number, kpis: readonly string[]) => void): () => void {
    this.#listeners.add(fn);
    return () => void this.#listeners.delete(fn);
  }
  notify(snapshot: number, kpis: readonly string[]): void {
    for (const fn of this.#listeners) fn(snapshot, kpis);
  }
  record(snapshot: number, kpis: readonly string[]): void {
    for (const k of kpis) {
      const list = this.#byKpi.get(k);
      if (!list) this.#byKpi.set(k, [snapshot]);
      else {
        list.push(snapshot);
        // Commits may finish out of snapshot order.
        for (let i = list.length - 1; i > 0 && list[i - 1]! > list[i]!; i--)
          [list[i - 1], list[i]] = [list[i]!, list[i - 1]!];
      }
    }
  }
  /** The last snapshot ≤ `snapshot` that touched `kpi` (0 if none). */
  effective(kpi: string, snapshot: number): number {
    const list = this.#byKpi.get(kpi);
    if (!list) return 0;
    let lo = 0;
    let hi = list.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]! <= snapshot) {
        found = list[mid]!;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }
}

/** Thrown when the writer is saturated: the route answers 429 with Retry-After. */
export class WriterSaturated extends Error {}

/** A counting semaphore with a bounded queue. */
export class WriterSlots {
  #free: number;
  readonly #queue: (() => void)[] = [];
  constructor(
    readonly size: number,
    readonly queueLimit: number,
  ) {
    this.#free = size;
  }
  get busy(): number {
    return this.size - this.#free;
  }
  get waiting(): number {
    return this.#queue.length;
  }
  async acquire(): Promise<() => void> {
    if (this.#free > 0) {
      this.#free--;
    } else {
      if (this.#queue.length >= this.queueLimit) throw new WriterSaturated('the ingest writer is saturated');
      await new Promise<void>((r) => this.#queue.push(r));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) next();
      else this.#free++;
    };
  }
}

/** A committed batch as the room keeps it in memory: who sent which KPIs, and when. */
export interface LandedBatch {
  snapshot: number;
  partner: string;
  kpis: readonly string[];
  receivedAt: Date;
  landedAt: Date;
}

/** The DuckDB database of landed points: one instance per process, opened lazily once. */
export class DuckStore {
  readonly snapshots: SnapshotTracker;
  readonly slots: WriterSlots;
  readonly touched = new KpiChanges();
  /** Last arrival per partner and KPI (feed freshness), and when each snapshot landed ("as of"). */
  readonly #arrivals = new Map<string, Date>();
  readonly #landedAt = new Map<number, Date>();
  /** Committed batches above the watermark: announced to touched's listeners once it reaches them. */
  readonly #unannounced = new Map<number, readonly string[]>();
  #closed = false;
  readonly #conns = new Set<DuckDBConnection>();
  /** The snapshot of the last retention run: earlier snapshots counted points that are gone. */
  retiredBefore = 0;
  /** How many secrets the stored pseudonyms are keyed with (1 + rotations). */
  pseudonymGeneration = 1;

  private constructor(
    readonly instance: DuckDBInstance,
    readonly path: string,
    latest: number,
    slots: { size: number; queue: number },
  ) {
    this.snapshots = new SnapshotTracker(latest);
    this.slots = new WriterSlots(slots.size, slots.queue);
    this.snapshots.onAdvance((watermark) => {
      for (const [snapshot, kpis] of this.#unannounced) {
        if (snapshot > watermark) continue;
        this.#unannounced.delete(snapshot);
        this.touched.notify(snapshot, kpis);
      }
    });
  }

  /**
   * A batch's transaction committed: remember what it touched and when, and settle its snapshot.
   * Listeners hear of it once the watermark includes it (batches commit out of order).
   */
  landed(b: LandedBatch): void {
    this.#remember(b);
    this.#unannounced.set(b.snapshot, b.kpis);
    this.snapshots.commit(b.snapshot);
  }

  #remember(b: LandedBatch): void {
    this.touched.record(b.snapshot, b.kpis);
    this.#landedAt.set(b.snapshot, b.landedAt);
    for (const kpi of b.kpis) {
      const key = `${b.partner}\u0000${kpi}`;
      const prev = this.#arrivals.get(key);
      if (!prev || prev < b.receivedAt) this.#arrivals.set(key, b.receivedAt);
    }
  }

  /** Last batch arrival per `partner\u0000kpi`: metadata only, kept in memory. */
  get arrivals(): ReadonlyMap<string, Date> {
    return this.#arrivals;
  }

  /** When the batch of a snapshot landed, if it did. */
  landedAt(snapshot: number): Date | undefined {
    return this.#landedAt.get(snapshot);
  }

  static async open(path: string, slots = { size: 4, queue: 16 }, memoryLimit = '256MB'): Promise<DuckStore> {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    // No extension may be downloaded at run time; parquet/json/icu are built in.
    const instance = await DuckDBInstance.create(path, {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'true',
      memory_limit: memoryLimit,
    });
    const conn = await instance.connect();
    try {
      await conn.run(readFileSync(join(sqlDir(), 'duckdb', 'schema.sql'), 'utf8'));
      const r = await conn.runAndReadAll('SELECT coalesce(max(snapshot), 0)::INTEGER AS s FROM batches');
      const latest = Number(r.getRowObjects()[0]!['s']);
      const store = new DuckStore(instance, path, latest, slots);
      const retired = (
        await conn.runAndReadAll(`SELECT value FROM room_settings WHERE key = 'retired_before_snapshot'`)
      ).getRowObjectsJson()[0];
      if (retired) store.retiredBefore = Number(retired['value']);
      const generation = (
        await conn.runAndReadAll(`SELECT value FROM room_settings WHERE key = 'pseudonym_generation'`)
      ).getRowObjectsJson()[0];
      if (generation) store.pseudonymGeneration = Number(generation['value']);
      // Batches landed before the kpis column existed get it from their points, once.
      await conn.run(
        `UPDATE batches SET kpis = (SELECT list(DISTINCT kpi ORDER BY kpi) FROM points p WHERE p.snapshot = batches.snapshot) WHERE kpis IS NULL`,
      );
      const landed = await conn.runAndReadAll(
        `SELECT snapshot::INTEGER AS s, partner, array_to_string(kpis, ',') AS k, epoch_ms(received_at)::DOUBLE AS r, epoch_ms(landed_at)::DOUBLE AS l FROM batches ORDER BY snapshot`,
      );
      for (const row of landed.getRowObjectsJson()) {
        store.#remember({
          snapshot: Number(row['s']),
          partner: String(row['partner']),
          kpis: String(row['k'] ?? '')
            .split(',')
            .filter(Boolean),
          receivedAt: new Date(Number(row['r'])),
          landedAt: new Date(Number(row['l'])),
        });
      }
      return store;
    } finally {
      conn.closeSync();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A new connection; closed by the store on shutdown if the caller forgets. */
  async connect(): Promise<DuckDBConnection> {
    if (this.#closed) throw new Error('the DuckDB store is closed');
    const c = await this.instance.connect();
    this.#conns.add(c);
    return c;
  }

  release(c: DuckDBConnection): void {
    // After close() the store has closed every connection already.
    if (this.#conns.delete(c)) c.closeSync();
  }

  /** Idle connections kept for single-statement reads (a new connection costs ~1–2 ms per query). */
  readonly #readers: DuckDBConnection[] = [];

  /**
   * Runs one autocommit read on a pooled connection. Only for statements that leave no state
   * behind (no BEGIN, no SET): the connection goes back to the pool for the next reader.
   */
  async read<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    const c = this.#readers.pop() ?? (await this.connect());
    try {
      return await fn(c);
    } finally {
      if (this.#closed || this.#readers.length >= 4) this.release(c);
      else this.#readers.push(c);
    }
  }

  async ping(): Promise<void> {
    const c = await this.connect();
    try {
      await c.run('SELECT 1');
    } finally {
      this.release(c);
    }
  }

  /**
   * Makes `points.local_day` the local day of `ts` in `timezone`: fills rows landed before the
   * column existed, and recomputes every row when the partnership's zone changed.
   */
  async localise(timezone: string): Promise<void> {
    const c = await this.connect();
    try {
      const r = await c.runAndReadAll(`SELECT value FROM room_settings WHERE key = 'timezone'`);
      const current = r.getRowObjectsJson()[0]?.['value'];
      await c.run('BEGIN TRANSACTION');
      if (current === timezone)
        await c.run('UPDATE points SET local_day = timezone($1, ts)::DATE WHERE local_day IS NULL', [timezone]);
      else await c.run('UPDATE points SET local_day = timezone($1, ts)::DATE', [timezone]);
      await c.run(`INSERT OR REPLACE INTO room_settings VALUES ('timezone', $1)`, [timezone]);
      await c.run('COMMIT');
    } finally {
      this.release(c);
    }
  }

  /** Checkpoints (folds the WAL into the file) and closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const c = await this.instance.connect();
    try {
      await c.run('CHECKPOINT');
    } finally {
      c.closeSync();
    }
    this.#closed = true;
    this.#readers.length = 0;
    for (const conn of this.#conns) conn.closeSync();
    this.#conns.clear();
    this.instance.closeSync();
  }
}
