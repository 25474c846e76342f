import { stringify } from 'csv-stringify/sync';
import { countIncidentsByScope } from '../alerts/incident-repository.js';
import { countMessagesBySubject } from '../alerts/outbox-repository.js';
import { jsonColumn } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import { badRequest } from '../platform/errors.js';
import { kpiFreshness } from '../query/freshness.js';
import { isMonth, localToday, monthBounds } from '../platform/calendar.js';
import { canSee } from './access-policy.js';
import type { TransparencyReport } from './governance-schemas.js';
import { countKpiReads, listAgreementChanges } from './audit-repository.js';
import type { Principal } from './token-repository.js';

/** The metadata report, counts and times only (its shape is the response schema's). */
export type { TransparencyReport };

export function resolveMonth(month: string | undefined, room: Room): string {
  if (month === undefined)
    return localToday(room.clock.now(), room.agreement().agreement.partnership.timezone).slice(0, 7);
  if (!isMonth(month)) throw badRequest('month: expected YYYY-MM between 2000 and 2100', 'querystring.month');
  return month;
}

const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string).toISOString());

/**
 * The report for a reader: the operator and steering see every KPI's metadata; partner users
 * (admins too: a partner admin reads no need-to-know KPI it is not named on) do not see
 * need-to-know KPIs they may not read, not even their ids. Point
 * counts go to the reader's own partner only: another partner's points accepted, minus the
 * feeds a reader can see, would give a withheld count KPI or a need-to-know KPI's volume, and
 * steering members and the operator are readers like any other (docs/privacy.md §4).
 *
 * Every count is of what the reader may read. For a partner user, a partner's batches and last
 * arrival are those that carried a KPI it can see; with a KPI hidden from it, its own points
 * accepted are its visible feeds' points (its rejected points, which a batch does not attribute
 * to KPIs, are not shown); and notifications leave out those about a KPI it cannot see: an
 * incident or action on one, a goal on one or a notice of an exit criterion naming one, a comment
 * on an incident, note or goal of one; and a proposal's thread, which only admins, steering and
 * the operator read. Otherwise their counts would say that a hidden KPI breached, and when.
 */
export async function transparencyReport(
  room: Room,
  month: string,
  reader: Principal,
  /**
   * Runs the report's read of the stored batches and points in its caller's turn (read-gate.ts):
   * a scan of the month's points, which an analyst's flood on 48 connections ran 29 at a time and
   * took globex's pushes to 24 s (a red team's finding).
   */
  inTurn: <T>(read: () => Promise<T>) => Promise<T> = (read) => read(),
): Promise<TransparencyReport> {
  const agreement = room.agreement().agreement;
  // Every KPI's metadata, or (null) only that of the KPIs of the version in force the reader may
  // read: a KPI a later version removed counts as hidden (it may have been need-to-know). An
  // admin's report once held every KPI's incidents: another partner's hidden KPI breached, and when.
  const visible =
    reader.role === 'operator' || reader.role === 'steering'
      ? null
      : new Set(agreement.kpis.filter((k) => canSee(reader, k)).map((k) => k.id));
  // Proposal threads are read by admins, steering and the operator.
  const readsProposals = visible === null || reader.role === 'admin';
  const shown = (kpi: string) => visible === null || visible.has(kpi);
  const narrowed = visible !== null && visible.size < agreement.kpis.length;
  const report = await fullReport(room, month, visible, inTurn);
  const goalShown = (id: string) => {
    if (visible === null) return true;
    const g = agreement.goals.find((x) => x.id === id);
    return g !== undefined && shown(g.kpi);
  };
  const notifications = sumMessages(
    report.messages.filter(
      (m) =>
        (m.about_kpi === null || shown(m.about_kpi)) &&
        (m.about_goal === null || goalShown(m.about_goal)) &&
        (m.about_criterion === null || shown(m.about_criterion)) &&
        (!m.about_proposal || readsProposals),
    ),
  );
  // Another partner's point count per KPI is its volume — for a count KPI, its very figure.
  const own = (partner: string) => reader.partnerId !== null && partner === reader.partnerId;
  const feeds = report.feeds.filter((f) => shown(f.kpi)).map((f) => (own(f.partner) ? f : { ...f, points: null }));
  const partners = report.partners.map((p) => {
    if (!own(p.partner)) return { ...p, pointsAccepted: null, pointsRejected: null };
    if (!narrowed) return p;
    const mine = feeds.filter((f) => f.partner === p.partner);
    return { ...p, pointsAccepted: mine.reduce((t, f) => t + (f.points ?? 0), 0), pointsRejected: null };
  });
  const { messages: _, ...rest } = report;
  return {
    ...rest,
    partners,
    feeds,
    queries: report.queries.filter((q) => shown(q.kpi)),
    incidents: report.incidents.filter((i) => shown(i.kpi)),
    notifications,
  };
}

type MessageCount = Awaited<ReturnType<typeof countMessagesBySubject>>[number];

/** Notification counts per channel, recipient partner and state, over the messages a reader may count. */
function sumMessages(rows: readonly MessageCount[]): TransparencyReport['notifications'] {
  const out = new Map<string, TransparencyReport['notifications'][number]>();
  for (const r of rows) {
    const key = JSON.stringify([r.channel, r.partner_id, r.state]);
    const at = iso(r.last);
    const n = out.get(key);
    if (!n)
      out.set(key, { channel: r.channel, partner: r.partner_id, state: r.state, count: Number(r.count), lastAt: at });
    else {
      n.count += Number(r.count);
      if (at !== null && (n.lastAt === null || at > n.lastAt)) n.lastAt = at;
    }
  }
  // As PostgreSQL ordered them: nulls (the steering committee's messages) last.
  const cmp = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? 1 : b === null ? -1 : a < b ? -1 : 1);
  return [...out.values()].sort(
    (a, b) => cmp(a.channel, b.channel) || cmp(a.partner, b.partner) || cmp(a.state, b.state),
  );
}

