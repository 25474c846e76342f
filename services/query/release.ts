import { createHash } from 'node:crypto';
import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import { periodEnd, periodStart, type Grain } from '../platform/calendar.js';
import { RECORD_RELEASES, type ReleaseExec, type Releaser } from '../platform/duck-store.js';
import {
  compileReleaseStep,
  CROSS,
  crossValue,
  families,
  type ChangeGroupKey,
  type FamilyGrain,
} from './aggregate-compiler.js';
import { disclosureRules, type DisclosureRules } from './disclosure.js';

/**
 * Stable disclosure over time (docs/privacy.md §3): the release step the store runs for every
 * committed snapshot, in snapshot order, before readers see it (one step at the highest of the
 * snapshots that became ready together, over the KPIs any of them touched). For each KPI, the
 * pending atoms are narrowed to those whose change passes the contributor rule in every
 * readable cell (heldGroups), and those are released at this snapshot. What stays pending is
 * counted in no served value: a cell holding it is *held* at the value of its released points,
 * so one late point never moves a disclosed cell by exactly that point.
 *
 * The step reads its KPIs' pending atoms once, grouped per partner, local day and dims, with the
 * counts their batches kept and, for small groups of small batches, their subjects
 * (compileReleaseStep); reads the points of small groups only when a part must be counted
 * exactly and their atoms did not list them; decides here, and releases in one statement: three to five
 * statements whatever the KPIs and the change (a statement's planning alone costs
 * milliseconds; the SQL loop this replaced ran eight to thirty a KPI).
 */
