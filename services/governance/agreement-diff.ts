import { durationMs, effectiveMinGroupSize, type Agreement } from '../platform/agreement-schema.js';
import type { AgreementChange, JsonValue } from './governance-schemas.js';

/** One difference between two agreement versions, in plain terms (its shape is the response schema's). */
export type { AgreementChange };

const tier = { need_to_know: 0, partnership: 1, public: 2 } as const;

/** Lists keyed by what identifies their items, so a reordering is no change and an item's changes name it. */
function keyed(a: Agreement): Record<string, unknown> {
  return {
    ...a,
    partners: Object.fromEntries(a.partners.map((p) => [p.id, p])),
    steering: Object.fromEntries(a.steering.map((s) => [s.email, s])),
    kpis: Object.fromEntries(a.kpis.map((k) => [k.id, k])),
    goals: Object.fromEntries(a.goals.map((g) => [g.id, { ...g, milestones: keyedMilestones(g.milestones) }])),
  };
}

/** Milestones by date, so moving one names it and a new one is an addition. */
function keyedMilestones(ms: Agreement['goals'][number]['milestones']): Record<string, { target: number }> {
  return Object.fromEntries(ms.map((m) => [m.date, { target: m.target }]));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const show = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));

/** Leaf differences: objects by key; arrays of plain values as sets (added / removed items); other arrays whole. */
function walk(
  before: unknown,
  after: unknown,
  path: string[],
  out: { path: string[]; change: AgreementChange['change']; before?: unknown; after?: unknown }[],
): void {
  if (same(before, after)) return;
  if (isObject(before) && isObject(after)) {
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)]))
      walk(before[k], after[k], [...path, k], out);
    return;
  }
  if (
    Array.isArray(before) &&
    Array.isArray(after) &&
    [...before, ...after].every((v) => typeof v !== 'object' || v === null) &&
    !(path.at(-1) === 'range')
  ) {
    for (const v of after) if (!before.includes(v)) out.push({ path, change: 'added', after: v });
    for (const v of before) if (!after.includes(v)) out.push({ path, change: 'removed', before: v });
    return;
  }
  if (before === undefined) out.push({ path, change: 'added', after });
  else if (after === undefined) out.push({ path, change: 'removed', before });
  else out.push({ path, change: 'changed', before, after });
}

/**
 * What an average or rate per partner shows beyond its figures (docs/privacy.md §4): with the
 * combined figure beside the partners' own, each partner's count follows (two partners: exactly),
 * whatever `counts` says. Empty for any other KPI.
 */
function volumes(kpi: Agreement['kpis'][number] | undefined): string {
  if (!kpi || kpi.breakdown !== 'per_partner' || (kpi.measure !== 'avg' && kpi.measure !== 'rate')) return '';
  return `; of ${kpi.measure === 'avg' ? 'an average' : 'a rate'} per partner, each partner's number of points follows from its figure and the combined one, whatever counts says`;
}

