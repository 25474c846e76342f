import { z } from 'zod';
import { isoDate, type Kpi } from '../platform/agreement-schema.js';
import type { IncidentRow } from '../platform/control-db.js';
import type { Grain } from '../platform/calendar.js';
import type { Band } from '../query/band-evaluation.js';
import { periodEnd } from '../platform/calendar.js';
import { escapeHtml } from '../platform/html.js';
import type { FeedFreshness } from '../query/freshness.js';
import type { DrillEvent, DrillSheet, FactSheet, GoalEvent, GoalNotice } from './alert-schemas.js';

/** Dates of fact sheets, actions, notes and decisions: the agreement's calendar dates (2000–2100). */
export { isoDate };

export const causeCategories = [
  'data_quality',
  'process',
  'capacity',
  'staffing',
  'system_outage',
  'external',
  'other',
] as const;

/** What the owner writes when resolving: the same template for every KPI and partner. */
export const resolutionSchema = z.strictObject({
  cause: z.enum(causeCategories).describe('cause category'),
  narrative: z.string().trim().min(1, 'say what happened').max(5000),
  actions: z
    .array(
      z.strictObject({
        description: z.string().trim().min(1).max(1000),
        owner: z.string().trim().min(1).max(200),
        due: isoDate,
      }),
    )
    .max(50)
    .default([]),
});
export type Resolution = z.infer<typeof resolutionSchema>;

export const ackSchema = z.strictObject({ note: z.string().trim().max(2000).optional() }).default({});

/** An incident as every reader sees it (its shape is the response schema's). */
export type { FactSheet };

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

/** Which partners' owners answer for a scope: the partner's own, or every owner of a combined figure. */
export function responsiblePartners(kpi: Kpi, scope: string): string[] {
  return scope === 'combined' ? Object.keys(kpi.owners) : kpi.owners[scope] ? [scope] : [];
}

export function sourceLink(row: Pick<IncidentRow, 'kpi' | 'scope' | 'grain' | 'period' | 'snapshot'>): string | null {
  if (!row.grain || !row.period) return null;
  const by = row.scope === 'combined' ? '' : '&by=partner';
  return `/v1/kpis/${row.kpi}/series?grain=${row.grain}&from=${row.period}&to=${periodEnd(row.period, row.grain as Grain)}${by}&snapshot=${row.snapshot}`;
}

export function factSheet(row: IncidentRow, kpi: Kpi | undefined): FactSheet {
  const res = (row.fact_sheet ?? null) as (Resolution & { narrative: string }) | null;
  return {
    id: row.id,
    kind: row.kind,
    state: row.state,
    kpi: { id: row.kpi, title: kpi?.title ?? row.kpi, unit: kpi?.unit ?? '', measure: kpi?.measure ?? '' },
    scope: row.scope,
    reason: row.reason,
    grain: row.grain,
    firstPeriod: row.first_period,
    period: row.period,
    value: row.suppressed ? null : row.value,
    suppressed: row.suppressed,
    band: (row.band ?? null) as Band | null,
    snapshot: Number(row.snapshot),
    digest: row.digest,
    agreementVersion: row.agreement_version,
    source: sourceLink(row),
    freshness: (row.freshness ?? []) as FeedFreshness[],
    owners: kpi ? responsiblePartners(kpi, row.scope).map((p) => ({ partner: p, name: kpi.owners[p]!.name })) : [],
    openedAt: iso(row.opened_at)!,
    ackDueAt: iso(row.ack_due_at)!,
    notifiedAt: iso(row.notified_at),
    acknowledgedAt: iso(row.acknowledged_at),
    escalatedAt: iso(row.escalated_at),
    resolvedAt: iso(row.resolved_at),
    resolution: row.resolution,
    cause: res?.cause ?? null,
    narrative: res?.narrative ?? null,
    actions: res?.actions ?? [],
  };
}

function fmt(v: number | null, unit: string): string {
  return v === null ? 'withheld (fewer subjects than the agreed minimum)' : `${v} ${unit}`;
}

