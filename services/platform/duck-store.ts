import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue, type Json } from '@duckdb/node-api';
import { sqlDir } from './paths.js';
import { mergeDaySpans, periodStart, type DaySpans } from './calendar.js';
import { retryPause } from './backoff.js';
import { duckdbBytes, duckdbThreads } from './config.js';

/**
 * Snapshot numbers are handed out when a batch's body is in and become visible only
 * when every lower number has committed or aborted. A reader at the watermark therefore
 * never sees a later batch before an earlier one, and "as of N" is stable forever. With a
 * settle step ({@link settleWith}: the release of a snapshot's atoms, docs/privacy.md §3), each
 * committed snapshot is settled in snapshot order before the watermark includes it; the
 * snapshots that became ready while a step ran are settled together by the next one.
 */
export class SnapshotTracker {
  #next: number;
  #latest: number;
  readonly #pending = new Set<number>();
  readonly #committed = new Set<number>();
  readonly #listeners = new Set<(latest: number) => void>();
  #settle: ((ready: readonly number[]) => Promise<void>) | undefined;
  #pumping = false;
  readonly #waiters: { n: number; wake: () => void }[] = [];
  readonly #atVisible: { n: number; fn: () => void }[] = [];
  #highestCommitted: number;

  constructor(latestLanded: number) {
    this.#latest = latestLanded;
    this.#next = latestLanded + 1;
    this.#highestCommitted = latestLanded;
  }
  /** The highest snapshot whose batch and all earlier ones are settled. */
  get latest(): number {
    return this.#latest;
  }
  /**
   * Runs `fn` on the committed snapshots, in order, before the watermark includes them: one step
   * for every snapshot ready when it starts (consecutive above the watermark, none below them
   * still landing), so under concurrent batches one step settles several.
   */
  settleWith(fn: (ready: readonly number[]) => Promise<void>): void {
    this.#settle = fn;
  }
  /** The number the next {@link reserve} hands out. */
  get next(): number {
    return this.#next;
  }
  reserve(): number {
    const n = this.#next++;
    this.#pending.add(n);
    return n;
  }
  commit(n: number): void {
    if (!this.#pending.delete(n)) return;
    this.#committed.add(n);
    this.#highestCommitted = Math.max(this.#highestCommitted, n);
    this.#advance();
  }
  abort(n: number): void {
    if (this.#pending.delete(n)) this.#advance();
  }
  /**
   * Resolves once every committed snapshot has had its release step and is visible. For a caller
   * that holds every writer slot (no batch landing, so none pending): a batch gives its slot back
   * at its commit, before its step.
   */
  settled(): Promise<void> {
    // The highest number committed, not the highest handed out: an aborted one is never published.
    return this.visible(this.#highestCommitted);
  }
  /**
   * Runs `fn` in the turn the watermark reaches `n`, before the advance listeners: what readers
   * take together with the watermark (the agreement in force) changes with it, never a turn apart.
   */
  whenVisible(n: number, fn: () => void): void {
    if (this.#latest >= n) fn();
    else this.#atVisible.push({ n, fn });
  }
  onAdvance(fn: (latest: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
  /**
   * Resolves once snapshot `n` (committed) is visible, or at once when an earlier batch is still
   * landing: a batch never waits on a slower partner's upload.
   */
  visible(n: number): Promise<void> {
    if (this.#latest >= n || [...this.#pending].some((p) => p < n)) return Promise.resolve();
    return new Promise((wake) => this.#waiters.push({ n, wake }));
  }
  /** The committed snapshots every lower number of which has settled, in order. */
  #ready(): number[] {
    let low = Infinity;
    for (const p of this.#pending) low = Math.min(low, p);
    const ceiling = low === Infinity ? this.#next - 1 : low - 1;
    return [...this.#committed].filter((c) => c <= ceiling).sort((a, b) => a - b);
  }
  #advance(): void {
    if (!this.#settle) {
      const ready = this.#ready();
      for (const c of ready) this.#committed.delete(c);
      if (ready.length > 0) this.#publish(Math.max(this.#latest, ready.at(-1)!));
      return;
    }
    if (this.#pumping) return;
    this.#pumping = true;
    void (async () => {
      try {
        for (let ready = this.#ready(); ready.length > 0; ready = this.#ready()) {
          // The settle step keeps what it cannot decide pending (fail closed) and never throws.
          await this.#settle!(ready).catch(() => undefined);
          for (const c of ready) this.#committed.delete(c);
          this.#publish(Math.max(this.#latest, ready.at(-1)!));
        }
      } finally {
        this.#pumping = false;
      }
    })();
  }
  #publish(latest: number): void {
    if (latest === this.#latest) return;
    this.#latest = latest;
    for (let i = 0; i < this.#atVisible.length;)
      if (this.#atVisible[i]!.n <= latest) this.#atVisible.splice(i, 1)[0]!.fn();
      else i++;
    for (const fn of this.#listeners) fn(latest);
    for (let i = this.#waiters.length - 1; i >= 0; i--)
      if (this.#waiters[i]!.n <= latest) this.#waiters.splice(i, 1)[0]!.wake();
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
  /** Records that `kpis` changed at `snapshot` (their batch landed, or a release step released their atoms there). */
  record(snapshot: number, kpis: readonly string[]): void {
    for (const k of kpis) {
      const list = this.#byKpi.get(k);
      if (!list) this.#byKpi.set(k, [snapshot]);
      else {
        list.push(snapshot);
        // Commits may finish out of snapshot order.
        let i = list.length - 1;
        for (; i > 0 && list[i - 1]! > list[i]!; i--) [list[i - 1], list[i]] = [list[i]!, list[i - 1]!];
        if (i > 0 && list[i - 1] === list[i]) list.splice(i, 1);
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

/**
 * The (kpi, local_day) rows whose cells moved in snapshots ($1, $2] — points landed then, atoms
 * released then — of every KPI, or of one ($3) with `oneKpi` (DuckStore.touchedDays and
 * touchedDaysOf; bench:query times the latter).
 */
export function touchedDaysSql(oneKpi: boolean): string {
  const kpi = oneKpi ? 'kpi = $3 AND ' : '';
  return `SELECT kpi, local_day FROM points WHERE ${kpi}snapshot > $1 AND snapshot <= $2
  UNION ALL SELECT kpi, local_day FROM held_atoms WHERE ${kpi}released > $1 AND released <= $2`;
}

/** Thrown when the writer is saturated: the route answers 429 with Retry-After. */
export class WriterSaturated extends Error {}

/**
 * A counting semaphore with a bounded queue, shared fairly between owners (partners): one owner
 * holds at most all slots but one (another partner's batch always finds a slot or the head of
 * the queue), queues at most half the places, and a freed slot goes to the waiting owner that
 * holds the fewest (FIFO among equals). The room's own work (retention: no owner) takes every
 * slot in turn, ahead of nobody, and takes a place even in a full queue: partners keeping the queue
 * full must not keep retention or a new time zone out.
 *
 * A place in the queue may be taken before its batch can use a slot (`enqueue`): ingest reads a
 * waiting batch's body to disk first, so a slot only ever goes to a batch whose body is in (one
 * the client is still trickling holds no slot). Such a place counts against the queue's limits
 * at once, and is handed a slot only once it says it is `ready`.
 */
export class WriterSlots {
  #free: number;
  readonly #queue: { owner: string; wake: (() => void) | undefined }[] = [];
  readonly #held = new Map<string, number>();
  constructor(
    readonly size: number,
    readonly queueLimit: number,
  ) {
    this.#free = size;
  }
  get busy(): number {
    return this.size - this.#free;
  }
  /** Places taken in the queue: batches waiting for a slot, and those still reading their body. */
  get waiting(): number {
    return this.#queue.length;
  }
  /** Batches ready to use a slot the moment one is free. */
  get readyWaiting(): number {
    return this.#queue.filter((w) => w.wake).length;
  }
  /** Whether a ready waiter would take the slot `owner` gives back (none kept from it by its cap). */
  wouldServe(owner: string): boolean {
    return this.#queue.some(
      (w) => w.wake && (w.owner === '' || this.held(w.owner) - (w.owner === owner ? 1 : 0) < this.ownerCap),
    );
  }
  /** What one owner may hold at once: all slots but one (one slot: that one). */
  get ownerCap(): number {
    return Math.max(1, this.size - 1);
  }
  held(owner: string): number {
    return this.#held.get(owner) ?? 0;
  }
  /**
   * A slot now, if one is free and the owner is under its cap. A free slot is owed to no ready
   * waiter: #dispatch hands every slot that comes free (and every place that becomes ready) to a
   * ready waiter that may take it, so a waiter still queued beside a free slot is one its cap
   * keeps out, and it does not keep the others out.
   */
  tryAcquire(owner = ''): (() => void) | undefined {
    if (this.#free === 0 || (owner !== '' && this.held(owner) >= this.ownerCap)) return undefined;
    this.#take(owner);
    return this.#releaser(owner);
  }
  /** A slot, once one is free; the room's own work (no owner) is never refused for a full queue. */
  async acquire(owner = ''): Promise<() => void> {
    return this.tryAcquire(owner) ?? this.enqueue(owner, owner === '').ready();
  }
  /**
   * A place in the queue, held until `ready()` asks for a slot (resolving once one is handed over)
   * or `cancel()` gives the place back. WriterSaturated when the queue, or the owner's half of it,
   * is full, unless `force` (a batch that gave its slot up was let in already: it queues again
   * at the back, never refused).
   */
  enqueue(owner = '', force = false): { ready(): Promise<() => void>; cancel(): void } {
    const queued = owner === '' ? 0 : this.#queue.filter((w) => w.owner === owner).length;
    if (
      !force &&
      (this.#queue.length >= this.queueLimit || (owner !== '' && queued >= Math.max(1, Math.ceil(this.queueLimit / 2))))
    )
      throw new WriterSaturated('the ingest writer is saturated');
    const place: { owner: string; wake: (() => void) | undefined } = { owner, wake: undefined };
    this.#queue.push(place);
    return {
      // Taken for this waiter by #dispatch before it wakes: the counts are exact at every moment.
      ready: async () => {
        await new Promise<void>((wake) => {
          place.wake = wake;
          // A slot may be free already, kept from this owner by its cap or by others queued first.
          this.#dispatch();
        });
        return this.#releaser(owner);
      },
      cancel: () => {
        const i = this.#queue.indexOf(place);
        if (i >= 0 && !place.wake) this.#queue.splice(i, 1);
      },
    };
  }
  #releaser(owner: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (owner !== '') {
        const n = this.held(owner) - 1;
        if (n > 0) this.#held.set(owner, n);
        else this.#held.delete(owner);
      }
      this.#free++;
      this.#dispatch();
    };
  }
  #take(owner: string): void {
    this.#free--;
    if (owner !== '') this.#held.set(owner, this.held(owner) + 1);
  }
  /** Hands free slots to ready waiters: fewest held first (the room's own work first), never above an owner's cap. */
  #dispatch(): void {
    while (this.#free > 0 && this.#queue.length > 0) {
      let pick = -1;
      let best = Infinity;
      this.#queue.forEach((w, i) => {
        if (!w.wake) return;
        const held = w.owner === '' ? -1 : this.held(w.owner);
        if (w.owner !== '' && held >= this.ownerCap) return;
        if (held < best) [pick, best] = [i, held];
      });
      if (pick < 0) return;
      const [w] = this.#queue.splice(pick, 1);
      this.#take(w!.owner);
      w!.wake!();
    }
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

/** A batch's receipt as the store keeps it in `batches`: ingest's batches and retention runs alike. */
export interface BatchRecord {
  id: string;
  snapshot: number;
  partner: string;
  idempotencyKey: string | null;
  bodySha256: string;
  contentType: string;
  accepted: number;
  rejected: number;
  checksum: string;
  /** JSON text: a batch's field errors, or what a retention run deleted. */
  errors: string;
  agreementVersion: number;
  /** Instants: ISO-8601 when written; as DuckDB renders them when read (parse with Date). */
  receivedAt: string;
  landedAt: string;
  kpis: readonly string[];
}

/**
 * Local days of a KPI whose points a retention run deleted at `snapshot`: no point carries that
 * snapshot, so the rollups learn of them here ({@link DuckStore.removedDays}) and recompute them.
 */
export interface RemovedDays {
  kpi: string;
  lo: string;
  hi: string;
  snapshot: number;
}

/** What a retention run deleted (its own snapshot, like a batch's). */
export interface Retirement {
  snapshot: number;
  deleted: number;
  perKpi: Record<string, number>;
}

/** What a release step runs its statements on: the settle transaction of one snapshot. */
export interface ReleaseExec {
  run(sql: string, params?: DuckDBValue[]): Promise<number>;
  all(sql: string, params?: DuckDBValue[]): Promise<Record<string, Json>[]>;
}

/**
 * Decides, in the settle transaction of `snapshot`, which pending atoms of `kpis` (those it and
 * the snapshots settled with it touched) are released there (the query layer's disclosure
 * model, services/query/release.ts).
 */
export type Releaser = (exec: ReleaseExec, snapshot: number, kpis: readonly string[]) => Promise<void>;

/**
 * Holds the atoms of snapshot $1's points as pending, each with what its release step decides on
 * (schema.sql, held_atoms: `d` distinct subjects by hash, a lower bound; `s` the sum).
 */
export const HOLD_ATOMS = [
  'INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, d, s)',
  'SELECT kpi, partner, snapshot, local_day, dims, count(DISTINCT hash(subject))::INTEGER, sum(value)::DOUBLE',
  'FROM points WHERE snapshot = $1 GROUP BY kpi, partner, snapshot, local_day, dims',
].join('\n');

/** An atom with fewer distinct subjects (by hash) than this keeps them when its batch is small (LISTED_BATCH_POINTS). */
export const LISTED_SUBJECTS = 32;
/**
 * The most points of a batch whose small atoms keep their subjects: listing costs the statement
 * about half a microsecond a point (a million points: 165 → 660 ms in process), which a batch of
 * ten thousand pays in a few milliseconds and a big push's atoms, almost all of many subjects,
 * would not use.
 */
export const LISTED_BATCH_POINTS = 20_000;

/** HOLD_ATOMS, with the subjects of each atom of fewer than LISTED_SUBJECTS (schema.sql, held_atoms). */
export const HOLD_ATOMS_LISTED = [
  'INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, d, s, subjects)',
  'SELECT kpi, partner, snapshot, local_day, dims, count(DISTINCT hash(subject))::INTEGER, sum(value)::DOUBLE,',
  `  CASE WHEN count(DISTINCT hash(subject)) < ${LISTED_SUBJECTS} THEN list(DISTINCT subject) END`,
  'FROM points WHERE snapshot = $1 GROUP BY kpi, partner, snapshot, local_day, dims',
].join('\n');

/**
 * A new time zone moves points to other local days: the atoms of every snapshot with a held atom
 * under their points' new days, read before the points move, each with its counts (HOLD_ATOMS)
 * and pending when any of its points was (fail closed), else released at the latest of its
 * points' releases (a point without a row was released with its batch); an atom all of whose
 * points were released with their batch needs no row. Their subjects are not listed again: a
 * step counts such an atom's small part from its points.
 */
const RELOCALISED_ATOMS = [
  'CREATE TEMP TABLE relocalised_atoms AS',
  'SELECT p.kpi, p.partner, p.snapshot, timezone($1, p.ts)::DATE AS local_day, p.dims,',
  '  CASE WHEN bool_or(h.partner IS NOT NULL AND h.released IS NULL) THEN NULL',
  '    ELSE max(coalesce(h.released, p.snapshot)) END AS released,',
  '  count(DISTINCT hash(p.subject))::INTEGER AS d, sum(p.value)::DOUBLE AS s',
  'FROM points p LEFT JOIN held_atoms h ON h.kpi = p.kpi AND h.partner = p.partner AND h.snapshot = p.snapshot',
  '  AND h.local_day = p.local_day AND h.dims IS NOT DISTINCT FROM p.dims',
  'WHERE p.snapshot IN (SELECT DISTINCT snapshot FROM held_atoms)',
  'GROUP BY p.kpi, p.partner, p.snapshot, timezone($1, p.ts)::DATE, p.dims HAVING bool_or(h.partner IS NOT NULL)',
].join('\n');

/**
 * `released_atoms` (schema.sql) from the points and their atoms: per atom key, the latest
 * snapshot that released points of it (a row's `released`; a point without a row was released
 * with its batch). What the release steps keep current one step at a time; rebuilt where points
 * move (a new time zone) and when the table is new to a store.
 */
const REBUILD_RELEASED_ATOMS = [
  'INSERT INTO released_atoms',
  'SELECT p.kpi, p.partner, p.local_day, p.dims, max(coalesce(h.released, p.snapshot))',
  'FROM points p LEFT JOIN held_atoms h ON h.kpi = p.kpi AND h.partner = p.partner AND h.snapshot = p.snapshot',
  '  AND h.local_day = p.local_day AND h.dims IS NOT DISTINCT FROM p.dims',
  'WHERE h.partner IS NULL OR h.released IS NOT NULL',
  'GROUP BY p.kpi, p.partner, p.local_day, p.dims',
].join('\n');

/**
 * What a release step at $1 runs once it released atoms, before it deletes the rows of those
 * released with their own batch: every atom key released there gets `last` = $1 in
 * `released_atoms` (REBUILD_RELEASED_ATOMS, one step at a time).
 */
export const RECORD_RELEASES = [
  [
    'DELETE FROM released_atoms r WHERE EXISTS (SELECT 1 FROM held_atoms h WHERE h.released = $1',
    '  AND h.kpi = r.kpi AND h.partner = r.partner AND h.local_day = r.local_day AND h.dims IS NOT DISTINCT FROM r.dims)',
  ].join('\n'),
  'INSERT INTO released_atoms SELECT DISTINCT kpi, partner, local_day, dims, $1 FROM held_atoms WHERE released = $1',
] as const;

/** The KPIs whose atoms of an earlier snapshot a step released at $1 (the store reads the same rows back when it opens). */
const RELEASED_LATE = 'SELECT DISTINCT kpi FROM held_atoms WHERE released = $1 AND snapshot < $1';

/** Until the room installs its disclosure model (assembly/open-room.ts), nothing is released: fail closed. */
const releaseNothing: Releaser = () => Promise.resolve();

/** One statement and its parameters, as the aggregate compiler makes them. */
export interface Statement {
  sql: string;
  params: DuckDBValue[];
}

// room_settings keys: what the store remembers across restarts besides points and batches.
const TIMEZONE = 'timezone';
const RETIRED_BEFORE = 'retired_before_snapshot';
const RETAINED_FROM = 'retained_from_day';
const AGREEMENT_IN_FORCE = 'agreement_in_force';
const PSEUDONYM_GENERATION = 'pseudonym_generation';
const ROLLUP_THROUGH = 'rollup_through';
const RELEASED_ATOMS_BUILT = 'released_atoms_built';
const ROLLUP_REMOVED = 'rollup_removed:';
const ZONE_WITHHELD_COPIED = 'zone_withheld_copied';

// Spool rows are `kpi, epoch ms, value, pseudonym, dims JSON` separated by tabs; nothing in
// them can hold a tab or newline (ids are checked, JSON escapes control characters). One thread
// reads a segment (parallel = false): the parse and spool workers need the other cores while the
// next segments are on their way, and one thread keeps pace with the one spool worker writing
// them. On 2 cores a second reading thread cost the workers more than it bought (one
// big NDJSON / JSON / Arrow / CSV push 0.79 / 0.72 / 0.74 / 0.63× → 0.85 / 0.86 / 0.80 / 0.68×
// the ceiling, means of three A/B runs: docs/performance-log.md, Ingest).
const INSERT_SEGMENT = `INSERT INTO points (snapshot, partner, kpi, ts, value, subject, dims, local_day)
  SELECT $1::UINTEGER, $2::VARCHAR, kpi, make_timestamptz(ms * 1000), value, subject, nullif(dims, ''), timezone($4, make_timestamptz(ms * 1000))::DATE
  FROM read_csv($3, delim = '\t', header = false, quote = '', escape = '', auto_detect = false, buffer_size = 4194304, parallel = false,
    columns = {'kpi': 'VARCHAR', 'ms': 'BIGINT', 'value': 'DOUBLE', 'subject': 'VARCHAR', 'dims': 'VARCHAR'})`;

const INSERT_BATCH = `INSERT INTO batches (id, snapshot, partner, idempotency_key, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at, kpis)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::TIMESTAMPTZ, $13::TIMESTAMPTZ, CASE WHEN $14 = '' THEN []::VARCHAR[] ELSE string_split($14, ',') END)`;

/**
 * The periods a move of every point to its local day in `timezone` changes, read before the
 * points move: for every grain (day, week, month: a later version may agree one again) and the
 * week∩month slices (a bad slice withholds its week and month), every period a released point
 * leaves or enters, and every period holding a released point whose atom a pending point joins
 * (the atom is pending from then on, RELOCALISED_ATOMS: the period loses the released point
 * though nothing left it). Withheld from then on, at every breakdown (docs/privacy.md §3).
 *
 * Why every such period, and not only those a small part moves through: readers keep every
 * value they read, at every snapshot. A period's value after the move against its value before
 * some earlier release is the points that moved plus those released since, which no rule judged
 * together — four subjects released into a day, three of them moved out (a part of k), left the
 * day one subject above its value before the release. A period whose released points are the
 * same after the move (none left, entered, or turned pending by a pending point joining their
 * atom) has had, in the new arrangement, exactly the history it had: every difference a reader
 * can take is a union of released changes, each judged when released. By induction this holds
 * across any sequence of zones (a period changed once stays withheld). Pending points move
 * unseen; their release is judged in the new arrangement.
 */
async function zoneWithheldPeriods(
  c: DuckDBConnection,
  timezone: string,
): Promise<{ kpi: string; grain: string; period: string }[]> {
  // One scan: the distinct (KPI, old day, new day) of the released points that move, then each
  // grain's cells of both days (a slice: the later of its week's and month's starts).
  const cell = (day: string) =>
    `CASE g.grain WHEN 'day' THEN ${day} WHEN 'week' THEN date_trunc('week', ${day}) WHEN 'month' THEN date_trunc('month', ${day})` +
    ` ELSE greatest(date_trunc('week', ${day}), date_trunc('month', ${day})) END`;
  const rows = await c.runAndReadAll(
    [
      "WITH g AS (SELECT * FROM (VALUES ('day'), ('week'), ('month'), ('slice')) AS g(grain)),",
      'pts AS (SELECT p.kpi, p.partner, p.snapshot, p.dims, p.local_day AS od, timezone($1, p.ts)::DATE AS nd,',
      // Released at the snapshot in force: no row of its atom says it is pending.
      '    h.partner IS NULL OR h.released IS NOT NULL AS rel',
      '  FROM points p LEFT JOIN held_atoms h ON h.kpi = p.kpi AND h.partner = p.partner AND h.snapshot = p.snapshot',
      '    AND h.local_day = p.local_day AND h.dims IS NOT DISTINCT FROM p.dims),',
      'mv AS (SELECT DISTINCT kpi, od, nd FROM pts WHERE rel AND od <> nd),',
      // The atoms pending after the move (one is pending when any of its points is: RELOCALISED_ATOMS).
      'pend AS (SELECT DISTINCT kpi, partner, snapshot, nd, dims FROM pts WHERE NOT rel),',
      // Released points, moved or not, whose atom a pending point joins: pending from now on, so
      // their periods lose them without a point leaving.
      'joined AS (SELECT DISTINCT x.kpi, x.nd FROM pts x JOIN pend q ON q.kpi = x.kpi AND q.partner = x.partner',
      '  AND q.snapshot = x.snapshot AND q.nd = x.nd AND q.dims IS NOT DISTINCT FROM x.dims WHERE x.rel),',
      `cells AS (SELECT mv.kpi, g.grain, ${cell('mv.od')} AS oc, ${cell('mv.nd')} AS nc FROM mv, g),`,
      'moved AS (SELECT kpi, grain, oc AS c FROM cells WHERE oc <> nc UNION SELECT kpi, grain, nc AS c FROM cells WHERE oc <> nc',
      `  UNION SELECT joined.kpi, g.grain, ${cell('joined.nd')} FROM joined, g)`,
      // A slice withholds its week and its month.
      "SELECT kpi, grain, strftime(c, '%Y-%m-%d') AS period FROM moved WHERE grain <> 'slice'",
      "UNION SELECT kpi, 'week', strftime(date_trunc('week', c), '%Y-%m-%d') FROM moved WHERE grain = 'slice'",
      "UNION SELECT kpi, 'month', strftime(date_trunc('month', c), '%Y-%m-%d') FROM moved WHERE grain = 'slice'",
      'ORDER BY kpi, period, grain',
    ].join('\n'),
    [timezone],
  );
  return rows
    .getRowObjectsJson()
    .map((r) => ({ kpi: String(r['kpi']), grain: String(r['grain']), period: String(r['period']) }));
}

/** The day, week and month of each day (ISO weeks start on Monday), once each. */
function periodsOfDays(
  days: readonly { kpi: string; day: string }[],
): { kpi: string; grain: string; period: string }[] {
  const out = new Map<string, { kpi: string; grain: string; period: string }>();
  for (const { kpi, day } of days)
    for (const grain of ['day', 'week', 'month'] as const) {
      const period = periodStart(day, grain);
      out.set(`${kpi}|${grain}|${period}`, { kpi, grain, period });
    }
  return [...out.values()];
}

/** A cell family a new agreement version lets readers read that the version before did not. */
export interface AddedFamily {
  kpi: string;
  grain: 'day' | 'week' | 'month';
  /** A dimension added back (its breakdown only), or null: a grain added (every breakdown of it). */
  key: string | null;
  /**
   * A week or month added where the version before agreed days: withheld only over the points
   * whose days were withheld for a version themselves (never served, so never judged).
   */
  viaDays?: true;
}

/**
 * What a new agreement version changes in the cells readers may read, against the version the
 * store answered under until then: the families it adds, and, for each KPI whose families it
 * drops, a statement giving the days (on the new version's local days) of the points the old
 * version's rules protect (`day` rows; compileProtectedDays), run before the points move.
 */
export interface VersionChange {
  added: readonly AddedFamily[];
  protectedDays?: readonly (Statement & { kpi: string })[];
}

/** A row of withheld_periods: `dimension` null withholds the period at every breakdown of its grain. */
interface WithheldPeriod {
  kpi: string;
  grain: string;
  dimension: string | null;
  period: string;
  /**
   * `dropped` (served as `version`): periods holding points a dropped family protected, which,
   * like `zone`'s, stay where they are when a later zone moves the points (`version`'s are
   * computed again on the new days).
   */
  reason: 'zone' | 'version' | 'dropped';
}

/**
 * The periods of families added by versions that hold points landed before the version (its
 * snapshot `before`), on their local days as they are now: a grain added, every period of it
 * holding a point of the KPI; a dimension added back, every period holding a point that carries
 * it (a dimension added for the first time: none, since the room refused it on points until
 * then). Those cells were never judged together with what was served before, which readers
 * keep: a week served under the version before, minus the days the new one shows, gives a day's
 * part below k; a change released in weeks is one subject on a day. Computed again whenever the
 * points move to other days (a later time zone), so they stay withheld wherever they go.
 */
async function versionWithheldPeriods(
  c: DuckDBConnection,
  added: readonly (AddedFamily & { before: number })[],
): Promise<(WithheldPeriod & { snapshot: number })[]> {
  const out: (WithheldPeriod & { snapshot: number })[] = [];
  const trunc = { day: "'day'", week: "'week'", month: "'month'" } as const;
  for (const a of added) {
    const rows = await c.runAndReadAll(
      [
        `SELECT DISTINCT strftime(date_trunc(${trunc[a.grain]}, local_day), '%Y-%m-%d') AS period FROM points`,
        `WHERE kpi = $1 AND snapshot < $2${a.key === null ? '' : ' AND json_extract_string(dims, $3) IS NOT NULL'} ORDER BY period`,
      ].join(' '),
      [a.kpi, a.before, ...(a.key === null ? [] : [`$.${a.key}`])],
    );
    for (const row of rows.getRowObjectsJson())
      out.push({
        kpi: a.kpi,
        grain: a.grain,
        dimension: a.key,
        period: String(row['period']),
        reason: 'version',
        snapshot: a.before,
      });
  }
  return out;
}

/** Every row of withheld_periods, the earliest first. */
async function withheldRows(c: DuckDBConnection): Promise<WithheldPeriod[]> {
  const rows = await c.runAndReadAll(
    "SELECT kpi, grain, dimension, strftime(period, '%Y-%m-%d') AS period, reason FROM withheld_periods ORDER BY snapshot, reason DESC, kpi, grain, period",
  );
  return rows.getRowObjectsJson().map((r) => ({
    kpi: String(r['kpi']),
    grain: String(r['grain']),
    dimension: r['dimension'] === null ? null : String(r['dimension']),
    period: String(r['period']),
    reason: r['reason'] === 'zone' ? 'zone' : r['reason'] === 'dropped' ? 'dropped' : 'version',
  }));
}

/**
 * Moves every point to its local day in `timezone`, in the caller's transaction. The atoms are
 * keyed by local day: re-keyed with their points, each keeping what its points were (schema.sql,
 * held_atoms). Otherwise a pending point whose day moved would have no row, and count as released
 * without any release step deciding on it.
 */
async function relocalise(c: DuckDBConnection, timezone: string): Promise<void> {
  await c.run(RELOCALISED_ATOMS, [timezone]);
  await c.run('UPDATE points SET local_day = timezone($1, ts)::DATE', [timezone]);
  await c.run('DELETE FROM held_atoms');
  await c.run(
    'INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims, released, d, s) SELECT * FROM relocalised_atoms',
  );
  await c.run('DROP TABLE relocalised_atoms');
  await c.run('DELETE FROM released_atoms');
  await c.run(REBUILD_RELEASED_ATOMS);
  await putSetting(c, TIMEZONE, timezone);
}

async function setting(c: DuckDBConnection, key: string): Promise<string | undefined> {
  const row = (await c.runAndReadAll('SELECT value FROM room_settings WHERE key = $1', [key])).getRowObjectsJson()[0];
  return row ? String(row['value']) : undefined;
}

/**
 * Appends every distinct (partner, pseudonym) of the points, read on `reader`, with its re-keyed
 * value to the writer's `pseudonym_rekey`, telling `onProgress` (and awaiting it) after each
 * chunk; returns how many.
 */
async function mapPseudonyms(
  reader: DuckDBConnection,
  writer: DuckDBConnection,
  rekey: (partner: string, subject: string) => string,
  onProgress: (done: number) => void | Promise<void>,
): Promise<number> {
  const appender = await writer.createAppender('pseudonym_rekey', 'main', 'temp');
  let done = 0;
  let flushed = false;
  try {
    const result = await reader.stream('SELECT DISTINCT partner, subject FROM points');
    for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
      for (const [partner, subject] of chunk.getRows() as [string, string][]) {
        appender.appendVarchar(partner);
        appender.appendVarchar(subject);
        appender.appendVarchar(rekey(partner, subject));
        appender.endRow();
        done++;
      }
      await onProgress(done);
    }
    appender.closeSync(); // flushes: every row is in the table before the rewrite reads it
    flushed = true;
  } finally {
    // After a failure, what failed is reported, not the close of an appender whose rows go anyway.
    if (!flushed)
      try {
        appender.closeSync();
      } catch {
        // ignored
      }
  }
  return done;
}

async function putSetting(c: DuckDBConnection, key: string, value: string): Promise<void> {
  await c.run('INSERT OR REPLACE INTO room_settings VALUES ($1, $2)', [key, value]);
}

/** The receipt of a snapshot the room takes itself (a retention run, a new agreement version): no points. */
function insertRoomReceipt(
  c: DuckDBConnection,
  receipt: { id: string; partner: string; at: Date },
  snapshot: number,
  contentType: 'retention' | 'agreement',
  details: Record<string, unknown>,
  agreementVersion: number,
  kpis: string[],
): Promise<void> {
  const at = receipt.at.toISOString();
  return insertBatch(c, {
    id: receipt.id,
    snapshot,
    partner: receipt.partner,
    idempotencyKey: null,
    bodySha256: '',
    contentType,
    accepted: 0,
    rejected: 0,
    checksum: '',
    errors: JSON.stringify(details),
    agreementVersion,
    receivedAt: at,
    landedAt: at,
    kpis,
  });
}

async function insertBatch(c: DuckDBConnection, b: BatchRecord): Promise<void> {
  await c.run(INSERT_BATCH, [
    b.id,
    b.snapshot,
    b.partner,
    b.idempotencyKey,
    b.bodySha256,
    b.contentType,
    b.accepted,
    b.rejected,
    b.checksum,
    b.errors,
    b.agreementVersion,
    b.receivedAt,
    b.landedAt,
    b.kpis.join(','),
  ]);
}

/**
 * A write transaction on the store, as a batch lands: its points, segment by segment, then its
 * receipt. Only {@link DuckStore.transaction} makes one.
 *
 * The batch takes its snapshot number once its body is in ({@link SnapshotTracker.reserve}), but
 * its points go in while the body streams. They go in under a provisional number, the one the
 * next reservation would take when the first segment went in. When no other batch reserved in
 * between, that is the batch's number, and its points stand as they went in. Otherwise the
 * stamp rewrites them. A big batch is then kept as DuckDB wrote it while it streamed (its row
 * groups are already in the file): an UPDATE of its rows made the commit write every row to the
 * WAL and checkpoint them again (10M points: 4.1 s against 0.7 s, docs/performance-log.md).
 */
export class StoreTransaction {
  readonly #c: DuckDBConnection;
  readonly #open: () => boolean;
  readonly #snapshots: SnapshotTracker;
  #provisional: number | undefined;
  constructor(c: DuckDBConnection, open: () => boolean, snapshots: SnapshotTracker) {
    this.#c = c;
    this.#open = open;
    this.#snapshots = snapshots;
  }

  /** The connection while the transaction is open: a statement after COMMIT or ROLLBACK would autocommit. */
  get #conn(): DuckDBConnection {
    if (!this.#open()) throw new Error('the store transaction is over');
    return this.#c;
  }

  /**
   * Appends a spooled segment of a batch's points, with their local day in `timezone`, under the
   * transaction's provisional snapshot number until {@link stampSnapshot}.
   */
  async appendPoints(segment: string, b: { partner: string; timezone: string }): Promise<void> {
    const c = this.#conn;
    if (this.#provisional === undefined) {
      // DuckDB starts a transaction's view at its first statement that reads a table, not at
      // BEGIN. Started before the number is chosen, this transaction sees no other batch's points
      // under it: a batch that reserves it later also commits later.
      await c.run('SELECT 1 FROM points LIMIT 0');
      this.#provisional = this.#snapshots.next;
    }
    await c.run(INSERT_SEGMENT, [this.#provisional, b.partner, segment, b.timezone]);
  }

  /**
   * Gives the batch's `points` points the snapshot it took once its body was in, unless they
   * went in under that number already. The rows a stamp rewrites are this transaction's own
   * (no other transaction's rows under the provisional number are visible here); a count that
   * differs fails the batch rather than land it with another batch's points renumbered.
   */
  async stampSnapshot(snapshot: number, points: number): Promise<void> {
    if (snapshot < 1) throw new RangeError('stampSnapshot: snapshots start at 1');
    const provisional = this.#provisional;
    if (provisional === undefined || provisional === snapshot) return;
    const stamped = Number(
      (await this.#conn.run('UPDATE points SET snapshot = $1 WHERE snapshot = $2', [snapshot, provisional]))
        .rowsChanged,
    );
    if (stamped !== points) throw new Error(`stamped ${stamped} points of a batch of ${points}`);
  }

  /**
   * The atoms of the batch's `points` points (partner × local day × dims), pending until the
   * release step of its snapshot decides (fail closed: an atom no step released is never
   * counted); a small batch's atoms of few subjects keep them (HOLD_ATOMS_LISTED).
   */
  async holdAtoms(snapshot: number, points: number): Promise<void> {
    await this.#conn.run(points <= LISTED_BATCH_POINTS ? HOLD_ATOMS_LISTED : HOLD_ATOMS, [snapshot]);
  }

  /** The batch's receipt: its snapshot lands with its points. */
  async insertBatch(b: BatchRecord): Promise<void> {
    await insertBatch(this.#conn, b);
  }
}

/** Attempts of a release step before its atoms are left pending, and the pauses between them (1 s, then 2 s). */
const RELEASE_ATTEMPTS = 3;
const RELEASE_RETRY = { firstMs: 1_000, maxMs: 2_000 };

/** How long close() lets the store's running work finish before interrupting it, and waits in all. */
const CLOSE_GRACE_MS = 2_000;
const CLOSE_WAIT_MS = 15_000;

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
  /** Set by close(): no new work starts, and a second close() waits for the first. */
  #closing: Promise<void> | undefined;
  readonly #conns = new Set<DuckDBConnection>();
  /** Work holding every writer slot (retention, a new zone), chained: one at a time. */
  #writersTaken: Promise<unknown> = Promise.resolve();
  #localisedZone: string | undefined;
  /** The snapshot of the last retention run: earlier snapshots counted points that are gone. */
  retiredBefore = 0;
  /**
   * The first local day the last retention run kept (null before any run): a cell of an earlier
   * period lost points to it, so it is withheld (disclosure.ts, reason `retention`).
   */
  retainedFrom: string | null = null;
  /**
   * Per KPI, the periods (`grain|YYYY-MM-DD`) an agreement change withheld from then on, with why
   * (withheld_periods, {@link adoptAgreement}; disclosure.ts): `zone`, a new time zone moved
   * released points into or out of them; `version`, a version added their family over points
   * landed before it. Keys: `grain|period` at every breakdown, `grain|by=key|period` at one
   * dimension's.
   */
  readonly withheldPeriods = new Map<string, Map<string, 'zone' | 'version'>>();
  /** How many secrets the stored pseudonyms are keyed with (1 + rotations). */
  pseudonymGeneration = 1;
  /**
   * The agreement version the room answers under and the snapshot it took when it came into force
   * ({@link adoptAgreement}): an earlier snapshot was answered under an earlier version, so a
   * `?snapshot=` below `since` is refused (resolveRange). Undefined until the room records one.
   */
  agreementInForce: { version: number; since: number } | undefined;

  /** DuckDB's memory limit (its pool), in bytes: what a statement may hold (rollups.ts sizes its statements by it). */
  memoryBytes = 256e6;

  private constructor(
    readonly instance: DuckDBInstance,
    readonly path: string,
    latest: number,
    slots: { size: number; queue: number },
  ) {
    this.snapshots = new SnapshotTracker(latest);
    this.snapshots.settleWith((ready) => this.#release(ready));
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

  /** The release step of every settle step (services/query/release.ts); until set, nothing is released. */
  releaser: Releaser = releaseNothing;
  /** Release steps that failed every attempt (one per settle step, grouped snapshots included): their atoms stay pending until a later step of the KPI releases them. */
  releaseFailures = 0;
  /** Attempts of release steps that failed and were run again (#release). */
  releaseRetries = 0;
  /** The pauses before a failed release step runs again (a test lengthens them to see a close end one). */
  releaseRetry: { firstMs: number; maxMs: number } = RELEASE_RETRY;
  /** Release steps that committed since start, and the seconds their transactions took (a batch's fixed cost beyond its points). */
  readonly releaseSteps = { count: 0, seconds: 0 };
  readonly #releaseErrorListeners = new Set<(err: unknown, snapshot: number) => void>();
  onReleaseError(fn: (err: unknown, snapshot: number) => void): () => void {
    this.#releaseErrorListeners.add(fn);
    return () => void this.#releaseErrorListeners.delete(fn);
  }

  /**
   * Settles committed snapshots: their KPIs' pending atoms released or kept, in one transaction.
   * Several ready at once (batches that committed while the last step ran) are settled as one
   * step at the highest of them: their atoms' change is decided together and released there,
   * pending at the snapshots before it (docs/privacy.md §3) — one step's fixed cost for all.
   *
   * A step that fails (DuckDB short of memory while a refresh holds it, say) rolled back whole
   * and is run again at the same snapshot after the pauses of RELEASE_RETRY: nobody has
   * read the snapshot yet, since the watermark waits for its step. After RELEASE_ATTEMPTS, or once
   * the store is closing, its atoms stay pending (fail closed) until a later step of the KPI.
   */
  async #release(ready: readonly number[]): Promise<void> {
    const snapshot = ready.at(-1)!;
    const kpis = [...new Set(ready.flatMap((n) => this.#unannounced.get(n) ?? []))];
    if (kpis.length === 0 || this.closed) return;
    for (let attempt = 1; ; attempt++) {
      try {
        const t0 = performance.now();
        const releasedLate = await this.#transaction(async (c) => {
          const exec: ReleaseExec = {
            run: async (sql, params) => Number((await c.run(sql, params)).rowsChanged),
            all: async (sql, params) => (await c.runAndReadAll(sql, params)).getRowObjectsJson(),
          };
          await this.releaser(exec, snapshot, kpis);
          return exec.all(RELEASED_LATE, [snapshot]);
        });
        this.releaseSteps.count++;
        this.releaseSteps.seconds += (performance.now() - t0) / 1000;
        // A KPI whose atoms of an earlier snapshot (one settled with this one, or one that waited)
        // were released here changed here too, whether or not this snapshot's batch touched it:
        // aggregate caches and rollups key on a KPI's last change. The same rows tell a reopened store.
        this.touched.record(
          snapshot,
          releasedLate.map((r) => String(r['kpi'])),
        );
        return;
      } catch (err) {
        if (attempt < RELEASE_ATTEMPTS && !this.closed) {
          this.releaseRetries++;
          // Waited out in short steps: a close meanwhile ends the wait (no connection is held).
          const until = performance.now() + retryPause(attempt, this.releaseRetry);
          while (performance.now() < until && !this.closed) await new Promise((r) => setTimeout(r, 50));
          if (!this.closed) continue;
        }
        this.releaseFailures++;
        for (const fn of this.#releaseErrorListeners) fn(err, snapshot);
        return;
      }
    }
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

  /**
   * Opens (or creates) the store at `path` with a pool of `memoryLimit` and `threads` DuckDB
   * threads: by default as many as the pool gives (duckdbThreads), not one per core.
   */
  static async open(
    path: string,
    slots = { size: 4, queue: 16 },
    memoryLimit = '256MB',
    threads = duckdbThreads(duckdbBytes(memoryLimit)),
  ): Promise<DuckStore> {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    // No extension may be downloaded at run time; parquet/json/icu are built in.
    const instance = await DuckDBInstance.create(path, {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'true',
      memory_limit: memoryLimit,
      threads: String(threads),
    });
    const conn = await instance.connect();
    try {
      await conn.run(readFileSync(join(sqlDir(), 'duckdb', 'schema.sql'), 'utf8'));
      const r = await conn.runAndReadAll('SELECT coalesce(max(snapshot), 0)::INTEGER AS s FROM batches');
      const latest = Number(r.getRowObjects()[0]!['s']);
      const store = new DuckStore(instance, path, latest, slots);
      store.memoryBytes = duckdbBytes(memoryLimit);
      const retired = await setting(conn, RETIRED_BEFORE);
      if (retired !== undefined) store.retiredBefore = Number(retired);
      store.retainedFrom = (await setting(conn, RETAINED_FROM)) ?? null;
      // A store from before withheld_periods kept the zone's periods in zone_withheld: copied
      // once, and the old table kept (an older build reading this store still finds them).
      const older = await conn.runAndReadAll(
        "SELECT count(*)::INTEGER AS n FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'zone_withheld'",
      );
      if (Number(older.getRowObjects()[0]!['n']) > 0 && (await setting(conn, ZONE_WITHHELD_COPIED)) === undefined) {
        await conn.run('BEGIN TRANSACTION');
        try {
          await conn.run(
            "INSERT INTO withheld_periods SELECT kpi, grain, NULL, period, snapshot, 'zone' AS reason FROM zone_withheld",
          );
          await putSetting(conn, ZONE_WITHHELD_COPIED, '1');
          await conn.run('COMMIT');
        } catch (e) {
          await conn.run('ROLLBACK');
          throw e;
        }
      }
      store.#withholdAll(await withheldRows(conn));
      const inForce = await setting(conn, AGREEMENT_IN_FORCE);
      if (inForce !== undefined) store.agreementInForce = JSON.parse(inForce) as { version: number; since: number };
      const generation = await setting(conn, PSEUDONYM_GENERATION);
      if (generation !== undefined) store.pseudonymGeneration = Number(generation);
      // A store from before released_atoms: the step guard's history built from its points, once.
      if ((await setting(conn, RELEASED_ATOMS_BUILT)) === undefined) {
        await conn.run('BEGIN TRANSACTION');
        await conn.run('DELETE FROM released_atoms');
        await conn.run(REBUILD_RELEASED_ATOMS);
        await putSetting(conn, RELEASED_ATOMS_BUILT, '1');
        await conn.run('COMMIT');
      }
      // Batches landed before the kpis column existed get it from their points, once.
      await conn.run(
        `UPDATE batches SET kpis = (SELECT list(DISTINCT kpi ORDER BY kpi) FROM points p WHERE p.snapshot = batches.snapshot) WHERE kpis IS NULL`,
      );
      const landed = await conn.runAndReadAll(
        `SELECT snapshot::INTEGER AS s, partner, array_to_string(kpis, ',') AS k, epoch_ms(received_at)::DOUBLE AS r, epoch_ms(landed_at)::DOUBLE AS l FROM batches ORDER BY snapshot`,
      );
      // Changes by release alone: atoms a step released at a later snapshot than their own
      // (grouped steps, and atoms that waited), recorded at the snapshot that released them —
      // merged with the batches in snapshot order, so each record lands at the end of its list.
      const releases = (
        await conn.runAndReadAll(
          'SELECT DISTINCT kpi, released::INTEGER AS r FROM held_atoms WHERE released IS NOT NULL AND released > snapshot ORDER BY r',
        )
      ).getRowObjectsJson();
      let next = 0;
      const releasedUpTo = (s: number) => {
        for (; next < releases.length && Number(releases[next]!['r']) <= s; next++)
          store.touched.record(Number(releases[next]!['r']), [String(releases[next]!['kpi'])]);
      };
      for (const row of landed.getRowObjectsJson()) {
        releasedUpTo(Number(row['s']));
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
      releasedUpTo(Infinity);
      return store;
    } finally {
      conn.closeSync();
    }
  }

  /** Closed, or closing: no new work starts. */
  get closed(): boolean {
    return this.#closed || this.#closing !== undefined;
  }

  /** A new connection; closed by the store on shutdown if the caller forgets (tests read the tables with one). */
  async connect(): Promise<DuckDBConnection> {
    this.#refuseIfClosed();
    const c = await this.instance.connect();
    if (this.closed) {
      c.closeSync();
      this.#refuseIfClosed();
    }
    this.#conns.add(c);
    return c;
  }

  #refuseIfClosed(): void {
    if (this.closed) throw new Error('the DuckDB store is closed');
  }

  release(c: DuckDBConnection): void {
    // After close() the store has closed every connection already.
    if (this.#conns.delete(c)) c.closeSync();
  }

  /** Idle connections kept for single-statement reads (a new connection costs ~1–2 ms per query). */
  readonly #readers: DuckDBConnection[] = [];

  /**
   * Runs autocommit statements on a pooled connection. Only for statements that leave no state
   * behind (no BEGIN, no SET): the connection goes back to the pool for the next caller.
   */
  #pooled<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.#held(
      async () => this.#readers.pop() ?? (await this.connect()),
      (c) => {
        if (this.closed || this.#readers.length >= 4) this.release(c);
        else this.#readers.push(c);
      },
      (c) => this.#interruptible(c, () => fn(c)),
    );
  }

  /**
   * The store's own work on a connection (`take` gets it, `give` returns it), counted from its
   * first step so close() waits for it; refused once the store is closing.
   */
  async #held<T>(
    take: () => Promise<DuckDBConnection>,
    give: (c: DuckDBConnection) => void,
    fn: (c: DuckDBConnection) => Promise<T>,
  ): Promise<T> {
    this.#refuseIfClosed();
    this.#active++;
    try {
      const c = await take();
      this.#inUse.add(c);
      try {
        return await fn(c);
      } finally {
        this.#inUse.delete(c);
        give(c);
      }
    } finally {
      this.#active--;
    }
  }

  /** Runs `fn`, during which close() may interrupt the connection's statements. */
  async #interruptible<T>(c: DuckDBConnection, fn: () => Promise<T>): Promise<T> {
    this.#running.add(c);
    try {
      return await fn();
    } finally {
      this.#running.delete(c);
    }
  }

  /**
   * The store's own work under way (a read, a transaction), counted from its first step: close()
   * waits for it. `#running` holds the connections whose statements close() may interrupt — not
   * a transaction's BEGIN, COMMIT or ROLLBACK, which are never interrupted.
   */
  #active = 0;
  readonly #inUse = new Set<DuckDBConnection>();
  readonly #running = new Set<DuckDBConnection>();

  /**
   * The store's one transaction helper: `fn`'s statements commit together when it resolves and
   * roll back when it throws. The store's own writes run through it; ingest lands batches in it.
   */
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    return this.#transaction(async (c) => {
      let open = true;
      try {
        return await fn(new StoreTransaction(c, () => open, this.snapshots));
      } finally {
        open = false;
      }
    });
  }

  #transaction<T>(fn: (c: DuckDBConnection) => Promise<T>, beforeCommit?: () => Promise<void>): Promise<T> {
    return this.#onConnection((c) => this.#inTransaction(c, () => fn(c), beforeCommit));
  }

  /** `fn` as the store's own work on a connection of its own, closed after it (with its temporary tables). */
  #onConnection<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.#held(
      () => this.connect(),
      (c) => this.release(c),
      fn,
    );
  }

  /** `fn` in a transaction on `c` (held by the caller): committed when it resolves, rolled back when it throws. */
  async #inTransaction<T>(c: DuckDBConnection, fn: () => Promise<T>, beforeCommit?: () => Promise<void>): Promise<T> {
    await c.run('BEGIN TRANSACTION');
    try {
      const result = await this.#interruptible(c, fn);
      await beforeCommit?.();
      await c.run('COMMIT');
      return result;
    } catch (err) {
      await c.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** The rows of one read-only statement (a compiled aggregate or rollup read), on a pooled connection. */
  async query(statement: Statement): Promise<Record<string, Json>[]> {
    return this.#pooled(async (c) => (await c.runAndReadAll(statement.sql, statement.params)).getRowObjectsJson());
  }

  async ping(): Promise<void> {
    await this.#pooled((c) => c.run('SELECT 1'));
  }

  /**
   * Makes `points.local_day` the local day of `ts` in `timezone`: fills rows landed before the
   * column existed, and recomputes every row when the partnership's zone changed.
   */
  async localise(timezone: string): Promise<void> {
    // Under every writer slot, like retention: a batch landing beside the UPDATE would commit its
    // points on the old zone's days after it (it cannot see them). Batches that land after it
    // read the zone in force when they take their slot (BatchLander).
    await this.#everyWriter(() => this.#localiseNow(timezone));
    this.#localisedZone = timezone;
  }

  /**
   * The zone the points' local days are in (set by {@link localise} and {@link adoptAgreement};
   * undefined before either ran): what rollups are built for.
   */
  get localisedZone(): string | undefined {
    return this.#localisedZone;
  }

  /** The periods withheld from now on: all of withheld_periods (a period named twice keeps its first reason). */
  #withholdAll(rows: readonly WithheldPeriod[]): void {
    this.withheldPeriods.clear();
    for (const w of rows) {
      let map = this.withheldPeriods.get(w.kpi);
      if (!map) this.withheldPeriods.set(w.kpi, (map = new Map()));
      const key = w.dimension === null ? `${w.grain}|${w.period}` : `${w.grain}|by=${w.dimension}|${w.period}`;
      if (!map.has(key)) map.set(key, w.reason === 'zone' ? 'zone' : 'version');
    }
  }

  async #localiseNow(timezone: string): Promise<void> {
    await this.#transaction(async (c) => {
      // Read in the transaction: another change may have moved the points while this one waited.
      const current = await setting(c, TIMEZONE);
      if (current === timezone)
        await c.run('UPDATE points SET local_day = timezone($1, ts)::DATE WHERE local_day IS NULL', [timezone]);
      else await relocalise(c, timezone);
    });
  }

  /** Stable reads in flight ({@link stableRead}), and who waits for them to end. */
  #reading = 0;
  #readersDone: (() => void) | undefined;
  /** A rewrite waiting to commit or committed and not yet visible: stable reads starting now wait for it. */
  #rewrite: Promise<void> | undefined;

  /**
   * Runs a read that takes a snapshot (and the agreement in force with it) and answers it, from
   * the points or the rollups, or keeps what it judged there (an incident, a review), so that it
   * never mixes two states. A rewrite (a new zone moving the points' days, retention deleting
   * them) commits in place and is visible from a new snapshot on: a read of the snapshot before
   * it that ran its statements after the commit would answer that snapshot from the rewritten
   * points — other bytes than it gave before. So a rewrite commits only once the stable reads in
   * flight have ended, and stable reads that start meanwhile wait until its snapshot is visible.
   * Never nest one in another: the inner one would wait for a rewrite that waits for the outer.
   * (Marking the nesting with an AsyncLocalStorage would put promise hooks on every promise of
   * the process on Node 20, ingest's included.)
   */
  async stableRead<T>(read: () => Promise<T>): Promise<T> {
    while (this.#rewrite) await this.#rewrite;
    this.#reading++;
    try {
      return await read();
    } finally {
      if (--this.#reading === 0) this.#readersDone?.();
    }
  }

  /**
   * Before a rewrite commits: closes the gate to new stable reads and resolves once those in
   * flight have ended. The function it gives opens the gate again, once the rewrite's snapshot
   * is visible (or it rolled back).
   */
  async #rewriteCommits(): Promise<() => void> {
    let end!: () => void;
    const rewrite = new Promise<void>((r) => (end = r));
    this.#rewrite = rewrite;
    if (this.#reading > 0) await new Promise<void>((r) => (this.#readersDone = r));
    this.#readersDone = undefined;
    return () => {
      if (this.#rewrite === rewrite) this.#rewrite = undefined;
      end();
    };
  }

  /**
   * Puts agreement version `v` in force as a snapshot of its own, like a retention run: a
   * receipt in `batches` (content type `agreement`, no points), with the points moved to the
   * local days of a new time zone in the same transaction. `inForce` (the room taking the version)
   * runs in the turn that snapshot becomes visible: readers see the old version with the old
   * snapshots and the new one from the new snapshot on, and a `?snapshot=` before it is refused
   * from then on (it was answered under the old version: the same bytes or a refusal). Holds
   * every writer: batches landing before it are on the old version, those after on the new.
   * `change` tells, from the version the store was
   * answering under until now (read in the transaction: undefined for a store that never recorded
   * one), the families this version adds and the protected points of those it drops. The periods
   * each withholds are kept in withheld_periods and withheld from the version on.
   */
  async adoptAgreement(
    v: { version: number; timezone: string },
    by: { partner: string; at: Date },
    inForce: () => void,
    change: (previous: number | undefined) => Promise<VersionChange> | VersionChange = () => ({ added: [] }),
  ): Promise<number> {
    const receipt = { ...by, id: `agreement-v${v.version}-${randomUUID()}` };
    return this.#everyWriter(async () => {
      const taken = await this.#roomSnapshot(receipt, async (c, reserve) => {
        const previous = await setting(c, AGREEMENT_IN_FORCE);
        const { added: families, protectedDays = [] } = await change(
          previous === undefined ? undefined : (JSON.parse(previous) as { version: number }).version,
        );
        // Before the points move, under the old version's rules and days: the points the
        // families this version drops protected, on the days they will be on.
        const dropped: { kpi: string; day: string }[] = [];
        for (const q of protectedDays)
          for (const r of (await c.runAndReadAll(q.sql, q.params)).getRowObjectsJson())
            dropped.push({ kpi: q.kpi, day: String(r['day']) });
        // Read in the transaction: another change may have moved the points while this one waited.
        const moves = (await setting(c, TIMEZONE)) !== v.timezone;
        // Before the points move: every period a released point leaves or enters.
        const zone = moves ? await zoneWithheldPeriods(c, v.timezone) : [];
        if (moves) await relocalise(c, v.timezone);
        const snap = reserve();
        // On the local days the points are on from this version on: the earlier versions' added
        // families again when the points moved, this version's over every point landed before it.
        // The families earlier versions added, each with its version's snapshot.
        const before = (
          await c.runAndReadAll(
            "SELECT DISTINCT kpi, grain, dimension, snapshot FROM withheld_periods WHERE reason = 'version'",
          )
        )
          .getRowObjectsJson()
          .map((r) => ({
            kpi: String(r['kpi']),
            grain: String(r['grain']) as AddedFamily['grain'],
            key: r['dimension'] === null ? null : String(r['dimension']),
            before: Number(r['snapshot']),
          }));
        // When the points moved, theirs again on the new days.
        const earlier = moves ? before : [];
        // A family over days the version before agreed: over the points landed before each
        // version that withheld those days (a day added then; at every breakdown, or by its dimension).
        const viaDays = families
          .filter((f) => f.viaDays)
          .flatMap((f) =>
            before
              .filter((b) => b.kpi === f.kpi && b.grain === 'day' && (b.key === null || b.key === f.key))
              .map((b) => ({ kpi: f.kpi, grain: f.grain, key: f.key, before: b.before })),
          );
        if (moves) await c.run("DELETE FROM withheld_periods WHERE reason = 'version'");
        const rows: (WithheldPeriod & { snapshot: number })[] = [
          ...zone.map((w) => ({ ...w, dimension: null, reason: 'zone' as const, snapshot: snap })),
          ...periodsOfDays(dropped).map((w) => ({ ...w, dimension: null, reason: 'dropped' as const, snapshot: snap })),
          ...(await versionWithheldPeriods(c, earlier)),
          ...(await versionWithheldPeriods(c, [
            ...families.filter((x) => !x.viaDays).map((f) => ({ ...f, before: snap })),
            ...viaDays,
          ])),
        ];
        for (const w of rows)
          await c.run('INSERT INTO withheld_periods VALUES ($1, $2, $3, $4::DATE, $5, $6)', [
            w.kpi,
            w.grain,
            w.dimension,
            w.period,
            w.snapshot,
            w.reason,
          ]);
        const withheld = await withheldRows(c);
        await insertRoomReceipt(c, receipt, snap, 'agreement', { version: v.version }, v.version, []);
        await putSetting(c, AGREEMENT_IN_FORCE, JSON.stringify({ version: v.version, since: snap }));
        return {
          snapshot: snap,
          kpis: [],
          result: snap,
          visible: () => {
            this.#withholdAll(withheld);
            this.#localisedZone = v.timezone;
            this.agreementInForce = { version: v.version, since: snap };
            inForce();
          },
        };
      });
      return taken!;
    });
  }

  /**
   * A snapshot the room takes itself, holding every writer (a retention run, a new agreement
   * version): `write` rewrites the points in one transaction, reserving the snapshot with
   * `reserve` (or returns undefined, reserving none, when there is nothing to do). A rewrite
   * commits once the stable reads in flight have ended ({@link stableRead}); its `visible` runs
   * in the turn its snapshot becomes visible, before anyone else hears of it, and reads wait
   * until then. What `visible` throws fails the call once the snapshot is visible: thrown in the
   * tracker's turn, it would skip the listeners and waiters after it, and reads would wait for good.
   */
  async #roomSnapshot<T>(
    receipt: { partner: string; at: Date },
    write: (
      c: DuckDBConnection,
      reserve: () => number,
    ) => Promise<{ snapshot: number; kpis: string[]; result: T; visible: () => void } | undefined>,
  ): Promise<T | undefined> {
    let snapshot: number | undefined;
    let ended: (() => void) | undefined;
    try {
      const done = await this.#transaction(
        (c) => write(c, () => (snapshot = this.snapshots.reserve())),
        // Only a snapshot is a rewrite: a run that found nothing to do holds no reader up.
        async () => void (snapshot !== undefined && (ended = await this.#rewriteCommits())),
      );
      if (!done) return undefined;
      const end = ended!;
      let failed: { err: unknown } | undefined;
      this.snapshots.whenVisible(done.snapshot, () => {
        try {
          done.visible();
        } catch (err) {
          failed = { err };
        } finally {
          end();
        }
      });
      this.landed({
        snapshot: done.snapshot,
        partner: receipt.partner,
        kpis: done.kpis,
        receivedAt: receipt.at,
        landedAt: receipt.at,
      });
      await this.snapshots.visible(done.snapshot);
      if (failed) throw failed.err;
      return done.result;
    } catch (err) {
      ended?.();
      if (snapshot !== undefined) this.snapshots.abort(snapshot);
      throw err;
    }
  }

  /** The zone the store's points are on, as it recorded it (undefined for a new store). */
  storedTimezone(): Promise<string | undefined> {
    return this.#pooled((c) => setting(c, TIMEZONE));
  }

  /**
   * Records the version in force for a store that has none recorded (a new room, or one from
   * before versions took snapshots) without a snapshot: every snapshot it holds stays readable.
   */
  async recordAgreement(version: number): Promise<void> {
    await this.#pooled((c) => putSetting(c, AGREEMENT_IN_FORCE, JSON.stringify({ version, since: 0 })));
    this.agreementInForce = { version, since: 0 };
  }

  /** A partner's batch by its id or idempotency key (column names are constants here). */
  async findBatch(partner: string, by: 'id' | 'idempotency_key', value: string): Promise<BatchRecord | undefined> {
    const row = await this.#pooled(
      async (c) =>
        (
          await c.runAndReadAll(`SELECT * FROM batches WHERE partner = $1 AND ${by} = $2`, [partner, value])
        ).getRowObjectsJson()[0],
    );
    if (!row) return undefined;
    return {
      id: String(row['id']),
      snapshot: Number(row['snapshot']),
      partner: String(row['partner']),
      idempotencyKey: row['idempotency_key'] == null ? null : String(row['idempotency_key']),
      bodySha256: String(row['body_sha256']),
      contentType: String(row['content_type']),
      accepted: Number(row['accepted']),
      rejected: Number(row['rejected']),
      checksum: String(row['checksum']),
      errors: String(row['errors']),
      agreementVersion: Number(row['agreement_version']),
      receivedAt: String(row['received_at']),
      landedAt: String(row['landed_at']),
      kpis: Array.isArray(row['kpis']) ? row['kpis'].map(String) : [],
    };
  }

  /**
   * Batches that landed in [from, to) at or below snapshot `upTo`: per partner (batches, points
   * accepted and rejected, last arrival) and per feed (batches, and points counted over their
   * snapshots). Metadata only: counts and times. Per partner, with `visible` (the KPIs a reader
   * may see), a batch counts only if it carried one of them.
   */
  async batchActivity(
    from: Date,
    to: Date,
    upTo: number,
    visible: readonly string[] | null = null,
  ): Promise<{
    partners: { partner: string; batches: number; accepted: number; rejected: number; last: string | null }[];
    feeds: { partner: string; kpi: string; batches: number; points: number; last: string | null }[];
  }> {
    const params = [from.toISOString(), to.toISOString(), upTo];
    const last = (v: Json | undefined) => (v === null || v === undefined ? null : String(v));
    // For a reader of some KPIs only: the batches that carried one of them.
    const shown = visible === null ? '' : ` AND list_has_any(string_split($4, ','), coalesce(kpis, []::VARCHAR[]))`;
    return this.#pooled(async (c) => {
      const b = await c.runAndReadAll(
        `SELECT partner, count(*)::INTEGER AS batches, sum(accepted)::BIGINT AS accepted, sum(rejected)::BIGINT AS rejected, max(received_at) AS last
       FROM batches WHERE landed_at >= $1::TIMESTAMPTZ AND landed_at < $2::TIMESTAMPTZ AND snapshot <= $3${shown} GROUP BY partner`,
        visible === null ? params : [...params, visible.join(',')],
      );
      const f = await c.runAndReadAll(
        `WITH month AS (SELECT snapshot, partner, kpis, received_at FROM batches WHERE landed_at >= $1::TIMESTAMPTZ AND landed_at < $2::TIMESTAMPTZ AND snapshot <= $3),
            touched AS (SELECT partner, unnest(kpis) AS kpi, received_at FROM month),
            feeds AS (SELECT partner, kpi, count(*)::INTEGER AS batches, max(received_at) AS last FROM touched GROUP BY ALL),
            pts AS (SELECT p.partner, p.kpi, count(*)::BIGINT AS points FROM points p WHERE p.snapshot IN (SELECT snapshot FROM month) GROUP BY ALL)
       SELECT feeds.partner, feeds.kpi, feeds.batches, coalesce(pts.points, 0) AS points, feeds.last FROM feeds LEFT JOIN pts USING (partner, kpi)`,
        params,
      );
      return {
        partners: b.getRowObjectsJson().map((r) => ({
          partner: String(r['partner']),
          batches: Number(r['batches'] ?? 0),
          accepted: Number(r['accepted'] ?? 0),
          rejected: Number(r['rejected'] ?? 0),
          last: last(r['last']),
        })),
        feeds: f.getRowObjectsJson().map((r) => ({
          partner: String(r['partner']),
          kpi: String(r['kpi']),
          batches: Number(r['batches']),
          points: Number(r['points']),
          last: last(r['last']),
        })),
      };
    });
  }

  /**
   * When each partner's feeds arrived in [from, to) at or below snapshot `upTo`: one row per batch
   * and KPI it carried, oldest first (service-level attainment). Metadata only: times.
   */
  async feedArrivals(from: Date, to: Date, upTo: number): Promise<{ partner: string; kpi: string; at: Date }[]> {
    const rows = await this.#pooled(async (c) =>
      (
        await c.runAndReadAll(
          `SELECT partner, unnest(kpis) AS kpi, epoch_ms(received_at) AS at FROM batches
         WHERE received_at >= $1::TIMESTAMPTZ AND received_at < $2::TIMESTAMPTZ AND snapshot <= $3 AND content_type <> 'retention'
         ORDER BY received_at, id`,
          [from.toISOString(), to.toISOString(), upTo],
        )
      ).getRowObjectsJson(),
    );
    return rows.map((r) => ({ partner: String(r['partner']), kpi: String(r['kpi']), at: new Date(Number(r['at'])) }));
  }

  /**
   * Deletes the points on local days before `before` as a snapshot of its own, like a batch: a
   * receipt in `batches` (partner `receipt.partner`, content type `retention`), the retired
   * snapshot, and the days each KPI lost for its rollup ({@link removedDays}) commit with the
   * deletion. It waits for the batches landing now and their release steps, and holds ingest
   * (every writer slot) while it deletes; undefined when nothing is that old.
   */
  async retirePoints(
    before: string,
    receipt: { id: string; partner: string; at: Date; agreementVersion: number },
  ): Promise<Retirement | undefined> {
    // Every writer slot first: no batch is landing, so no earlier snapshot is pending when the
    // deletion takes its number, and readers at the watermark never see the deletion early.
    return this.#everyWriter(() => this.#retireNow(before, receipt));
  }

  /**
   * Runs `fn` holding every writer slot (no batch is landing) once the release steps of the
   * batches that committed before have run (none runs beside it).
   */
  #everyWriter<T>(fn: () => Promise<T>): Promise<T> {
    // One at a time: two of them (retention and a new zone) taking slots in turn would each hold
    // some and wait for the other's for good.
    const run = this.#writersTaken.then(() => this.#holdEveryWriter(fn));
    this.#writersTaken = run.catch(() => undefined);
    return run;
  }

  async #holdEveryWriter<T>(fn: () => Promise<T>): Promise<T> {
    const slots: (() => void)[] = [];
    try {
      for (let i = 0; i < this.slots.size; i++) slots.push(await this.slots.acquire());
      await this.snapshots.settled();
      return await fn();
    } finally {
      for (const release of slots) release();
    }
  }

  async #retireNow(
    before: string,
    receipt: { id: string; partner: string; at: Date; agreementVersion: number },
  ): Promise<Retirement | undefined> {
    return this.#roomSnapshot(receipt, async (c, reserve) => {
      // Counted inside the transaction: what it counts is what its DELETE removes.
      const counts = (
        await c.runAndReadAll(
          `SELECT kpi, count(*)::BIGINT AS n, min(local_day)::VARCHAR AS lo, max(local_day)::VARCHAR AS hi FROM points WHERE local_day < $1::DATE GROUP BY kpi ORDER BY kpi`,
          [before],
        )
      )
        .getRowObjectsJson()
        .map((r) => ({ kpi: String(r['kpi']), n: Number(r['n']), lo: String(r['lo']), hi: String(r['hi']) }));
      if (counts.length === 0) return undefined;
      const snap = reserve();
      const deleted = Number(
        (await c.runAndReadAll('DELETE FROM points WHERE local_day < $1::DATE', [before])).rowsChanged,
      );
      await c.run('DELETE FROM held_atoms WHERE local_day < $1::DATE', [before]);
      await c.run('DELETE FROM released_atoms WHERE local_day < $1::DATE', [before]);
      // The step guard's history lost days: its waiting atoms are judged again (schema.sql). A
      // dominated atom's wait (`verdicts`) does not rest on history and stays.
      await c.run('UPDATE held_atoms SET waiting = NULL WHERE waiting IS NOT NULL AND verdicts IS NULL');
      const perKpi = Object.fromEntries(counts.map((x) => [x.kpi, x.n]));
      await insertRoomReceipt(
        c,
        receipt,
        snap,
        'retention',
        { deleted, before },
        receipt.agreementVersion,
        Object.keys(perKpi),
      );
      await putSetting(c, RETIRED_BEFORE, String(snap));
      await putSetting(c, RETAINED_FROM, before);
      // The rollups recompute these days once the snapshot is visible (removedDays, forgetRemovedDays).
      for (const x of counts) {
        const key = ROLLUP_REMOVED + x.kpi;
        const prev = await setting(c, key);
        const p = prev === undefined ? undefined : (JSON.parse(prev) as { lo: string });
        await putSetting(c, key, JSON.stringify({ lo: p && p.lo < x.lo ? p.lo : x.lo, hi: x.hi, snapshot: snap }));
      }
      return {
        snapshot: snap,
        kpis: Object.keys(perKpi),
        result: { snapshot: snap, deleted, perKpi },
        // With its snapshot, not before: a reader of the one before keeps its cut and its rollups.
        visible: () => {
          this.retiredBefore = snap;
          this.retainedFrom = before;
        },
      };
    });
  }