export function releaser(agreement: () => Agreement): Releaser {
  /**
   * Whether an atom may wait (held_atoms.waiting): read once, then true from the first step that
   * marks one (a step rolled back leaves it true, which only costs a wake that finds nothing). A
   * room where no atom ever waited runs no wake statement in its steps.
   */
  let mayWait: boolean | undefined;
  return async (exec, snapshot, ids) => {
    const a = agreement();
    // A KPI not agreed (any more) is not decided: nobody reads it, its atoms stay pending.
    const kpis = ids.flatMap((id) => a.kpis.filter((k) => k.id === id));
    if (kpis.length > 0) {
      const maxK = Math.max(...kpis.map((kpi) => disclosureRules(a, kpi).minGroupSize));
      const step = compileReleaseStep(kpis, snapshot, maxK, agreementDigest(a));
      // KPIs whose atoms can wait: the step guard's (quantiles) and a dominance rule's (sums).
      const waits = kpis.some((kpi) => {
        const r = disclosureRules(a, kpi);
        return r.quantile === true || r.dominance !== null;
      });
      if (waits && mayWait === undefined)
        mayWait = (await exec.all('SELECT 1 FROM held_atoms WHERE waiting IS NOT NULL LIMIT 1')).length > 0;
      // Waiting atoms near another partner's candidate, and dominated ones whose part changed (or,
      // a bounded number of times, near other partners' later data), are candidates again
      // (heldGroups, `waiting` and `dominated`).
      if (waits && mayWait) await exec.run(step.wake.sql, step.wake.params);
      const byKpi = new Map<string, ChangeGroup[]>(kpis.map((k) => [k.id, []]));
      const all = new Map<string, ChangeGroup>();
      for (const r of await exec.all(step.groups.sql, step.groups.params)) {
        const g = changeGroupOf(r, step.dimensionKeys);
        byKpi.get(g.kpi)!.push(g);
        all.set(groupKey(g), g);
      }
      /**
       * Reads `groups` from their points: their exact subjects, and their counts where none were
       * kept. A group without points left (none should be: retention deletes an atom's row with
       * its points, a new time zone re-keys it with them) changes no cell: it is left out of the decision, and released.
       */
      const readPoints = async (groups: readonly ChangeGroup[]) => {
        const q = step.points(groups);
        const found = new Set<ChangeGroup>();
        for (const r of await exec.all(q.sql, q.params)) {
          const g = all.get(groupKey(keyOf(r)))!;
          g.d = Math.max(g.d, Number(r['d']));
          g.s = Number(r['s']);
          g.subjects = (r['subjects'] as Json[]).map(String);
          g.unknown = false;
          found.add(g);
        }
        const empty = new Set(groups.filter((g) => !found.has(g)));
        if (empty.size > 0)
          for (const [id, gs] of byKpi)
            byKpi.set(
              id,
              gs.filter((g) => !empty.has(g)),
            );
      };
      // Atoms held before their counts were kept (schema.sql): their groups are counted from the points.
      const unknown = [...all.values()].filter((g) => g.unknown);
      if (unknown.length > 0) await readPoints(unknown);
      // Quantile KPIs with a change: who moved each cell it touches last (the step guard, heldGroups).
      const history = new Map<string, ReleasedAtom[]>();
      const spans = kpis.flatMap((kpi) => {
        const gs = byKpi.get(kpi.id)!;
        if (!disclosureRules(a, kpi).quantile || gs.length === 0) return [];
        history.set(kpi.id, []);
        let first = gs[0]!.day;
        let last = first;
        for (const g of gs)
          for (const grain of kpi.grains) {
            const start = periodOf(g.day, grain);
            if (start < first) first = start;
            const end = periodEnd(start, grain);
            if (end > last) last = end;
          }
        return [{ kpi, first, last }];
      });
      if (spans.length > 0) {
        const q = step.history(spans);
        for (const r of await exec.all(q.sql, q.params)) {
          const dims = r['dims'] === null ? null : (JSON.parse(String(r['dims'])) as Record<string, unknown>);
          history.get(String(r['kpi']))!.push({
            partner: String(r['partner']),
            day: String(r['day']),
            values: Object.fromEntries(
              step.dimensionKeys.map((key) => [key, dims?.[key] == null ? null : String(dims[key])]),
            ),
            last: Number(r['last']),
          });
        }
      }
      const dropped: ChangeGroupKey[] = [];
      const waiting: ChangeGroup[] = [];
      const dominated: ChangeGroup[] = [];
      const decide = (kpi: Kpi) =>
        heldGroups(kpi, disclosureRules(a, kpi), byKpi.get(kpi.id)!, history.get(kpi.id), waiting, dominated);
      // KPIs with a part no group of k vouches for: their small groups' subjects are read, once.
      const exact: Kpi[] = [];
      for (const kpi of kpis) {
        const held = decide(kpi);
        if (held === NEEDS_SUBJECTS) exact.push(kpi);
        else dropped.push(...held);
      }
      if (exact.length > 0) {
        await readPoints(
          exact.flatMap((kpi) => {
            const k = disclosureRules(a, kpi).minGroupSize;
            return byKpi.get(kpi.id)!.filter((g) => g.d < k && !g.subjects);
          }),
        );
        for (const kpi of exact) {
          const held = decide(kpi);
          // Every group below k has its subjects now: an exact count cannot be missing.
          if (held === NEEDS_SUBJECTS)
            throw new Error(`release: the subjects of ${kpi.id}'s small groups were not read`);
          dropped.push(...held);
        }
      }
      /** Marks groups waiting (those dominated with their verdict's snapshot and count). */
      const wait = async (groups: readonly ChangeGroup[], dominant: boolean) => {
        if (groups.length === 0) return;
        mayWait = true;
        const q = step.wait(groups, dominant);
        await exec.run(q.sql, q.params);
      };
      await wait(dominated, true);
      const release = step.release(dropped);
      await exec.run(release.sql, release.params);
      await wait(waiting, false);
      for (const sql of RECORD_RELEASES) await exec.run(sql, [snapshot]);
    }
    // Released at once: no row needed (a point without a row of its atom is released).
    await exec.run('DELETE FROM held_atoms WHERE released = $1 AND snapshot = $1', [snapshot]);
  };
}

/** A row a release step's statement returns, and one of its values. */
type Row = Awaited<ReturnType<ReleaseExec['all']>>[number];
type Json = Row[string];