function bandText(b: Band | null, unit: string): string {
  if (!b) return 'no band yet';
  const lo = b.lower === null ? '' : `≥ ${Number(b.lower.toPrecision(6))}`;
  const hi = b.upper === null ? '' : `≤ ${Number(b.upper.toPrecision(6))}`;
  return `${[lo, hi].filter(Boolean).join(' and ')} ${unit} (${b.method})`;
}

/** The fact sheet as labelled lines: the body of the plain-text e-mail and of the HTML table. */
export function factSheetLines(f: FactSheet, roomUrl: string | undefined): [string, string][] {
  const lines: [string, string][] = [
    ['KPI', `${f.kpi.title} (${f.kpi.id})`],
    ['Scope', f.scope],
    ['Kind', f.kind === 'breach' ? 'out of its agreed band' : 'feed stale past its freshness grace'],
    ['State', f.state],
    ['Reason', f.reason],
  ];
  if (f.kind === 'breach') {
    lines.push([
      'Period',
      `${f.grain} from ${f.period}${f.firstPeriod && f.firstPeriod !== f.period ? ` (out of band since ${f.firstPeriod})` : ''}`,
    ]);
    lines.push(['Value', fmt(f.value, f.kpi.unit)]);
    lines.push(['Band', bandText(f.band, f.kpi.unit)]);
  }
  lines.push(['Snapshot', `${f.snapshot} (agreement v${f.agreementVersion})`]);
  if (f.digest) lines.push(['Digest', f.digest]);
  if (f.source) lines.push(['Reproduce', `${roomUrl ?? ''}${f.source}`]);
  lines.push([
    'Feeds',
    f.freshness
      .map(
        (x) =>
          `${x.partner}: ${x.lastArrival ? `last batch ${x.lastArrival}` : 'no batch yet'}${x.stale ? ' (STALE)' : ''}`,
      )
      .join('; ') || '—',
  ]);
  lines.push(['Owners', f.owners.map((o) => `${o.name} (${o.partner})`).join(', ') || '—']);
  lines.push(['Acknowledge by', f.ackDueAt]);
  if (f.acknowledgedAt) lines.push(['Acknowledged', f.acknowledgedAt]);
  if (f.escalatedAt) lines.push(['Escalated to steering', f.escalatedAt]);
  if (f.chair) lines.push(['Chair of the steering committee', `${f.chair.name} <${f.chair.email}>`]);
  if (f.resolvedAt)
    lines.push([
      'Resolved',
      `${f.resolvedAt} (${f.resolution === 'auto' ? 'automatically: back in band' : 'by the owner'})`,
    ]);
  if (f.cause) lines.push(['Cause', f.cause]);
  if (f.narrative) lines.push(['Narrative', f.narrative]);
  f.actions.forEach((a, i) => lines.push([`Action ${i + 1}`, `${a.description} — ${a.owner}, due ${a.due}`]));
  return lines;
}

export function subjectLine(event: string, f: FactSheet): string {
  const what =
    f.kind === 'stale'
      ? `feed of ${f.scope} is stale`
      : `${f.scope} out of band${f.period ? ` (${f.grain} ${f.period})` : ''}`;
  const verb = event === 'incident.resolved' ? 'Resolved' : event === 'incident.escalated' ? 'Escalated' : 'Incident';
  return `[Parity] ${verb}: ${f.kpi.title} — ${what}`;
}

export function renderEmail(
  event: string,
  f: FactSheet,
  roomUrl: string | undefined,
): { subject: string; text: string; html: string } {
  return emailOf(subjectLine(event, f), factSheetLines(f, roomUrl));
}

const shown = (v: number | null, unit: string) => (v === null ? 'withheld (not disclosed)' : `${v} ${unit}`.trim());