/** Why a change loosens privacy, or undefined. */
function privacyOf(
  path: string[],
  change: AgreementChange['change'],
  before: unknown,
  after: unknown,
  proposed: Agreement,
): string | undefined {
  const [top, id, field, sub] = path;
  const last = path.at(-1);
  // What an average or rate per partner adds to a KPI's flag (empty for any other KPI).
  const note = top === 'kpis' ? volumes(proposed.kpis.find((k) => k.id === id)) : '';
  if (
    (last === 'minGroupSize' || last === 'effectiveMinGroupSize') &&
    (change === 'removed' || (change === 'changed' && Number(after) < Number(before)))
  )
    return 'a lower minimum group size: smaller groups become visible';
  if (path.length === 2 && change === 'added') {
    if (top === 'kpis') return `a new figure is shared${note}`;
    if (top === 'partners') return "a new partner reads the partnership's figures";
    if (top === 'steering') return 'a new steering member reads need-to-know KPIs';
  }
  if (top === 'partners' && field === 'contacts') {
    const had = new Set(((before as { email: string }[] | undefined) ?? []).map((c) => c.email.toLowerCase()));
    if (((after as { email: string }[] | undefined) ?? []).some((c) => !had.has(c.email.toLowerCase())))
      return 'a new contact receives the monthly review';
  }
  if (top === 'twoPartyConsent' && after === true)
    return "two-party consent: with two partners each can work out the other's figure";
  if (top === 'retention') {
    const b = typeof before === 'string' ? durationMs(before) : Infinity;
    const a = typeof after === 'string' ? durationMs(after) : Infinity;
    if (a > b) return 'points are kept longer';
  }
  if (top !== 'kpis' || id === undefined) return undefined;
  if (field === 'disclosure' && tier[after as keyof typeof tier] > tier[before as keyof typeof tier])
    return `a wider disclosure tier (${show(before)} → ${show(after)})`;
  if (field === 'published' && after === true) return 'published: readable without a token';
  if (field === 'counts' && after === 'exact')
    return "exact subject counts (n): each partner's volume per period is shown";
  if (field === 'dominance' && (change === 'removed' || (change === 'changed' && Number(after) > Number(before))))
    return "a looser dominance rule: one partner's larger share of a sum becomes visible";
  if (field === 'needToKnow' && change === 'added') return 'one more person reads a need-to-know KPI';
  // The room withholds the cells of a grain or dimension a version adds over the points landed
  // before it (DuckStore.adoptAgreement, reason `version`): said here, before anyone co-signs.
  if (field === 'dimensions' && change === 'added')
    return Array.isArray(after)
      ? `a new dimension ${sub}: finer breakdowns (from this version on: periods holding earlier points that carry it stay withheld)`
      : `a new value of dimension ${sub}: finer breakdowns`;
  if (field === 'grains' && change === 'added')
    return `a new grain (${show(after)}): more cells to compare (from this version on: its periods holding earlier points stay withheld)`;
  if (field === 'breakdown' && after === 'per_partner')
    return `per-partner breakdown: each partner's own figure is shown${note}`;
  // Another measure over the same points reads them another way (a median, then a sum, gives the
  // values a median hid): the store withholds every period over earlier points (addedFamilies).
  if (field === 'measure' && change === 'changed')
    return `measure ${show(before)} → ${show(after)}: the same points read another way (from this version on: periods holding earlier points stay withheld)${note}`;
  if (field === 'measure' && note) return `measure ${show(after)}${note}`;
  if (field === 'owners' && ((path.length === 4 && change === 'added') || (last === 'email' && change === 'changed')))
    return 'a new root-cause owner reads the KPI, whatever its tier';
  return undefined;
}

function describe(path: string[], change: AgreementChange['change'], before: unknown, after: unknown): string {
  const [top, id, ...rest] = path;
  const subject =
    top === 'kpis'
      ? `KPI ${id}`
      : top === 'partners'
        ? `partner ${id}`
        : top === 'steering'
          ? `steering member ${id}`
          : top === 'goals'
            ? `goal ${id}`
            : path.join('.');
  const what = ['kpis', 'partners', 'steering', 'goals'].includes(top ?? '') ? rest.join('.') : '';
  if (!what)
    return change === 'added'
      ? `${subject} added`
      : change === 'removed'
        ? `${subject} removed`
        : `${subject}: ${show(before)} → ${show(after)}`;
  if (change === 'added')
    return `${subject}: ${what} ${Array.isArray(after) || isObject(after) ? 'added ' + show(after) : `+ ${show(after)}`}`;
  if (change === 'removed')
    return `${subject}: ${what} ${Array.isArray(before) || isObject(before) ? 'removed' : `− ${show(before)}`}`;
  return `${subject}: ${what} ${show(before)} → ${show(after)}`;
}

/** What a proposal changes against the agreement in force, each loosening of privacy flagged. */
export function diffAgreements(current: Agreement, proposed: Agreement): AgreementChange[] {
  const raw: Parameters<typeof walk>[3] = [];
  walk(keyed(current), keyed(proposed), [], raw);
  // The threshold that applies is the strictest of several settings: a KPI whose effective
  // threshold falls (a strict partner leaves, a default drops) is named as such.
  for (const k of proposed.kpis) {
    const before = current.kpis.find((x) => x.id === k.id);
    if (!before) continue;
    const [b, a] = [effectiveMinGroupSize(current, before), effectiveMinGroupSize(proposed, k)];
    if (a < b) raw.push({ path: ['kpis', k.id, 'effectiveMinGroupSize'], change: 'changed', before: b, after: a });
  }
  return raw.map(({ path, change, before, after }) => {
    const privacy = privacyOf(path, change, before, after, proposed);
    const text = describe(path, change, before, after) + (privacy ? ` (loosens privacy: ${privacy})` : '');
    return {
      path: path.join('.'),
      change,
      // Parts of two agreements: JSON values.
      ...(before !== undefined ? { before: before as JsonValue } : {}),
      ...(after !== undefined ? { after: after as JsonValue } : {}),
      text,
      loosensPrivacy: privacy !== undefined,
      ...(privacy ? { privacy } : {}),
    };
  });
}