/** One partner's change of a KPI on one local day with one dims text (its atoms at every pending snapshot). */
export interface ChangeGroup extends ChangeGroupKey {
  /** Each agreed dimension's value in the group's dims (null: absent). */
  values: Readonly<Record<string, string | null>>;
  /** Distinct subjects, a lower bound (counted by 64-bit hashes; the most of one of its atoms until its points are read). */
  d: number;
  /** The sum of the group's values. */
  s: number;
  /** An atom of the group was held without its counts: `d` and `s` are not known until its points are read. */
  unknown?: boolean;
  /** The group's distinct subjects, exactly: read only for groups with `d` below k, when needed. */
  subjects?: readonly string[] | undefined;
}

const keyOf = (r: Row): ChangeGroupKey => ({
  kpi: String(r['kpi']),
  partner: String(r['partner']),
  day: String(r['day']),
  dims: r['dims'] === null ? null : String(r['dims']),
});

const groupKey = (g: ChangeGroupKey) => JSON.stringify([g.kpi, g.partner, g.day, g.dims]);

function changeGroupOf(r: Row, dimensionKeys: readonly string[]): ChangeGroup {
  const values: Record<string, string | null> = {};
  dimensionKeys.forEach((key, i) => (values[key] = r[`x${i}`] == null ? null : String(r[`x${i}`])));
  const g: ChangeGroup = { ...keyOf(r), values, d: Number(r['d']), s: Number(r['s']), unknown: r['unknown'] === true };
  // Listed by its atoms (compileReleaseStep): exact, so the group needs no read of its points.
  const listed = r['subjects'];
  if (Array.isArray(listed)) {
    g.subjects = listed.map(String);
    g.d = Math.max(g.d, g.subjects.length);
  }
  return g;
}

/** A readable cell of the change: its parts, partner → the indices of its groups. */
type Cell = Map<string, number[]>;

/** One partner's released points of a KPI on one local day with one dims text, and the latest snapshot that released some. */
export interface ReleasedAtom {
  partner: string;
  day: string;
  /** Each agreed dimension's value (null: absent). */
  values: Readonly<Record<string, string | null>>;
  last: number;
}

/** What the step guard knows of a cell's released points: their partners, and the partners of its last move. */
interface CellHistory {
  partners: Set<string>;
  last: number;
  movers: Set<string>;
}

/** Periods of the days seen, per grain (a few thousand days at most; cleared past PERIODS_KEPT). */
const periods: Record<Grain, Map<string, string>> = { day: new Map(), week: new Map(), month: new Map() };
const PERIODS_KEPT = 100_000;

function periodOf(day: string, grain: FamilyGrain): string {
  if (grain === 'day') return day;
  // A slice (the days a week shares with a month) starts at the later of the two starts.
  if (grain === 'slice') {
    const week = periodOf(day, 'week');
    const month = periodOf(day, 'month');
    return week > month ? week : month;
  }
  const m = periods[grain];
  let p = m.get(day);
  if (p === undefined) {
    if (m.size >= PERIODS_KEPT) m.clear();
    m.set(day, (p = periodStart(day, grain)));
  }
  return p;
}

/** A digest of an agreement, computed once per object: what waiting atoms were judged under. */
const digests = new WeakMap<Agreement, string>();
function agreementDigest(a: Agreement): string {
  let d = digests.get(a);
  if (d === undefined) digests.set(a, (d = createHash('sha256').update(JSON.stringify(a)).digest('base64url')));
  return d;
}

/** A group's (or a released atom's) group in a family: null, a dimension's value, or every dimension's (CROSS). */
function groupIn(
  kpi: Kpi,
  key: string | null,
  values: Readonly<Record<string, string | null | undefined>>,
): string | null {
  if (key === null) return null;
  return key === CROSS ? crossValue(kpi, values) : (values[key] ?? null);
}

/** heldGroups could not decide without the exact subjects of some group below k. */
export const NEEDS_SUBJECTS = Symbol('needs subjects');