/** A goal notice as an e-mail: the goal, what was missed or met, the disclosed values, where to check them. */
export function renderGoalEmail(
  event: GoalEvent,
  n: GoalNotice,
  roomUrl: string | undefined,
): { subject: string; text: string; html: string } {
  const scope = n.goal.scope === 'combined' ? '' : ` (${n.goal.scope})`;
  const subject =
    event === 'goal.milestone_missed'
      ? `[Parity] Milestone missed: ${n.goal.title}${scope} — ${n.milestone?.date ?? ''}`
      : `[Parity] Exit criterion met: ${n.goal.title}${scope}`;
  const lines: [string, string][] = [
    [
      'Goal',
      `${n.goal.title}${scope}: ${n.kpi.title} ${n.goal.direction === 'at_most' ? 'at most' : 'at least'} ${n.goal.target} ${n.kpi.unit} by ${n.goal.due}`,
    ],
  ];
  if (n.milestone)
    lines.push(
      ['Milestone', `${n.milestone.date}: ${n.milestone.target} ${n.kpi.unit}`],
      ['Value', `${shown(n.milestone.value, n.kpi.unit)} (period from ${n.milestone.period})`],
    );
  if (n.criterion) {
    lines.push(['Exit criterion', n.criterion.text]);
    for (const v of n.criterion.values) lines.push([v.period, shown(v.value, '')]);
  }
  lines.push(
    ['Owners', n.owners.map((o) => `${o.name} (${o.partner})`).join(', ')],
    ['Snapshot', `${n.snapshot} (agreement version ${n.agreementVersion})`],
    ['Reproduce', roomUrl ? new URL(n.source, roomUrl).toString() : n.source],
  );
  return emailOf(subject, lines);
}

const secondsText = (s: number | null) => (s === null ? '—' : `${Math.round(s)} s`);

/** The banner every drill e-mail carries, first in the text and the HTML. */
export const DRILL_MARKER = 'DRILL — an exercise of the escalation chain. No KPI is affected; no incident exists.';

/** A drill's notification as an e-mail: marked DRILL in the subject and in a banner above everything else. */
export function renderDrillEmail(
  event: DrillEvent,
  d: DrillSheet,
  roomUrl: string | undefined,
): { subject: string; text: string; html: string } {
  const verb =
    event === 'incident.drill.escalated' ? 'Escalated' : event === 'incident.drill.ended' ? 'Ended' : 'Incident';
  const subject = `[Parity] [DRILL] ${verb}: ${d.kpi.title} — ${d.scope}`;
  const lines: [string, string][] = [
    ['Drill', d.id],
    ['KPI', `${d.kpi.title} (${d.kpi.id})`],
    ['Scope', d.scope],
    ['Started', `${d.startedAt} by ${d.startedBy}`],
    ['Owners', d.owners.map((o) => `${o.name} (${o.partner})`).join(', ') || '—'],
    ['Acknowledge by', d.ackDueAt],
  ];
  if (d.acknowledgedAt) lines.push(['Acknowledged', `${d.acknowledgedAt} by ${d.acknowledgedBy ?? '—'}`]);
  if (d.escalatedAt) lines.push(['Escalated to steering', d.escalatedAt]);
  if (d.chair) lines.push(['Chair of the steering committee', `${d.chair.name} <${d.chair.email}>`]);
  if (d.endedAt) lines.push(['Ended', `${d.endedAt}${d.endedBy ? ` by ${d.endedBy}` : ''}`]);
  lines.push(
    ['Time to acknowledge', secondsText(d.result.acknowledgeSeconds)],
    ['Time to escalate', secondsText(d.result.escalateSeconds)],
  );
  if (roomUrl) lines.push(['Acknowledge', new URL(`/#/steering`, roomUrl).toString()]);
  return emailOf(subject, lines, DRILL_MARKER);
}

function emailOf(
  subject: string,
  lines: [string, string][],
  banner?: string,
): { subject: string; text: string; html: string } {
  const text = `${banner ? `${banner}\n\n` : ''}${subject}\n\n${lines.map(([k, v]) => `${k}: ${v}`).join('\n')}\n`;
  const rows = lines
    .map(
      ([k, v]) =>
        `<tr><th scope="row" style="text-align:left;padding-right:1em">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`,
    )
    .join('');
  const marker = banner
    ? `<p style="border:3px solid #a1120a;color:#a1120a;font-weight:700;padding:0.5em">${escapeHtml(banner)}</p>`
    : '';
  const html = `<!doctype html><html><body>${marker}<h1 style="font-size:1.2em">${escapeHtml(subject)}</h1><table>${rows}</table></body></html>`;
  return { subject, text, html };
}
