import {
  allowanceMs,
  durationMs,
  severities,
  type Agreement,
  type Kpi,
  type Severity,
} from '../platform/agreement-schema.js';
import type { IncidentRow } from '../platform/control-db.js';
import { localMidnight, localToday, shiftDays } from '../platform/calendar.js';
import { dueAfter, maintenanceWindows, type Window } from '../platform/maintenance.js';
import type { ServiceLevelAttainment } from './alert-schemas.js';

export type { ServiceLevelAttainment };

const DAY = 86_400_000;
/**
 * How far before the month the arrivals are read: the feed's state when the month began needs the
 * last arrival before it, up to the longest allowance (every + grace) of the KPIs, and a margin.
 */
export function arrivalsLookbackMs(kpis: readonly Kpi[]): number {
  return Math.max(62 * DAY, ...kpis.map((k) => allowanceMs(k) + 31 * DAY));
}

/** The shortest feed period judged: a cadence below an hour is judged hour by hour (a month has at most 744). */
const MIN_SLOT_MS = 3_600_000;
/** How far after the month: whether the feeds were back after a window that ended near its end. */
export const ARRIVALS_LOOKAHEAD_MS = 10 * DAY;

interface Span {
  from: number;
  to: number;
}

/** [from, to) minus the windows. */
function minusWindows(s: Span, windows: readonly Window[]): Span[] {
  let parts: Span[] = [s];
  for (const w of windows) {
    const wf = w.from.getTime();
    const wt = w.to.getTime();
    parts = parts.flatMap((p) =>
      wt <= p.from || wf >= p.to
        ? [p]
        : [...(wf > p.from ? [{ from: p.from, to: wf }] : []), ...(wt < p.to ? [{ from: wt, to: p.to }] : [])],
    );
  }
  return parts;
}

/**
 * When one feed was stale between `start` and `end`: after each arrival, from the moment the next
 * was due (every + grace, time in a maintenance window not counted) until it came; never inside a
 * window. The same rule as the freshness breach (services/query/freshness.ts).
 */
export function staleSpans(
  arrivals: readonly number[],
  allowance: number,
  windows: readonly Window[],
  since: number,
  start: number,
  end: number,
): Span[] {
  const out: Span[] = [];
  let prev = since;
  for (const a of [...arrivals, end]) {
    const due = dueAfter(windows, new Date(prev), allowance).getTime();
    const gap = { from: Math.max(due, start), to: Math.min(a, end) };
    if (gap.to > gap.from) out.push(...minusWindows(gap, windows));
    prev = Math.max(prev, a);
  }
  return out;
}

export interface FeedInput {
  partner: string;
  kpi: Kpi;
  /** Arrival times of this feed, oldest first, from arrivalsLookbackMs before the month on. */
  arrivals: readonly number[];
}

/**
 * The feed periods in [from, end): `every` long, those of whole days from local midnight to local
 * midnight in the partnership's zone (a day of a daylight-saving change is still one day).
 */
function feedSlots(from: number, end: number, every: number, timezone: string): Span[] {
  const bounds = [from];
  every = Math.max(every, MIN_SLOT_MS);
  if (every % DAY === 0) {
    const first = localToday(new Date(from), timezone);
    for (let k = 1; ; k++) {
      const b = localMidnight(shiftDays(first, (k * every) / DAY), timezone).getTime();
      if (b >= end) break;
      if (b > from) bounds.push(b);
    }
  } else for (let b = from + every; b < end; b += every) bounds.push(b);
  bounds.push(end);
  return bounds
    .slice(0, -1)
    .map((b, i) => ({ from: b, to: bounds[i + 1]! }))
    .filter((s) => s.to > s.from);
}

/** One feed's periods in [start, end): on time (never stale), late, or excused (inside a window). */
export function feedPeriods(
  f: FeedInput,
  windows: readonly Window[],
  since: number,
  start: number,
  end: number,
  timezone = 'UTC',
): { periods: number; onTime: number; excused: number } {
  const every = durationMs(f.kpi.freshness.every);
  const allowance = allowanceMs(f.kpi);
  // A feed counts from when it was due to start: the agreement's start, or its first batch if earlier.
  const from = Math.max(start, Math.min(since, f.arrivals[0] ?? since));
  const stale = staleSpans(
    f.arrivals.filter((a) => a < end),
    allowance,
    windows,
    Math.min(since, f.arrivals[0] ?? since),
    from,
    end,
  );
  let periods = 0;
  let onTime = 0;
  let excused = 0;
  for (const slot of feedSlots(from, end, every, timezone)) {
    if (minusWindows(slot, windows).length === 0) {
      excused++;
      continue;
    }
    periods++;
    if (!stale.some((x) => x.from < slot.to && x.to > slot.from)) onTime++;
  }
  return { periods, onTime, excused };
}

type Level = { acknowledge: string; resolve: string } | undefined;

/** Whether one incident met its level: in time, late, or not due yet (undefined: no level agreed). */
function judgeIncident(
  row: Pick<IncidentRow, 'opened_at' | 'acknowledged_at' | 'resolved_at'>,
  level: NonNullable<Level>,
  windows: readonly Window[],
  now: number,
): { acknowledge: 'met' | 'missed' | 'pending'; resolve: 'met' | 'missed' | 'pending' } {
  const opened = new Date(row.opened_at as unknown as string);
  const t = (v: unknown) => (v ? new Date(v as string).getTime() : null);
  const acked = t(row.acknowledged_at);
  const resolved = t(row.resolved_at);
  const judge = (within: string, done: number | null) => {
    const due = dueAfter(windows, opened, durationMs(within)).getTime();
    if (done !== null) return done <= due ? 'met' : 'missed';
    return now > due ? 'missed' : 'pending';
  };
  // An incident resolved before anyone acknowledged it (the feed resumed, the KPI came back) needed no acknowledgement.
  return { acknowledge: judge(level.acknowledge, acked ?? resolved), resolve: judge(level.resolve, resolved) };
}