/**
 * The groups of one KPI's change that stay pending (docs/privacy.md §3): a group drops when, in
 * some readable cell (every agreed grain, and the week∩month slices, × the combined figure and each dimension: families()) holding it, its
 * partner's part of the change has fewer than k distinct subjects, or dominates the change's sum
 * (a dominance rule), or the cell is combined without consent and fewer than three partners
 * changed. Drops are decided in rounds, every failing part of a round at once, until a round
 * drops nothing (a dropped group can leave another cell's part too small). A part holds at least
 * the subjects of its largest group, so only a part with no group of k is counted exactly, as the
 * union of its groups' subjects; without those (`subjects` unread) the answer is NEEDS_SUBJECTS.
 *
 * With `waiting`, it also adds there the held groups that *wait* (a quantile KPI's): those the
 * step guard holds in some cell while no cell they lie in holds another partner's group. Until
 * another partner's pending atom joins one of their cells, every later step would hold them
 * again, and in its first round: none of their cells gains a second partner, and the guard's
 * history of their cells changes only by their own partner's releases, which leave it the last
 * mover. The failing rules of a quantile KPI (k, three partners, the guard) only fail more as
 * groups drop, so the rounds find the least set of drops closed under them; a group in that set
 * from the start changes nothing by being left out. So the store leaves waiting atoms out of the
 * candidates (compileReleaseStep's `wake` and `wait`) and every step releases what it would
 * release with them.
 *
 * With `dominated`, it adds there the held groups whose part dominated a cell's change (a
 * dominance rule, in a cell whose change holds another partner's part and which the
 * three-partner rule lets through) in the round they dropped. Those wait too, for another
 * reason: the verdict weighs their part against the change's total, which holds the other
 * partners' parts, so a reader padding its own pending part could step the total until the
 * verdict flips and learn the dominant part from where it did (docs/privacy.md §3, "dominance").
 * A dominated group is judged again when its own part changes (a newer atom of its partner, day
 * and dims), and otherwise only a bounded number of times, on other partners' later data near
 * it (compileReleaseStep's `wake`, DOMINANCE_VERDICTS): the others' padding cannot walk it.
 */
