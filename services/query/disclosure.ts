import { effectiveMinGroupSize, type Agreement, type Kpi } from '../platform/agreement-schema.js';
import type { AddedFamily } from '../platform/duck-store.js';
import type { Cell, ReasonCode } from './query-schemas.js';
import { families } from './aggregate-compiler.js';

/**
 * The disclosure-control model (docs/privacy.md) in one place: every surface that shows a
 * figure — series in every encoding, /v1/kpis, bands, breaches, incidents, fact sheets,
 * notifications, the dashboard — gets its cells from {@link disclose}.
 */

/** What the agreement says about withholding one KPI's cells. */
export interface DisclosureRules {
  /** k: the strictest minGroupSize of the KPI, the defaults and every partner. */
  minGroupSize: number;
  /** A combined KPI without two-party consent: every cell needs three contributing partners. */
  threePartners: boolean;
  /** Whether cells carry their exact number of distinct subjects (`n`). */
  counts: 'exact' | 'none';
  /** A sum KPI's dominance rule as a fraction (0.8 for 80 %), or null. */
  dominance: number | null;
  /**
   * A quantile KPI (p50/p90/p95): its cells are under the release step's step guard
   * (docs/privacy.md §2.3). A quantile is no sum of its parts, so a partner that moves a cell
   * alone, again and again, while the others' points stay the same, reads one more of their values
   * each time. A ratio's moves give the others' sum and count, which §2.2 already treats as disclosed.
   */
  quantile?: boolean;
}

/**
 * The cell families (grain × the combined figure or a dimension) `next` lets a reader read that
 * `prev`, the version readers had, did not: a grain added (or added back), a dimension added back,
 * a KPI added back, every family of a KPI whose measure changed. Their cells over the points
 * already landed were never judged together with what was served under `prev` (the reader keeps what it read), so the store withholds them
 * (DuckStore.adoptAgreement, reason `version`; docs/privacy.md §3, agreement changes). A week or
 * month added where `prev` agreed days (by the same dimension) is `viaDays`: its cells are sums of
 * day cells, judged where those were served; the store withholds them only where those days were
 * themselves withheld for a version (served never, so judged never).
 */
export function addedFamilies(prev: Agreement, next: Agreement): AddedFamily[] {
  const out: AddedFamily[] = [];
  for (const kpi of next.kpis) {
    // A KPI whose measure changed counts as added: another measure over the same points reads
    // them another way (a median's part of three, then its sum, gave the third value; a p50, then
    // a p90, another order statistic), which no rule judged together (a seventh review).
    const was = prev.kpis.find((k) => k.id === kpi.id && k.measure === kpi.measure);
    const keys = Object.keys(kpi.dimensions);
    for (const grain of kpi.grains) {
      if (was?.grains.includes(grain)) {
        for (const key of keys) if (!(key in was.dimensions)) out.push({ kpi: kpi.id, grain, key });
      } else if (was?.grains.includes('day')) {
        out.push({ kpi: kpi.id, grain, key: null, viaDays: true });
        for (const key of keys)
          out.push({ kpi: kpi.id, grain, key, ...(key in was.dimensions ? { viaDays: true } : {}) });
      } else out.push({ kpi: kpi.id, grain, key: null });
    }
  }
  return out;
}

/**
 * The KPIs of both versions whose cell families (a grain, a dimension, the week∩month slices:
 * families()) `next` drops. Their cells protected atoms under `prev`'s rules; without them those
 * atoms' other cells would be served, and set against the cells readers kept from before give the
 * protected part away (a dominated day: its partner's week now, minus its other day kept, is the
 * day). DuckStore.adoptAgreement withholds the periods holding them (compileProtectedDays).
 */
export function droppedFamilies(prev: Agreement, next: Agreement): { kpi: Kpi; rules: DisclosureRules }[] {
  const key = (f: { grain: string; key: string | null }) => `${f.grain}|${f.key ?? ''}`;
  return prev.kpis.flatMap((was) => {
    const now = next.kpis.find((k) => k.id === was.id);
    if (!now) return [];
    const kept = new Set(families(now).map(key));
    return families(was).some((f) => !kept.has(key(f))) ? [{ kpi: was, rules: disclosureRules(prev, was) }] : [];
  });
}

export function disclosureRules(agreement: Agreement, kpi: Kpi): DisclosureRules {
  return {
    minGroupSize: effectiveMinGroupSize(agreement, kpi),
    threePartners: kpi.breakdown === 'combined' && !agreement.twoPartyConsent,
    counts: kpi.counts,
    dominance: kpi.dominance === undefined ? null : kpi.dominance / 100,
    quantile: kpi.measure === 'p50' || kpi.measure === 'p90' || kpi.measure === 'p95',
  };
}

/**
 * One aggregate cell as DuckDB computes it, before anything is withheld: never sent as it is.
 * `minPart` is the fewest distinct subjects any contributing partner has in the cell,
 * `partners` the number of contributing partners, and `protects` whether any of its points
 * belongs to a partner's small part (or a too-few-partners cell) in some other readable cell
 * of the KPI — another grain, another breakdown — so that disclosing this cell would let
 * that part be worked out by subtraction.
 */