const share = (n: number, of: number) => (of ? Number((n / of).toPrecision(12)) : null);

/**
 * The month's service-level attainment of the partnership, per partner: the share of its feed
 * periods delivered on time against `feedsOnTime`, its incidents' acknowledgement and resolution
 * against the levels of their KPI's severity (time in maintenance windows not counted, as for
 * escalation), and the maintenance windows of the month with whether the feeds came back in time
 * after each. Incidents of a combined figure count under `combined`. Metadata only: arrival
 * times and incident times, never a value.
 */
export function serviceLevelAttainment(input: {
  agreement: Agreement;
  kpis: readonly Kpi[];
  start: Date;
  end: Date;
  now: Date;
  since: Date;
  arrivals: readonly { partner: string; kpi: string; at: Date }[];
  incidents: readonly IncidentRow[];
}): ServiceLevelAttainment {
  const { agreement: a, kpis } = input;
  const sl = a.serviceLevels;
  const start = input.start.getTime();
  const end = Math.min(input.end.getTime(), input.now.getTime());
  const now = input.now.getTime();
  const since = input.since.getTime();
  const byFeed = new Map<string, number[]>();
  for (const r of input.arrivals) {
    const k = `${r.partner}\u0000${r.kpi}`;
    const list = byFeed.get(k) ?? [];
    list.push(r.at.getTime());
    byFeed.set(k, list);
  }
  const feedOf = (partner: string, kpi: Kpi): FeedInput => ({
    partner,
    kpi,
    arrivals: (byFeed.get(`${partner}\u0000${kpi.id}`) ?? []).sort((x, y) => x - y),
  });
  const severityOf = new Map(kpis.map((k) => [k.id, k.severity]));
  const scopes = [...a.partners.map((p) => p.id), 'combined'];
  const partners = scopes.map((scope) => {
    const partner = scope === 'combined' ? null : scope;
    const windows = maintenanceWindows(a, partner);
    const feeds =
      partner === null
        ? []
        : kpis.map((k) => ({
            kpi: k.id,
            ...feedPeriods(feedOf(partner, k), windows, since, start, end, a.partnership.timezone),
          }));
    const periods = feeds.reduce((n, f) => n + f.periods, 0);
    const onTime = feeds.reduce((n, f) => n + f.onTime, 0);
    const incidents = severities.map((severity: Severity) => {
      const level: Level = sl?.incidents[severity];
      const rows = input.incidents.filter((r) => r.scope === scope && severityOf.get(r.kpi) === severity);
      const judged = level ? rows.map((r) => judgeIncident(r, level, windows, now)) : [];
      const count = (what: 'acknowledge' | 'resolve', s: 'met' | 'missed') =>
        judged.filter((j) => j[what] === s).length;
      const ackMet = count('acknowledge', 'met');
      const ackMissed = count('acknowledge', 'missed');
      const resMet = count('resolve', 'met');
      const resMissed = count('resolve', 'missed');
      return {
        severity,
        level: level ?? null,
        opened: rows.length,
        acknowledgedInTime: ackMet,
        acknowledgedLate: ackMissed,
        resolvedInTime: resMet,
        resolvedLate: resMissed,
        acknowledgeShare: level ? share(ackMet, ackMet + ackMissed) : null,
        resolveShare: level ? share(resMet, resMet + resMissed) : null,
      };
    });
    const feedShare = share(onTime, periods);
    return {
      partner: scope,
      feeds: {
        periods,
        onTime,
        excused: feeds.reduce((n, f) => n + f.excused, 0),
        share: feedShare,
        target: sl?.feedsOnTime ?? null,
        met: sl?.feedsOnTime === undefined || feedShare === null ? null : feedShare >= sl.feedsOnTime,
        byKpi: feeds,
      },
      incidents: incidents.filter((i) => i.opened > 0 || i.level !== null),
    };
  });
  const horizon = Math.min(now, input.end.getTime() + ARRIVALS_LOOKAHEAD_MS);
  const windows = maintenanceWindows(a, null)
    .filter((w) => w.from.getTime() < input.end.getTime() && w.to.getTime() > start)
    .map((w) => {
      const covered = w.partners ?? a.partners.map((p) => p.id);
      // Honoured: each covered partner's feeds were back within their allowance after the window.
      let honoured: boolean | null = true;
      for (const p of covered)
        for (const k of kpis) {
          // Back within the allowance after it, a later window of the partner not counted.
          const back = dueAfter(maintenanceWindows(a, p), w.to, allowanceMs(k)).getTime();
          const came = feedOf(p, k).arrivals.some((t) => t >= w.from.getTime() && t <= back);
          if (came) continue;
          if (back > horizon) honoured = honoured === false ? false : null;
          else honoured = false;
        }
      return {
        from: w.from.toISOString(),
        to: w.to.toISOString(),
        partners: [...covered],
        reason: w.reason,
        honoured,
      };
    });
  return { agreed: sl !== undefined, partners, maintenanceWindows: windows };
}
