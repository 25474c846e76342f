import { escapeHtml } from '../platform/html.js';
import type { Review } from './review-schemas.js';

/**
 * The monthly review as an HTML page (the dashboard's review page and the e-mail's HTML part) and
 * as plain text (the e-mail's text part). Both are rendered from the kept document alone, so
 * every partner gets the same bytes; numbers are printed as the document holds them.
 */

const num = (v: number | null | undefined, unit = '') =>
  v === null || v === undefined ? '—' : `${Number(v.toPrecision(6))}${unit ? ` ${unit}` : ''}`;
const pct = (v: number | null) => (v === null ? '—' : `${Math.round(v * 1000) / 10} %`);
const goalState: Record<string, string> = {
  met: 'met',
  missed: 'missed',
  on_track: 'on track',
  at_risk: 'at risk',
  no_data: 'no data',
};

function table(head: string[], rows: string[][]): string {
  const th = head.map((h) => `<th scope="col">${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table>`;
}

type Section = { title: string; head: string[]; rows: string[][]; empty: string };

/** Service-level attainment and the month's maintenance windows (none in a review kept before they existed). */
function serviceLevelSections(r: Review): Section[] {
  const sl = r.serviceLevels;
  if (!sl) return [];
  return [
    {
      title: 'Service levels',
      head: ['Partner', 'Feed periods on time', 'Incidents', 'Acknowledged in time', 'Resolved in time'],
      rows: sl.partners
        .filter((p) => p.feeds.periods > 0 || p.incidents.some((i) => i.opened > 0))
        .map((p) => {
          const f = p.feeds;
          const per = (pick: (i: (typeof p.incidents)[number]) => string) =>
            p.incidents
              .filter((i) => i.opened > 0)
              .map((i) => `${i.severity} ${pick(i)}`)
              .join('; ') || '—';
          return [
            p.partner,
            p.partner === 'combined'
              ? '—'
              : `${f.onTime} of ${f.periods} (${pct(f.share)})${f.target !== null ? `, target ${pct(f.target)}${f.met === false ? ' — missed' : f.met ? ' — met' : ''}` : ''}${f.excused ? `, ${f.excused} excused by maintenance` : ''}`,
            per((i) => String(i.opened)),
            per((i) => (i.level ? `${i.acknowledgedInTime} of ${i.opened} within ${i.level.acknowledge}` : 'no level')),
            per((i) => (i.level ? `${i.resolvedInTime} of ${i.opened} within ${i.level.resolve}` : 'no level')),
          ];
        }),
      empty: sl.agreed ? 'No feed period or incident this month.' : 'No service levels agreed.',
    },
    {
      title: 'Maintenance windows',
      head: ['From', 'To', 'Partners', 'Reason', 'Feeds back in time'],
      rows: sl.maintenanceWindows.map((w) => [
        w.from,
        w.to,
        w.partners.join(', '),
        w.reason,
        w.honoured === null ? 'not yet known' : w.honoured ? 'yes' : 'no',
      ]),
      empty: 'No maintenance window this month.',
    },
  ];
}

/** The review's sections as [title, header, rows]: one source for the HTML, the text and the PDF. */
export function reviewSections(r: Review): Section[] {
  return [
    {
      title: 'KPIs against their bands',
      head: ['KPI', 'Scope', 'Periods in band', 'Month', 'Previous month', 'Change', 'Largest deviations'],
      rows: r.kpis.flatMap((k) =>
        k.scopes.map((s) => [
          k.title,
          s.scope,
          `${s.inBand} of ${s.disclosed} disclosed (${pct(s.shareInBand)})`,
          num(s.month, k.unit),
          num(s.previousMonth, k.unit),
          s.change === null
            ? '—'
            : `${s.change > 0 ? '+' : ''}${num(s.change)}${s.improved === true ? ' (better)' : s.improved === false ? ' (worse)' : ''}`,
          s.deviations.map((d) => `${d.period}: ${num(d.value, k.unit)} (${num(d.distance)} outside)`).join('; ') ||
            '—',
        ]),
      ),
      empty: 'No shared KPI.',
    },
    {
      title: 'Breaches and incidents',
      head: ['KPI', 'Scope', 'Period', 'Value', 'State', 'Cause', 'Actions'],
      rows: r.breaches.map((b) => [
        b.kpi,
        b.scope,
        b.period ?? (b.kind === 'stale' ? 'feed stale' : '—'),
        num(b.value),
        b.state,
        b.cause ? `${b.cause}${b.narrative ? `: ${b.narrative}` : ''}` : '—',
        b.actions.map((a) => `${a.description} (${a.owner}, ${a.due})`).join('; ') || '—',
      ]),
      empty: 'No incident opened this month.',
    },
    {
      title: 'Goals',
      head: ['Goal', 'KPI', 'State', 'Progress', 'Next milestone'],
      rows: r.goals.map((g) => [
        g.title,
        `${g.kpiTitle} (${g.scope})`,
        goalState[g.state] ?? g.state,
        g.progress === null ? '—' : `${Math.round(g.progress * 100)} %`,
        g.nextMilestone
          ? `${g.nextMilestone.date}: ${num(g.nextMilestone.target, g.unit)} (${goalState[g.nextMilestone.state]})`
          : '—',
      ]),
      empty: 'No goal.',
    },
    ...serviceLevelSections(r),
    ...(r.actions
      ? [
          {
            title: 'Actions',
            head: ['Action', 'Owner', 'Due', 'State', 'From'],
            rows: r.actions.map((a) => [
              a.description,
              a.owner.name,
              a.due,
              a.state === 'done' ? `done ${a.doneAt?.slice(0, 10) ?? ''}` : a.overdue ? 'open, overdue' : 'open',
              a.source,
            ]),
            empty: 'No action due or done this month.',
          },
        ]
      : []),
    {
      title: 'Agreement changes',
      head: ['Version', 'In force since', 'Changes'],
      rows: r.agreementChanges.map((c) => [`v${c.version}`, c.activatedAt, c.changes.join('; ')]),
      empty: 'The agreement did not change this month.',
    },
  ];
}

export function stageLine(r: Review): string | null {
  if (!r.stage) return null;
  const criteria = r.stage.criteria.map((c) => `${c.text}: ${c.met === null ? '—' : c.met ? 'met' : 'not met'}`);
  return `Stage: ${r.stage.current}${r.stage.next ? ` (to enter ${r.stage.next}: ${criteria.join('; ') || 'no criteria'})` : ''}`;
}

export function reviewHtml(r: Review): string {
  const parts = [
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(r.partnership.title)} — review of ${r.month}</title>`,
    '<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#1b1f24}',
    'table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #d8dee4}',
    'footer{color:#57606a;font-size:.85em;margin-top:2em}</style></head><body>',
    `<h1>${escapeHtml(r.partnership.title)} — monthly review ${r.month}</h1>`,
    r.intent ? `<p>${escapeHtml(r.intent)}</p>` : '',
    stageLine(r) ? `<p>${escapeHtml(stageLine(r)!)}</p>` : '',
  ];
  for (const s of reviewSections(r))
    parts.push(
      `<h2>${escapeHtml(s.title)}</h2>`,
      s.rows.length ? table(s.head, s.rows) : `<p>${escapeHtml(s.empty)}</p>`,
    );
  parts.push(
    '<h2>What improved since last month</h2>',
    r.improvements.length
      ? `<ul>${r.improvements.map((i) => `<li>${escapeHtml(i)}</li>`).join('')}</ul>`
      : '<p>Nothing moved the better way.</p>',
    `<footer>Every figure is a disclosed value at snapshot ${r.snapshot} (agreement version ${r.agreementVersion}), ${r.from} to ${r.to}. Digest <code>${r.digest}</code>.</footer>`,
    '</body></html>',
  );
  return parts.join('');
}

export function reviewText(r: Review): string {
  const lines = [`${r.partnership.title} — monthly review ${r.month}`, ''];
  if (r.intent) lines.push(r.intent, '');
  const stage = stageLine(r);
  if (stage) lines.push(stage, '');
  for (const s of reviewSections(r)) {
    lines.push(s.title.toUpperCase());
    if (!s.rows.length) lines.push(`  ${s.empty}`);
    for (const row of s.rows) lines.push(`  - ${row.map((c, i) => `${s.head[i]}: ${c}`).join(' · ')}`);
    lines.push('');
  }
  lines.push('WHAT IMPROVED SINCE LAST MONTH');
  lines.push(...(r.improvements.length ? r.improvements.map((i) => `  - ${i}`) : ['  Nothing moved the better way.']));
  lines.push(
    '',
    `Every figure is a disclosed value at snapshot ${r.snapshot} (agreement version ${r.agreementVersion}), ${r.from} to ${r.to}.`,
    `Digest ${r.digest}`,
  );
  return lines.join('\n') + '\n';
}