  /** Days that retention runs at or below snapshot `upTo` deleted, per KPI, until the rollups forget them. */
  async removedDays(upTo: number): Promise<RemovedDays[]> {
    const rows = await this.#pooled(async (c) =>
      (
        await c.runAndReadAll(`SELECT key, value FROM room_settings WHERE key LIKE '${ROLLUP_REMOVED}%'`)
      ).getRowObjectsJson(),
    );
    return rows
      .map((row) => ({
        kpi: String(row['key']).slice(ROLLUP_REMOVED.length),
        ...(JSON.parse(String(row['value'])) as { lo: string; hi: string; snapshot: number }),
      }))
      .filter((gone) => gone.snapshot <= upTo);
  }

  /** The rollups recomputed these KPIs' removed days. */
  async forgetRemovedDays(kpis: readonly string[]): Promise<void> {
    await this.#pooled(async (c) => {
      for (const kpi of kpis) await c.run('DELETE FROM room_settings WHERE key = $1', [ROLLUP_REMOVED + kpi]);
    });
  }

  /**
   * Re-keys every stored pseudonym (`rekey(partner, subject)`, computed here for each distinct
   * one) and records the new generation, in one transaction; `onProgress` hears how many
   * pseudonyms are computed so far, and is waited for when it returns a promise (which must not
   * wait for close(): the re-key holds its connections meanwhile). One unit of the store's work
   * from its first step to its last, so close() waits for it (and may interrupt it after its
   * grace) rather than closing its connections under it; interrupted, nothing is re-keyed and
   * the generation stays.
   */
  rekeyPseudonyms(
    generation: number,
    rekey: (partner: string, subject: string) => string,
    onProgress: (done: number) => void | Promise<void>,
  ): Promise<{ pseudonyms: number; points: number }> {
    return this.#onConnection(async (writer) => {
      // The old-to-new mapping lives only on the writer's connection (a temporary table): a
      // failed, interrupted or killed re-key leaves it nowhere, and a finished one takes it along
      // when its connection closes.
      await writer.run(
        'CREATE TEMP TABLE pseudonym_rekey (partner VARCHAR NOT NULL, old VARCHAR NOT NULL, new VARCHAR NOT NULL)',
      );
      const pseudonyms = await this.#onConnection((reader) =>
        this.#interruptible(reader, () =>
          this.#interruptible(writer, () => mapPseudonyms(reader, writer, rekey, onProgress)),
        ),
      );
      const points = await this.#inTransaction(writer, async () => {
        // Rewritten rather than updated in place: DuckDB keeps an UPDATE's old strings in memory
        // until COMMIT (a million points ran out of the default 256 MB), while a copy, a sort and
        // appended rows spill to disk (beside the database file, for the length of the
        // rotation). The points go back in the order they had — snapshot order, as ingest
        // appended them, which reads skip row groups by — sorted by their row ids on the way back
        // (a join with the sort in the same statement did not spill). Every point's pseudonym is
        // in the mapping; a count that differs rolls the re-key back instead of losing points.
        await writer.run(
          `CREATE TEMP TABLE points_rekeyed AS
           SELECT p.rowid AS rekey_row, p.* REPLACE (r.new AS subject) FROM points p
           JOIN pseudonym_rekey r ON p.partner = r.partner AND p.subject = r.old`,
        );
        const removed = Number((await writer.run('DELETE FROM points')).rowsChanged);
        const r = await writer.run(
          'INSERT INTO points BY NAME SELECT * EXCLUDE (rekey_row) FROM points_rekeyed ORDER BY rekey_row',
        );
        if (Number(r.rowsChanged) !== removed)
          throw new Error(`re-key: ${removed} points held, ${Number(r.rowsChanged)} re-keyed; nothing was changed`);
        // The held atoms' subjects are old pseudonyms: a part counted from them beside new ones
        // would count a subject twice. Unlisted, such atoms are counted from their points again.
        await writer.run('UPDATE held_atoms SET subjects = NULL WHERE subjects IS NOT NULL');
        await putSetting(writer, PSEUDONYM_GENERATION, String(generation));
        // A mapping an earlier version kept on disk (killed mid-rotation) goes with this one.
        await writer.run('DROP TABLE IF EXISTS main.pseudonym_rekey');
        return Number(r.rowsChanged);
      });
      this.pseudonymGeneration = generation;
      return { pseudonyms, points };
    });
  }

  /** The snapshot through which every batch is rolled up, as last recorded (0: none yet). */
  async rollupThrough(): Promise<number> {
    const v = await this.#pooled((c) => setting(c, ROLLUP_THROUGH));
    return v === undefined ? 0 : Number(v);
  }

  async setRollupThrough(snapshot: number): Promise<void> {
    await this.#pooled((c) => putSetting(c, ROLLUP_THROUGH, String(snapshot)));
  }

  /** Per KPI with a rollup: the last touching snapshot its cells include, and the signature they were built for. */
  async rollupStates(): Promise<{ kpi: string; snapshot: number; signature: string }[]> {
    const rows = await this.#pooled(async (c) =>
      (
        await c.runAndReadAll('SELECT kpi, snapshot::INTEGER AS snapshot, signature FROM rollup_state')
      ).getRowObjectsJson(),
    );
    return rows.map((r) => ({
      kpi: String(r['kpi']),
      snapshot: Number(r['snapshot']),
      signature: String(r['signature']),
    }));
  }

  /**
   * A KPI's points per local day, in day order, at or below snapshot `upTo` and within
   * [first, last] when given (days without points left out): the days a rollup build covers, and
   * how many points each period a refresh groups holds.
   */
  async pointsPerDay(kpi: string, upTo: number, range?: readonly [string, string]): Promise<Map<string, number>> {
    const within = range ? ' AND local_day >= $3::DATE AND local_day <= $4::DATE' : '';
    const rows = await this.#pooled(async (c) =>
      (
        await c.runAndReadAll(
          `SELECT local_day::VARCHAR AS day, count(*)::INTEGER AS n FROM points
           WHERE kpi = $1 AND snapshot <= $2${within} GROUP BY local_day ORDER BY local_day`,
          [kpi, upTo, ...(range ?? [])],
        )
      ).getRowObjectsJson(),
    );
    return new Map(rows.map((r) => [String(r['day']), Number(r['n'])]));
  }

  /**
   * Per KPI, the local days of the points of snapshots in (after, upTo] and of the atoms released
   * in that range after waiting (their cells moved then), as merged spans.
   */
  async touchedDays(after: number, upTo: number): Promise<Map<string, [string, string][]>> {
    return this.#daySpans(touchedDaysSql(false), [after, upTo]);
  }

  /**
   * The local days of one KPI's points of snapshots in (after, upTo] and of its atoms released in
   * that range, as merged spans: the days whose cells moved since a rollup at `after`.
   */
  async touchedDaysOf(kpi: string, after: number, upTo: number): Promise<DaySpans> {
    const spans = await this.#daySpans(touchedDaysSql(true), [after, upTo, kpi]);
    return spans.get(kpi) ?? [];
  }

  /**
   * Per KPI, the distinct local days of the rows `source` selects, merged into spans: a batch
   * of sparse points over years touches a few days, and the rollups recompute only the periods
   * holding them.
   */
  async #daySpans(source: string, params: DuckDBValue[]): Promise<Map<string, [string, string][]>> {
    const rows = await this.#pooled(async (c) =>
      (
        await c.runAndReadAll(
          `SELECT kpi, local_day::VARCHAR AS day FROM (${source}) AS days GROUP BY kpi, local_day ORDER BY kpi, local_day`,
          params,
        )
      ).getRowObjectsJson(),
    );
    const days = new Map<string, [string, string][]>();
    for (const row of rows) {
      const kpi = String(row['kpi']);
      const list = days.get(kpi) ?? [];
      days.set(kpi, list);
      list.push([String(row['day']), String(row['day'])]);
    }
    return new Map([...days].map(([kpi, list]) => [kpi, mergeDaySpans(list)]));
  }

  /**
   * Recomputes a KPI's rollup cells in one transaction with its state: all of them first
   * deleted when `full`, then the compiled refresh `steps`, and the snapshot and signature
   * they now stand for.
   */
  async refreshRollup(
    kpi: string,
    opts: {
      full: boolean;
      steps: Iterable<Statement>;
      snapshot: number;
      signature: string;
      signal?: AbortSignal;
      /** Runs each statement in a turn of the reads of the points (the query layer's read gate). */
      turn?: <T>(run: () => Promise<T>) => Promise<T>;
    },
  ): Promise<void> {
    const signal = opts.signal;
    await this.#transaction(async (c) => {
      // An abort (the room closing) interrupts the statement running and rolls the refresh back:
      // a KPI's build over many millions of points would otherwise hold the shutdown for as long
      // as it takes. Its rollup stays at its last committed state (series read points meanwhile).
      // DuckDB clears a connection's interrupt when a statement starts executing, so one call can
      // land between a statement's prepare and its execution and be lost: until the statement
      // running settles, the interrupt is repeated.
      let repeat: NodeJS.Timeout | undefined;
      const interrupt = () => {
        c.interrupt();
        repeat = setInterval(() => {
          try {
            c.interrupt();
          } catch {
            // the store closed the connection meanwhile
          }
        }, 50);
      };
      signal?.addEventListener('abort', interrupt, { once: true });
      try {
        const turn = opts.turn ?? ((run) => run());
        const run = (sql: string, params: Statement['params']) =>
          turn(async () => {
            signal?.throwIfAborted();
            await c.run(sql, params);
          });
        if (opts.full)
          for (const table of ['rollup_cells', 'rollup_parts', 'rollup_atoms'])
            await run(`DELETE FROM ${table} WHERE kpi = $1`, [kpi]);
        for (const step of opts.steps) await run(step.sql, step.params);
        await run('INSERT OR REPLACE INTO rollup_state VALUES ($1, $2, $3)', [kpi, opts.snapshot, opts.signature]);
      } finally {
        // Before the transaction's COMMIT or ROLLBACK: neither is ever interrupted.
        signal?.removeEventListener('abort', interrupt);
        clearInterval(repeat);
      }
    });
  }

  /**
   * Checkpoints (folds the WAL into the file) and closes. Work the store is still running (a
   * read, a release step, a refresh someone did not stop) gets CLOSE_GRACE_MS to finish, is then
   * interrupted (it fails, a transaction rolls back), and is waited for: a connection is never
   * closed under a running statement, which left the statement hanging or the process crashing.
   * No new work starts once close() is called.
   */
  close(): Promise<void> {
    // A close that failed (its checkpoint) may be tried again, as before.
    this.#closing ??= this.#close().catch((err: unknown) => {
      this.#closing = undefined;
      throw err;
    });
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    // Idle pooled connections first: nothing can take one from now on.
    for (const idle of this.#readers.splice(0)) this.release(idle);
    const started = performance.now();
    let interrupting = false;
    while (this.#active > 0 && performance.now() - started < CLOSE_WAIT_MS) {
      if (performance.now() - started >= CLOSE_GRACE_MS) {
        // Repeated: an interrupt landing between a statement's prepare and its execution is lost.
        for (const running of this.#running) running.interrupt();
        interrupting = true;
      }
      await new Promise((r) => setTimeout(r, interrupting ? 50 : 10));
    }
    const c = await this.instance.connect();
    try {
      // FORCE waits (DuckDB ≥ 1.4) for a write transaction still open instead of failing.
      await c.run('FORCE CHECKPOINT');
    } finally {
      c.closeSync();
    }
    this.#closed = true;
    // Work that outlived the wait keeps its connection (the process is ending); the rest close.
    for (const conn of this.#conns) if (!this.#inUse.has(conn)) conn.closeSync();
    this.#conns.clear();
    if (this.#active === 0) this.instance.closeSync();
  }
}
