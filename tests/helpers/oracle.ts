/**
 * An independent oracle for GET /v1/kpis/{kpi}/series: plain TypeScript, no product code.
 * Local dates come from Intl (the platform's tz database), ISO weeks and months from local
 * date arithmetic, quantiles from a sort and linear interpolation (numpy 'linear').
 */
import { createHash } from 'node:crypto';
import { DOMINANCE_VERDICTS } from '../../services/query/aggregate-compiler.js';

export type Grain = 'day' | 'week' | 'month';
export type Measure = 'avg' | 'sum' | 'count' | 'rate' | 'p50' | 'p90' | 'p95' | 'distinct';

/** A point as the oracle sees it: who sent it, when (epoch ms), and at which snapshot it landed. */
export interface OraclePoint {
  partner: string;
  kpi: string;
  atMs: number;
  value: number;
  subject: string;
  dims?: Record<string, string>;
  snapshot: number;
}

export interface OracleQuery {
  kpi: string;
  measure: Measure;
  grain: Grain;
  from: string;
  to: string;
  /** 'none', 'partner' or a dimension key. */
  by: string;
  snapshot: number;
  minGroupSize: number;
  timezone: string;
  /** The KPI's agreed grains and dimension keys: the linked cells. */
  grains: readonly Grain[];
  dimensions: readonly string[];
  /** A combined KPI without two-party consent. */
  threePartners: boolean;
  counts: 'exact' | 'none';
  /** A sum KPI's dominance rule as a fraction, or null. */
  dominance?: number | null;
}

export interface OracleCell {
  period: string;
  group: string | null;
  value: number | null;
  n: number | null;
  state: 'ok' | 'suppressed' | 'held';
  reasonCode?: string;
  reason?: string;
  /** Held cells: the snapshot since which the value is served. */
  asOf?: number;
}

/** mulberry32: a small, seeded, deterministic PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The local calendar date (YYYY-MM-DD) of an instant in a time zone. */
export function localDate(ms: number, timezone: string): string {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone: timezone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timezone, f);
  }
  const parts = f.formatToParts(new Date(ms));
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  return `${get('year')}-${get('month')}-${get('day')}`;
}

/** The first local day of the period a local date falls in (ISO weeks start on Monday). */
export function periodStart(date: string, grain: Grain): string {
  if (grain === 'day') return date;
  if (grain === 'month') return `${date.slice(0, 8)}01`;
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  // Pure calendar arithmetic on a date (UTC noon, so no zone can shift it).
  const noon = new Date(Date.UTC(y, m - 1, d, 12));
  const sinceMonday = (noon.getUTCDay() + 6) % 7;
  return new Date(noon.getTime() - sinceMonday * 86_400_000).toISOString().slice(0, 10);
}

/**
 * The first days of the linked cells a date lies in, one function per family grain: every agreed
 * grain and, with weeks and months agreed but no days, the slice a week shares with a month
 * (a month minus its whole weeks gives its end slices, so they are as readable as cells).
 */
export function cellStarts(grains: readonly Grain[]): ((date: string) => string)[] {
  const out = grains.map((g) => (date: string) => periodStart(date, g));
  if (grains.includes('week') && grains.includes('month') && !grains.includes('day'))
    out.push((date) => {
      const w = periodStart(date, 'week');
      const m = periodStart(date, 'month');
      return w > m ? w : m;
    });
  return out;
}

/**
 * The groups of the linked cells, restated: the combined figure (null), each dimension, and with
 * two dimensions or more every dimension at once ('*': region north *and* channel web, which
 * one dimension's cells minus another's cut out).
 */
export function familyKeys(dimensions: readonly string[]): (string | null)[] {
  return [null, ...dimensions, ...(dimensions.length > 1 ? ['*'] : [])];
}

/** A point's group in a family of {@link familyKeys} ('\u0000' for a dimension it does not carry). */
export function groupOf(p: Pick<OraclePoint, 'dims'>, key: string | null, dimensions: readonly string[]): string {
  if (key === null) return '';
  if (key === '*') return JSON.stringify([...dimensions].sort().map((d) => p.dims?.[d] ?? '\u0000'));
  return p.dims?.[key] ?? '\u0000';
}