export interface RawCell {
  period: string;
  group: string | null;
  value: number | null;
  n: number;
  minPart: number;
  partners: number;
  protects: boolean;
  /** Under a dominance rule: one partner's share of the cell's sum exceeds it (never on a partner's own cell). */
  dominated: boolean;
  /**
   * Whether the cell's period starts before the first day the last retention run kept: it lost
   * points to retention, and its value now against its value before would be what was deleted.
   */
  expired?: boolean;
  /**
   * Why the cell's period is withheld from an agreement change on (DuckStore.withheldPeriods):
   * `zone`, a new time zone moved released points into or out of it (its value now against its
   * value at any earlier snapshot would be those with the ones released since); `version`, a
   * version added its family over points that landed before, dropped a family that protected
   * some of them, or changed its measure (set against what was served before, it would give
   * withheld parts away).
   */
  withheldFor?: 'zone' | 'version';
  /**
   * Whether the cell holds points not released at the snapshot read (docs/privacy.md §3): `value`
   * and `n` are then those of its released points, the ones served since snapshot `asOf`.
   */
  pending: boolean;
  /** The latest release among the cell's released points; null when none is released. */
  asOf: number | null;
  /**
   * The fewest released distinct subjects of any partner with released points in the cell: what
   * a held cell, which shows its released points only, is checked against k with.
   */
  relMinPart: number;
}

/** What a quantile's held or pending cell adds: the step guard (docs/privacy.md §2.3). */
const STEP =
  ' A median or percentile that one partner moved alone last also waits until another partner’s data here changes.';

/** What a held or pending cell of a sum under a dominance rule adds: the dominated part's wait (docs/privacy.md §3). */
const dominantWait = (rules: DisclosureRules) =>
  rules.dominance === null
    ? ''
    : ` A partner whose part of a change is more than ${Math.round(rules.dominance * 1000) / 10} % of it waits until that partner sends more for that day (other partners' later data judges it again only a few times).`;

/** Why a cell is withheld: the codes are stable, the words are the API's English. */
export function reasonText(code: ReasonCode, rules: DisclosureRules): string {
  switch (code) {
    case 'few_subjects':
      return `A partner contributes fewer than ${rules.minGroupSize} distinct subjects to this figure.`;
    case 'few_partners':
      return 'Fewer than three partners contribute to this combined figure.';
    case 'dominance':
      return `One partner contributes more than ${Math.round((rules.dominance ?? 1) * 1000) / 10} % of this sum.`;
    case 'protects':
      return 'Withheld so that another withheld figure cannot be worked out from this one.';
    case 'retention':
      return "Part of this period is past the agreement's retention; what is left is not shown on its own.";
    case 'zone':
      return "The agreement's new time zone moved points into or out of this period; its figure is not shown again, since set against earlier ones it could give withheld figures away.";
    case 'version':
      return 'A new version of the agreement added or dropped a grain or breakdown; this period holds points from before it and is not shown, since set against what was shown before it could give withheld figures away.';
    case 'pending':
      return `Not shown yet: its points wait until each partner whose data changed here has at least ${rules.minGroupSize} new distinct subjects in the change.${rules.quantile ? STEP : ''}${dominantWait(rules)}`;
    case 'held':
      return `The value served since the snapshot in asOf: newer points wait until each partner whose data changed here has at least ${rules.minGroupSize} new distinct subjects in the change.${rules.quantile ? STEP : ''}${dominantWait(rules)}`;
  }
}

/** The reason a cell is withheld, or null when it is disclosed. */
export function withholdReason(c: RawCell, rules: DisclosureRules): ReasonCode | null {
  if (c.expired) return 'retention';
  if (c.minPart < rules.minGroupSize) return 'few_subjects';
  if (rules.threePartners && c.partners < 3) return 'few_partners';
  if (c.dominated) return 'dominance';
  // A held cell shows its released points only. Released points are checked as they are released,
  // in the cells of that time; an agreement change (a grain added back, another time zone) can
  // put them in cells where they were never checked, fewer than k of one partner's. A held cell
  // in which some partner's released part is below k is withheld, not shown held (and its points
  // protect every other cell holding them: aggregate-compiler.ts, flaggedAtoms).
  if (c.pending && c.asOf !== null && c.relMinPart < rules.minGroupSize) return 'few_subjects';
  if (c.protects) return 'protects';
  if (c.pending && c.asOf === null) return 'pending';
  // A period an agreement change withheld (a new zone, a family added), whatever else holds of it.
  if (c.withheldFor) return c.withheldFor;
  return null;
}

/**
 * The cells as served. A cell is disclosed only if every contributing partner has at least k
 * distinct subjects in it (the contributor rule: padding with one's own subjects gains
 * nothing), a combined KPI's cell has three contributors unless the partners consented to
 * two, and none of its points lies in a withheld part of any other readable cell of the KPI
 * (the linked-cell rule: no withheld part follows from disclosed cells by subtraction across
 * grains, breakdowns or the reader's own data). The decision depends on the cells and the
 * agreement only, so every reader gets the same bytes. A cell that passes but holds points not
 * released yet (their change has not passed the rules, docs/privacy.md §3) is *held*: it shows
 * the value of its released points, served since snapshot `asOf`.
 */
export function disclose(cells: readonly RawCell[], rules: DisclosureRules): Cell[] {
  return cells.map((c) => {
    const code = withholdReason(c, rules);
    if (code !== null)
      return {
        period: c.period,
        group: c.group,
        value: null,
        n: null,
        state: 'suppressed',
        reasonCode: code,
        reason: reasonText(code, rules),
      };
    const n = rules.counts === 'exact' ? c.n : null;
    if (c.pending)
      return {
        period: c.period,
        group: c.group,
        value: c.value,
        n,
        state: 'held',
        reasonCode: 'held',
        reason: reasonText('held', rules),
        asOf: c.asOf!,
      };
    return { period: c.period, group: c.group, value: c.value, n, state: 'ok' };
  });
}