export function heldGroups(
  kpi: Kpi,
  rules: DisclosureRules,
  groups: readonly ChangeGroup[],
  history: readonly ReleasedAtom[] = [],
  waiting?: ChangeGroup[],
  dominated?: ChangeGroup[],
): ChangeGroup[] | typeof NEEDS_SUBJECTS {
  const k = rules.minGroupSize;
  // Cells (family × period × dimension value), each its parts (partner → groups). Keyed by the
  // rows' own strings in nested maps: no key is built per group and family.
  const cellsOfGroup: Cell[][] = groups.map(() => []);
  const all: Cell[] = [];
  const guarded = rules.quantile === true;
  const past = new Map<Cell, CellHistory>();
  for (const f of families(kpi)) {
    const byPeriod = new Map<string, Map<string | null, Cell>>();
    for (const [gi, g] of groups.entries()) {
      if (g.unknown) throw new Error(`release: ${g.kpi}'s group ${g.partner} ${g.day} was not counted`);
      const period = periodOf(g.day, f.grain);
      const v = groupIn(kpi, f.key, g.values);
      let byValue = byPeriod.get(period);
      if (!byValue) byPeriod.set(period, (byValue = new Map()));
      let cell = byValue.get(v);
      if (!cell) {
        byValue.set(v, (cell = new Map()));
        all.push(cell);
      }
      const part = cell.get(g.partner);
      if (part) part.push(gi);
      else cell.set(g.partner, [gi]);
      cellsOfGroup[gi]!.push(cell);
    }
    if (!guarded) continue;
    // The released atoms of the cells the change touches: who contributes, and who moved each last.
    for (const h of history) {
      const v = groupIn(kpi, f.key, h.values);
      const cell = byPeriod.get(periodOf(h.day, f.grain))?.get(v);
      if (!cell) continue;
      let p = past.get(cell);
      if (!p) past.set(cell, (p = { partners: new Set(), last: -1, movers: new Set() }));
      p.partners.add(h.partner);
      if (h.last > p.last) {
        p.last = h.last;
        p.movers = new Set([h.partner]);
      } else if (h.last === p.last) p.movers.add(h.partner);
    }
  }
  const alive = groups.map(() => true);
  /** The exact distinct subjects of a part's live groups, none of which holds k, against k. */
  const small = (gs: readonly number[]): boolean | typeof NEEDS_SUBJECTS => {
    let union: Set<string> | undefined;
    let only: readonly string[] | undefined;
    for (const gi of gs) {
      if (!alive[gi]) continue;
      const subjects = groups[gi]!.subjects;
      if (!subjects) return NEEDS_SUBJECTS;
      if (only === undefined && union === undefined)
        only = subjects; // one group: its subjects are distinct
      else {
        union ??= new Set(only);
        only = undefined;
        for (const x of subjects) union.add(x);
        if (union.size >= k) return false;
      }
    }
    return (union?.size ?? only?.length ?? 0) < k;
  };
  const dominance = rules.dominance;
  /** A part's sum over its live groups. */
  const sumOf = (gs: readonly number[]) => {
    let t = 0;
    for (const gi of gs) if (alive[gi]) t += groups[gi]!.s;
    return t;
  };
  /** Groups whose part dominated a cell's change of two partners or more (of three where the rule asks for them). */
  const dominant = new Set<number>();
  let dirty: Iterable<Cell> = all;
  for (;;) {
    const failing: number[] = [];
    for (const cell of dirty) {
      // The cell's contributing partners (parts with a live group) and, for dominance, its total.
      let np = 0;
      let total = 0;
      for (const gs of cell.values())
        if (gs.some((gi) => alive[gi])) {
          np++;
          if (dominance !== null) total += Math.abs(sumOf(gs));
        }
      for (const gs of cell.values()) {
        let live = false;
        let big = false;
        for (const gi of gs)
          if (alive[gi]) {
            live = true;
            if (groups[gi]!.d >= k) big = true;
          }
        if (!live) continue;
        let bad = rules.threePartners && np < 3;
        if (!bad && dominance !== null && Math.abs(sumOf(gs)) > dominance * total) {
          bad = true;
          // A part alone in its cell's change holds all of it: no other part is weighed against it.
          if (np > 1) for (const gi of gs) if (alive[gi]) dominant.add(gi);
        }
        if (!bad && !big) {
          const s = small(gs);
          if (s === NEEDS_SUBJECTS) return NEEDS_SUBJECTS;
          bad = s;
        }
        if (bad) for (const gi of gs) if (alive[gi]) failing.push(gi);
      }
      // The step guard: a partner that alone moves a quantile cell in which others have points
      // waits when the cell's last move was its own alone (the others' points have not changed
      // since a value it chose where to put): one move each time the others' points change.
      const p = np === 1 ? past.get(cell) : undefined;
      if (p && p.movers.size === 1) {
        const [partner, gs] = [...cell].find(([, list]) => list.some((gi) => alive[gi]))!;
        if (p.movers.has(partner) && [...p.partners].some((q) => q !== partner))
          for (const gi of gs) if (alive[gi]) failing.push(gi);
      }
    }
    if (failing.length === 0) break;
    // Every failing part of the round drops at once; only the cells they lie in can change.
    const next = new Set<Cell>();
    for (const gi of failing) {
      if (!alive[gi]) continue;
      alive[gi] = false;
      for (const cell of cellsOfGroup[gi]!) next.add(cell);
    }
    dirty = next;
  }
  if (dominated) for (const gi of dominant) dominated.push(groups[gi]!);
  if (waiting && guarded)
    for (const [gi, g] of groups.entries()) {
      const cells = cellsOfGroup[gi]!;
      if (cells.some((cell) => cell.size > 1)) continue;
      if (
        cells.some((cell) => {
          const p = past.get(cell);
          return (
            p !== undefined &&
            p.movers.size === 1 &&
            p.movers.has(g.partner) &&
            [...p.partners].some((q) => q !== g.partner)
          );
        })
      )
        waiting.push(g);
    }
  return groups.filter((_, gi) => !alive[gi]);
}