/** numpy 'linear' / DuckDB quantile_cont over a sorted copy. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo]!;
  const b = s[hi]!;
  return lo === hi ? a : a + (b - a) * (pos - lo);
}

export function measureOf(measure: Measure, pts: readonly OraclePoint[]): number {
  const values = pts.map((p) => p.value);
  const sum = () => values.reduce((a, b) => a + b, 0);
  switch (measure) {
    case 'avg':
    case 'rate':
      return sum() / values.length;
    case 'sum':
      return sum();
    case 'count':
      return values.length;
    case 'distinct':
      return subjectsOf(pts).size;
    case 'p50':
      return quantile(values, 0.5);
    case 'p90':
      return quantile(values, 0.9);
    case 'p95':
      return quantile(values, 0.95);
  }
}

/** Distinct subjects: the same raw subject at two partners is two subjects. */
function subjectsOf(pts: readonly OraclePoint[]): Set<string> {
  return new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`));
}

const round12 = (v: number) => Number(v.toPrecision(12));

/** The reason codes of docs/privacy.md §5, restated here. */
export type OracleReason = 'few_subjects' | 'few_partners' | 'dominance' | 'protects' | 'pending';

/**
 * The points lying in a withheld part of some readable cell of `pts` (each agreed grain, and the
 * week∩month slices, × the combined figure and each dimension): a partner's part with fewer than k distinct subjects, a
 * dominant part, or every part of a combined cell of fewer than three partners without consent —
 * counted over all the points, and over the `released` ones.
 */
function protectedPoints(
  pts: readonly OraclePoint[],
  q: OracleQuery,
  day: (p: OraclePoint) => string,
  released: (p: OraclePoint) => boolean = () => true,
): Set<OraclePoint> {
  const out = new Set<OraclePoint>();
  for (const start of cellStarts(q.grains)) {
    for (const key of familyKeys(q.dimensions)) {
      const cells = new Map<string, OraclePoint[]>();
      for (const p of pts) {
        const id = `${start(day(p))}|${groupOf(p, key, q.dimensions)}`;
        const list = cells.get(id);
        if (list) list.push(p);
        else cells.set(id, [p]);
      }
      for (const cell of cells.values()) {
        const partners = new Set(cell.map((p) => p.partner));
        const shown = cell.filter(released);
        // The rules over all the points, and over the released ones (what served values are made
        // of; a later version's new cells can hold too few of them beside pending points).
        const few = (n: number, min: number) => n > 0 && n < min;
        const fewPartners = q.threePartners && (partners.size < 3 || few(new Set(shown.map((p) => p.partner)).size, 3));
        // Shares are of released points only: a pending point's value moves no served state.
        const dominant = dominantPartners(shown, q.dominance);
        for (const partner of partners) {
          const part = cell.filter((p) => p.partner === partner);
          const subjects = (pts: OraclePoint[]) => new Set(pts.map((p) => p.subject)).size;
          if (
            fewPartners ||
            dominant.has(partner) ||
            subjects(part) < q.minGroupSize ||
            few(subjects(part.filter(released)), q.minGroupSize)
          )
            for (const p of part) out.add(p);
        }
      }
    }
  }
  return out;
}

/**
 * When each point of the query's KPI is released (docs/privacy.md §3, restated): at every snapshot
 * that brought points of the KPI, in order, the points not released yet are the change; every point
 * of a partner × local day × dimensions slot that lies in a withheld part of that change (the rules
 * above, applied to the change alone) waits, and this is repeated until nothing more waits (a slot
 * that waits can leave another cell's change too small); the rest is released at that snapshot.
 * A point missing from the map is never released.
 */
export function releaseSnapshots(points: readonly OraclePoint[], q: OracleQuery): Map<OraclePoint, number> {
  // The same points (a suite only appends) and rules give the same releases: once per KPI and round.
  const key = canonical([
    points.length,
    q.kpi,
    q.measure,
    q.grains,
    q.dimensions,
    q.minGroupSize,
    q.threePartners,
    q.dominance ?? null,
    q.timezone,
  ]);
  let memo = releaseMemo.get(points);
  if (!memo) releaseMemo.set(points, (memo = new Map()));
  let out = memo.get(key);
  if (!out) memo.set(key, (out = computeReleases(points, q)));
  return out;
}
const releaseMemo = new WeakMap<readonly OraclePoint[], Map<string, Map<OraclePoint, number>>>();

/**
 * Whether two local days are near for the release step's waits (docs/privacy.md §3): in the same
 * month, or in the same ISO week or one next to it (weeks counted from Monday 2000-01-03).
 */
export function nearDays(x: string, y: string): boolean {
  const week = (d: string) => Math.floor((Date.parse(d) - Date.parse('2000-01-03')) / (7 * 86_400_000));
  return x.slice(0, 7) === y.slice(0, 7) || Math.abs(week(x) - week(y)) <= 1;
}

/** A dominated atom's wait, restated (§3): the latest verdict's snapshot, the verdicts on its unchanged part, whether it waits. */
export interface DominanceWait {
  after: number;
  verdicts: number;
  waits: boolean;
}

/** How a restatement reads one of its atoms: the wait's key, its group (partner × day × dims), partner, day, snapshot. */
export interface AtomView<T> {
  key(x: T): string;
  group(x: T): string;
  partner(x: T): string;
  day(x: T): string;
  snapshot(x: T): number;
}

/**
 * Ends the waits a step judges again among the `pending` atoms (§3, restated): a waiting atom
 * whose own group has a newer pending candidate (its part changed), or, while fewer than
 * DOMINANCE_VERDICTS verdicts were taken on its unchanged part, another partner's newer candidate
 * near it. Candidates are the atoms not waiting before this step.
 */
export function wakeDominated<T>(pending: readonly T[], waits: Map<string, DominanceWait>, v: AtomView<T>): void {
  const candidates = pending.filter((p) => waits.get(v.key(p))?.waits !== true);
  const woken = pending.filter((w) => {
    const was = waits.get(v.key(w));
    return (
      was?.waits === true &&
      candidates.some(
        (x) =>
          v.snapshot(x) > was.after &&
          (v.group(x) === v.group(w) ||
            (was.verdicts < DOMINANCE_VERDICTS && v.partner(x) !== v.partner(w) && nearDays(v.day(x), v.day(w)))),
      )
    );
  });
  for (const w of woken) waits.get(v.key(w))!.waits = false;
}

/**
 * Records the verdict of step `snapshot` on each dominated group of `live` (§3, restated): the
 * group's atoms wait, with one verdict more on the same part, or the first on a changed one (an
 * atom of it newer than its last verdict).
 */
export function recordDominated<T>(
  live: readonly T[],
  groups: ReadonlySet<string>,
  waits: Map<string, DominanceWait>,
  v: AtomView<T>,
  snapshot: number,
): void {
  for (const g of groups) {
    const atoms = live.filter((a) => v.group(a) === g);
    const before = atoms.flatMap((a) => waits.get(v.key(a)) ?? []);
    const last = before.length ? Math.max(...before.map((b) => b.after)) : undefined;
    const changed = last === undefined || atoms.some((a) => v.snapshot(a) > last);
    const verdicts = 1 + (changed ? 0 : Math.max(...before.map((b) => b.verdicts)));
    for (const a of atoms) waits.set(v.key(a), { after: snapshot, verdicts, waits: true });
  }
}

function computeReleases(points: readonly OraclePoint[], q: OracleQuery): Map<OraclePoint, number> {
  const mine = points.filter((p) => p.kpi === q.kpi);
  const day = new Map(mine.map((p) => [p, localDate(p.atMs, q.timezone)]));
  const slot = (p: OraclePoint) =>
    `${p.partner}|${day.get(p)}|${Object.entries(p.dims ?? {})
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(',')}`;
  const released = new Map<OraclePoint, number>();
  // A slot's points of one snapshot in a part that dominated a change wait, with the latest
  // verdict's snapshot and the verdicts taken on the slot's part since it last changed, until a
  // newer point of their slot is pending or, a bounded number of times, another partner's newer
  // point is pending near them (§3).
  const view: AtomView<OraclePoint> = {
    key: (p) => `${slot(p)}|${p.snapshot}`,
    group: slot,
    partner: (p) => p.partner,
    day: (p) => day.get(p)!,
    snapshot: (p) => p.snapshot,
  };
  const dominatedAt = new Map<string, DominanceWait>();
  const waitsNow = (p: OraclePoint) => dominatedAt.get(view.key(p))?.waits === true;
  for (const s of [...new Set(mine.map((p) => p.snapshot))].sort((a, b) => a - b)) {
    const pending = mine.filter((p) => p.snapshot <= s && !released.has(p));
    wakeDominated(pending, dominatedAt, view);
    const live = pending.filter((p) => !waitsNow(p));
    let change = live;
    const dominated = new Set<string>();
    for (;;) {
      const waiting = new Set([...protectedPoints(change, q, (p) => day.get(p)!)].map(slot));
      for (const p of steppedPoints(change, [...released.keys()], released, q, (p) => day.get(p)!))
        waiting.add(slot(p));
      for (const p of dominatedPoints(change, q, (p) => day.get(p)!)) dominated.add(slot(p));
      const next = change.filter((p) => !waiting.has(slot(p)));
      if (next.length === change.length) break;
      change = next;
    }
    recordDominated(live, dominated, dominatedAt, view, s);
    for (const p of change) released.set(p, s);
  }
  return released;
}

/**
 * The points of a change in a part that dominates some readable cell's change of two partners
 * or more, where the three-partner rule (if it applies) lets that cell's change through.
 */
function dominatedPoints(
  change: readonly OraclePoint[],
  q: OracleQuery,
  day: (p: OraclePoint) => string,
): OraclePoint[] {
  if (q.dominance === null || q.dominance === undefined) return [];
  const out: OraclePoint[] = [];
  for (const start of cellStarts(q.grains))
    for (const key of familyKeys(q.dimensions)) {
      const cells = new Map<string, OraclePoint[]>();
      for (const p of change) {
        const id = `${start(day(p))}|${groupOf(p, key, q.dimensions)}`;
        cells.set(id, [...(cells.get(id) ?? []), p]);
      }
      for (const cell of cells.values()) {
        const partners = new Set(cell.map((p) => p.partner)).size;
        if (partners < 2 || (q.threePartners && partners < 3)) continue;
        const dominant = dominantPartners(cell, q.dominance);
        out.push(...cell.filter((p) => dominant.has(p.partner)));
      }
    }
  return out;
}

/**
 * The step guard of quantile KPIs (docs/privacy.md §2.3, restated): in every readable cell where
 * only one partner changes, others have released points, and the cell's last move (the latest
 * release among its points) was that partner's alone, that partner's change waits.
 */
function steppedPoints(
  change: readonly OraclePoint[],
  shown: readonly OraclePoint[],
  released: ReadonlyMap<OraclePoint, number>,
  q: OracleQuery,
  day: (p: OraclePoint) => string,
): OraclePoint[] {
  if (q.measure !== 'p50' && q.measure !== 'p90' && q.measure !== 'p95') return [];
  const out: OraclePoint[] = [];
  for (const start of cellStarts(q.grains))
    for (const key of familyKeys(q.dimensions)) {
      const cellOf = (p: OraclePoint) => `${start(day(p))}|${groupOf(p, key, q.dimensions)}`;
      const moving = new Map<string, OraclePoint[]>();
      for (const p of change) moving.set(cellOf(p), [...(moving.get(cellOf(p)) ?? []), p]);
      for (const [cell, pts] of moving) {
        const partners = new Set(pts.map((p) => p.partner));
        if (partners.size !== 1) continue;
        const [mover] = partners;
        const before = shown.filter((p) => cellOf(p) === cell);
        if (!before.some((p) => p.partner !== mover)) continue;
        const last = Math.max(...before.map((p) => released.get(p)!));
        const lastMovers = new Set(before.filter((p) => released.get(p) === last).map((p) => p.partner));
        if (lastMovers.size === 1 && lastMovers.has(mover!)) out.push(...pts);
      }
    }
  return out;
}

/**
 * The cells the API must serve for a query, computed from the points alone, under the
 * disclosure rules of docs/privacy.md restated in plain TypeScript:
 * - contributor rule: every partner with points in a cell has at least k distinct subjects in it;
 * - a combined KPI without two-party consent needs three contributing partners per cell;
 * - dominance (sum KPIs that set it): no partner's absolute sum in a combined cell is above the
 *   agreed share of all partners' absolute sums;
 * - linked cells: a cell is withheld when any of its points lies in a withheld part of any
 *   readable cell of the KPI (each agreed grain × the combined figure and each dimension);
 * - `n` only with counts: exact.
 * `subjects` (the raw distinct-subject count) is for the suite's own bookkeeping, never compared.
 */
export function expectedCells(points: readonly OraclePoint[], q: OracleQuery): (OracleCell & { subjects: number })[] {
  const first = periodStart(q.from, q.grain);
  const last = periodStart(q.to, q.grain);
  const mine = points.filter((p) => p.kpi === q.kpi && p.snapshot <= q.snapshot);
  const day = new Map(mine.map((p) => [p, localDate(p.atMs, q.timezone)]));
  const release = releaseSnapshots(points, q);
  const isReleased = (p: OraclePoint) => (release.get(p) ?? Infinity) <= q.snapshot;
  // Which points lie in a withheld part of some readable cell.
  const isProtected = protectedPoints(mine, q, (p) => day.get(p)!, isReleased);
  const cells = new Map<string, { period: string; group: string | null; pts: OraclePoint[] }>();
  for (const p of mine) {
    const period = periodStart(day.get(p)!, q.grain);
    if (period < first || period > last) continue;
    const group = q.by === 'none' ? null : q.by === 'partner' ? p.partner : (p.dims?.[q.by] ?? null);
    const key = `${period}|${group === null ? '\u0000' : `=${group}`}`;
    let c = cells.get(key);
    if (!c) cells.set(key, (c = { period, group, pts: [] }));
    c.pts.push(p);
  }
  const cmp = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? -1 : b === null ? 1 : a < b ? -1 : 1);
  return [...cells.values()]
    .sort((a, b) => (a.period < b.period ? -1 : a.period > b.period ? 1 : cmp(a.group, b.group)))
    .map((c) => {
      const byPartner = new Map<string, Set<string>>();
      for (const p of c.pts) {
        const set = byPartner.get(p.partner) ?? new Set<string>();
        set.add(p.subject);
        byPartner.set(p.partner, set);
      }
      const subjects = subjectsOf(c.pts).size;
      const shown = c.pts.filter(isReleased);
      const reason: OracleReason | null = [...byPartner.values()].some((set) => set.size < q.minGroupSize)
        ? 'few_subjects'
        : q.threePartners && byPartner.size < 3
          ? 'few_partners'
          : q.by !== 'partner' && dominantPartners(c.pts.filter(isReleased), q.dominance).size > 0
            ? 'dominance'
            : // A held cell in which some partner's released part is below k (disclosure.ts).
              shown.length > 0 &&
                shown.length < c.pts.length &&
                [...new Set(shown.map((p) => p.partner))].some(
                  (partner) =>
                    new Set(shown.filter((p) => p.partner === partner).map((p) => p.subject)).size < q.minGroupSize,
                )
              ? 'few_subjects'
              : c.pts.some((p) => isProtected.has(p))
                ? 'protects'
                : shown.length === 0
                  ? 'pending'
                  : null;
      if (reason !== null)
        return {
          period: c.period,
          group: c.group,
          value: null,
          n: null,
          state: 'suppressed',
          reasonCode: reason,
          subjects,
        };
      if (shown.length < c.pts.length)
        return {
          period: c.period,
          group: c.group,
          value: round12(measureOf(q.measure, shown)),
          n: q.counts === 'exact' ? subjectsOf(shown).size : null,
          state: 'held',
          reasonCode: 'held',
          asOf: Math.max(...shown.map((p) => release.get(p)!)),
          subjects,
        };
      return {
        period: c.period,
        group: c.group,
        value: round12(measureOf(q.measure, c.pts)),
        n: q.counts === 'exact' ? subjects : null,
        state: 'ok',
        subjects,
      };
    });
}

/** The partners whose absolute sum in a cell is above the share `dominance` of all partners' absolute sums. */
function dominantPartners(pts: readonly OraclePoint[], dominance: number | null | undefined): Set<string> {
  const out = new Set<string>();
  if (dominance === null || dominance === undefined) return out;
  const sums = new Map<string, number>();
  for (const p of pts) sums.set(p.partner, (sums.get(p.partner) ?? 0) + p.value);
  let total = 0;
  for (const s of sums.values()) total += Math.abs(s);
  for (const [partner, s] of sums) if (Math.abs(s) > dominance * total) out.add(partner);
  return out;
}

/** What is compared: everything exactly, reasons by code (the words must be there). */
export function normaliseCells(cells: readonly OracleCell[]): OracleCell[] {
  return cells.map((c) => {
    const base: OracleCell = { period: c.period, group: c.group, value: c.value, n: c.n, state: c.state };
    if (c.state === 'held') base.asOf = c.asOf ?? -1;
    if (c.state !== 'ok') {
      base.reasonCode = c.reasonCode ?? 'missing';
      if (c.reason !== undefined && (typeof c.reason !== 'string' || c.reason.length === 0))
        base.reasonCode = `bad reason ${JSON.stringify(c.reason)}`;
    } else if (c.reason !== undefined || c.reasonCode !== undefined)
      base.reasonCode = `unexpected reason ${JSON.stringify(c.reason)}`;
    return base;
  });
}

/** Canonical JSON: object keys sorted by code unit, no whitespace, undefined members dropped. */
export function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v)).join(',')}]`;
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined);
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** An instant written with a given UTC offset in minutes: 2026-03-29T03:30:00.000+02:00. */
export function isoWithOffset(ms: number, offsetMin: number): string {
  if (offsetMin === 0) return new Date(ms).toISOString();
  const local = new Date(ms + offsetMin * 60_000).toISOString().slice(0, 23);
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}