/** The report before the reader's cut, its batches counted over the `visible` KPIs (null: all), its notifications by subject. */
async function fullReport(
  room: Room,
  month: string,
  visible: ReadonlySet<string> | null,
  inTurn: <T>(read: () => Promise<T>) => Promise<T>,
): Promise<Omit<TransparencyReport, 'notifications'> & { messages: MessageCount[] }> {
  const active = room.agreement();
  const a = active.agreement;
  const { from, to } = monthBounds(month, a.partnership.timezone);
  const db = room.control.db;

  const activity = await inTurn(() =>
    room.duck.batchActivity(from, to, room.duck.snapshots.latest, visible && [...visible]),
  );
  const partners: TransparencyReport['partners'] = a.partners.map((p) => {
    const r = activity.partners.find((x) => x.partner === p.id);
    return {
      partner: p.id,
      batches: r?.batches ?? 0,
      pointsAccepted: r?.accepted ?? 0,
      pointsRejected: r?.rejected ?? 0,
      lastArrival: iso(r?.last),
    };
  });
  const now = room.clock.now();
  const since = active.activatedAt ?? now;
  const feeds: TransparencyReport['feeds'] = a.kpis.flatMap((k) =>
    kpiFreshness(a, k, room.duck.arrivals, now, since).map((fr) => {
      // Points per feed, counted over the batches that landed in the month (their snapshots).
      const r = activity.feeds.find((x) => x.partner === fr.partner && x.kpi === k.id);
      return {
        partner: fr.partner,
        kpi: k.id,
        batches: r?.batches ?? 0,
        points: r?.points ?? 0,
        lastArrival: fr.lastArrival,
        dueBy: fr.dueBy,
        stale: fr.stale,
      };
    }),
  );

  // Reads per KPI, by the reader's partner and role: series name their KPI, overviews and breach lists list theirs.
  const queries = (await countKpiReads(db, from, to)).map((r) => ({
    kpi: r.kpi,
    partner: r.partner,
    role: r.role,
    requests: Number(r.requests),
    cellsServed: Number(r.cells ?? 0),
    cellsSuppressed: Number(r.suppressed ?? 0),
  }));

  const incidents = (await countIncidentsByScope(db, from, to)).map((r) => ({
    kpi: r.kpi,
    scope: r.scope,
    opened: Number(r.opened),
    resolved: Number(r.resolved),
  }));

  const messages = await countMessagesBySubject(db, from, to);

  const agreementChanges = (await listAgreementChanges(db, from, to)).map((c) => {
    const d = jsonColumn(c.details);
    const version = c.target?.startsWith('v') ? Number(c.target.slice(1)) : null;
    return {
      at: iso(c.at)!,
      action: c.action,
      proposal: c.target?.startsWith('prp_') ? c.target : typeof d['proposal'] === 'string' ? d['proposal'] : null,
      version,
      partner: c.partner_id,
    };
  });

  return {
    partnership: a.partnership.id,
    month,
    from: from.toISOString(),
    to: to.toISOString(),
    generatedAt: now.toISOString(),
    agreementVersion: active.version,
    partners,
    feeds,
    queries,
    incidents,
    messages,
    agreementChanges,
  };
}

/** The report as one CSV table: section, partner, kpi, role (queries), channel (notifications) or proposal/version (agreement), measure, count, time. */
export function transparencyCsv(r: TransparencyReport): string {
  const rows: (string | number | null)[][] = [
    ['section', 'partner', 'kpi', 'role_or_channel', 'measure', 'count', 'at'],
  ];
  for (const p of r.partners) {
    rows.push(
      ['partners', p.partner, null, null, 'batches', p.batches, p.lastArrival],
      ['partners', p.partner, null, null, 'points_accepted', p.pointsAccepted, null],
      ['partners', p.partner, null, null, 'points_rejected', p.pointsRejected, null],
    );
  }
  for (const f of r.feeds)
    rows.push(
      ['feeds', f.partner, f.kpi, null, 'batches', f.batches, f.lastArrival],
      ['feeds', f.partner, f.kpi, null, 'points', f.points, null],
      ['feeds', f.partner, f.kpi, null, f.stale ? 'stale_since' : 'due_by', null, f.dueBy],
    );
  for (const q of r.queries)
    rows.push(
      ['queries', q.partner, q.kpi, q.role, 'requests', q.requests, null],
      ['queries', q.partner, q.kpi, q.role, 'cells_served', q.cellsServed, null],
      ['queries', q.partner, q.kpi, q.role, 'cells_suppressed', q.cellsSuppressed, null],
    );
  for (const i of r.incidents)
    rows.push(
      ['incidents', i.scope === 'combined' ? null : i.scope, i.kpi, null, 'opened', i.opened, null],
      ['incidents', i.scope === 'combined' ? null : i.scope, i.kpi, null, 'resolved', i.resolved, null],
    );
  for (const n of r.notifications) rows.push(['notifications', n.partner, null, n.channel, n.state, n.count, n.lastAt]);
  for (const c of r.agreementChanges)
    rows.push([
      'agreement',
      c.partner,
      null,
      c.proposal ?? (c.version === null ? null : `v${c.version}`),
      c.action,
      null,
      c.at,
    ]);
  return stringify(rows);
}
