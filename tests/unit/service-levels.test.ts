// Service-level attainment (issue #14) on crafted arrival and incident times: the paused clock of
// maintenance windows, feed periods on time / late / excused, acknowledgement and resolution per
// severity, and whether a window was honoured.
import { describe, expect, it } from 'vitest';
import { feedPeriods, serviceLevelAttainment } from '../../services/alerts/service-levels.js';
import { parseAgreementText, type Agreement } from '../../services/platform/agreement-schema.js';
import type { IncidentRow } from '../../services/platform/control-db.js';
import { monthBounds } from '../../services/platform/calendar.js';
import { dueAfter, maintenanceWindows, type Window } from '../../services/platform/maintenance.js';

const H = 3_600_000;
const D = 24 * H;
const at = (iso: string) => new Date(iso);
const ms = (iso: string) => Date.parse(iso);
const win = (from: string, to: string): Window => ({ from: at(from), to: at(to), partners: null, reason: 'test' });

const doc = `
partnership: { id: sl, title: SL, timezone: UTC }
partners: [{ id: pa, name: A }, { id: pb, name: B }]
steering: [{ name: Chair, email: chair@example.org }]
kpis:
  - id: daily
    title: Daily
    unit: h
    subject: order
    measure: avg
    grains: [day]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 10 }
    evaluate: { grain: day }
    freshness: { every: P1D, grace: PT6H }
    owners: { pa: { name: O, email: o@pa.example } }
    escalation: { ackWithin: P1D }
    severity: critical
  - id: weekly
    title: Weekly
    unit: score
    subject: team
    measure: avg
    grains: [week]
    disclosure: partnership
    breakdown: combined
    band: { lower: 1 }
    evaluate: { grain: week }
    freshness: { every: P7D, grace: P2D }
    owners: { pa: { name: O, email: o@pa.example } }
    escalation: { ackWithin: P3D }
    severity: minor
twoPartyConsent: true
serviceLevels:
  incidents:
    critical: { acknowledge: PT4H, resolve: P1D }
  feedsOnTime: 0.9
  maintenanceWindows:
    - { partners: [pb], from: 2026-10-10T00:00:00Z, to: 2026-10-11T00:00:00Z, reason: pb upgrade }
    - { from: 2026-10-20T00:00:00Z, to: 2026-10-20T12:00:00Z, reason: joint cut-over }
    - { partners: [pa], from: 2026-10-25T00:00:00Z, to: 2026-10-25T06:00:00Z, reason: pa move }
`;
function parseAgreement(text: string): Agreement {
  const r = parseAgreementText(text);
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.agreement;
}
const agreement = parseAgreement(doc);
const daily = agreement.kpis[0]!;

/** A partner's nightly deliveries at `hour` UTC from Sep 30 to Nov 1, except `skip`ped days; `moved` days arrive at another time. */
function nightly(hour: number, skip: string[] = [], moved: Record<string, string> = {}): number[] {
  const out: number[] = [];
  for (let d = ms('2026-09-30T00:00:00Z'); d <= ms('2026-11-01T00:00:00Z'); d += D) {
    const day = new Date(d).toISOString().slice(0, 10);
    if (skip.includes(day)) continue;
    out.push(moved[day] ? ms(moved[day]!) : d + hour * H);
  }
  return out.sort((a, b) => a - b);
}

const incident = (
  scope: string,
  kpi: string,
  opened: string,
  acknowledged: string | null,
  resolved: string | null,
): IncidentRow =>
  ({
    id: `${scope}-${opened}`,
    kpi,
    scope,
    opened_at: at(opened),
    acknowledged_at: acknowledged ? at(acknowledged) : null,
    resolved_at: resolved ? at(resolved) : null,
  }) as unknown as IncidentRow;

describe('maintenance windows stop the clock', () => {
  const windows = [
    win('2026-10-10T00:00:00Z', '2026-10-11T00:00:00Z'),
    win('2026-10-11T06:00:00Z', '2026-10-11T08:00:00Z'),
  ];
  it('a deadline before any window is unchanged', () => {
    expect(dueAfter(windows, at('2026-10-08T00:00:00Z'), 30 * H).toISOString()).toBe('2026-10-09T06:00:00.000Z');
  });
  it('time inside windows does not count, across two windows', () => {
    // 30 h from Oct 9 03:00: 21 h until the first window, then (after it) 6 h until the second, then 3 h after it.
    expect(dueAfter(windows, at('2026-10-09T03:00:00Z'), 30 * H).toISOString()).toBe('2026-10-11T11:00:00.000Z');
  });
  it('a clock started inside a window starts at its end', () => {
    expect(dueAfter(windows, at('2026-10-10T12:00:00Z'), 2 * H).toISOString()).toBe('2026-10-11T02:00:00.000Z');
  });
  it('a window names its partners; a combined figure is held up by every window', () => {
    expect(maintenanceWindows(agreement, 'pa').map((w) => w.reason)).toEqual(['joint cut-over', 'pa move']);
    expect(maintenanceWindows(agreement, 'pb').map((w) => w.reason)).toEqual(['pb upgrade', 'joint cut-over']);
    expect(maintenanceWindows(agreement, null)).toHaveLength(3);
  });
});

describe('feed periods', () => {
  const oct = [ms('2026-10-01T00:00:00Z'), ms('2026-11-01T00:00:00Z')] as const;
  const since = ms('2026-09-01T00:00:00Z');
  it('a feed delivered every night is on time in every period', () => {
    const f = feedPeriods({ partner: 'pa', kpi: daily, arrivals: nightly(2) }, [], since, ...oct);
    expect(f).toEqual({ periods: 31, onTime: 31, excused: 0 });
  });
  it('a missed night makes the two days the feed was stale in late', () => {
    // Oct 4 03:00, then Oct 6 03:00: stale from Oct 5 09:00 to Oct 6 03:00.
    const f = feedPeriods({ partner: 'pb', kpi: daily, arrivals: nightly(3, ['2026-10-05']) }, [], since, ...oct);
    expect(f).toEqual({ periods: 31, onTime: 29, excused: 0 });
  });
  it('a day inside a window is excused, and the night after it is not late', () => {
    const windows = maintenanceWindows(agreement, 'pb');
    const f = feedPeriods({ partner: 'pb', kpi: daily, arrivals: nightly(3, ['2026-10-10']) }, windows, since, ...oct);
    expect(f).toEqual({ periods: 30, onTime: 30, excused: 1 });
  });
  it('daily periods run from local midnight to local midnight: October in Berlin has 31, its last day 25 hours', () => {
    const { from, to } = monthBounds('2026-10', 'Europe/Berlin');
    const f = feedPeriods(
      { partner: 'pa', kpi: daily, arrivals: nightly(2) },
      [],
      since,
      from.getTime(),
      to.getTime(),
      'Europe/Berlin',
    );
    expect(f).toEqual({ periods: 31, onTime: 31, excused: 0 });
  });
  it('a feed counts from its first delivery when the agreement started earlier, and from the agreement otherwise', () => {
    const late = nightly(2).filter((a) => a >= ms('2026-10-16T00:00:00Z'));
    expect(feedPeriods({ partner: 'pa', kpi: daily, arrivals: late }, [], ms('2026-10-15T00:00:00Z'), ...oct)).toEqual({
      periods: 17,
      onTime: 17,
      excused: 0,
    });
    // The agreement began on Oct 1: nothing came until Oct 16 02:00, stale from Oct 2 06:00, so Oct 2 to 16 are late.
    expect(feedPeriods({ partner: 'pa', kpi: daily, arrivals: late }, [], oct[0], ...oct)).toEqual({
      periods: 31,
      onTime: 16,
      excused: 0,
    });
  });
});

describe('serviceLevelAttainment', () => {
  const base = {
    agreement,
    kpis: agreement.kpis,
    start: at('2026-10-01T00:00:00Z'),
    end: at('2026-11-01T00:00:00Z'),
    now: at('2026-11-03T12:00:00Z'),
    since: at('2026-09-01T00:00:00Z'),
  };
  const arrivals = [
    ...nightly(2, ['2026-10-24', '2026-10-25']).map((t) => ({ partner: 'pa', kpi: 'daily', at: new Date(t) })),
    ...nightly(3, ['2026-10-05', '2026-10-10']).map((t) => ({ partner: 'pb', kpi: 'daily', at: new Date(t) })),
    ...['09-24', '10-01', '10-08', '10-15', '10-22', '10-29'].map((d) => ({
      partner: 'pa',
      kpi: 'weekly',
      at: at(`2026-${d}T09:00:00Z`),
    })),
    ...['09-25', '10-02', '10-09', '10-16', '10-23', '10-30'].map((d) => ({
      partner: 'pb',
      kpi: 'weekly',
      at: at(`2026-${d}T09:00:00Z`),
    })),
  ];

  it('feeds: periods on time per partner against feedsOnTime, windows excused, per KPI', () => {
    const r = serviceLevelAttainment({ ...base, arrivals, incidents: [] });
    const pa = r.partners.find((p) => p.partner === 'pa')!;
    const pb = r.partners.find((p) => p.partner === 'pb')!;
    // pa: nothing from Oct 23 02:00 to Oct 26 02:00; due Oct 24 08:00 (no window before it): Oct 24, 25, 26 late.
    expect(pa.feeds.byKpi).toEqual([
      { kpi: 'daily', periods: 31, onTime: 28, excused: 0 },
      { kpi: 'weekly', periods: 5, onTime: 5, excused: 0 },
    ]);
    expect([pa.feeds.periods, pa.feeds.onTime, pa.feeds.met]).toEqual([36, 33, true]);
    // pb: Oct 5 and 6 late; Oct 10 inside its window.
    expect(pb.feeds.byKpi[0]).toEqual({ kpi: 'daily', periods: 30, onTime: 28, excused: 1 });
    expect(pb.feeds.share).toBeCloseTo(33 / 35, 10);
    expect(pb.feeds.target).toBe(0.9);
    expect(r.partners.find((p) => p.partner === 'combined')!.feeds.periods).toBe(0);
  });

  it('windows: honoured when the feeds came back within their allowance, not when they did not', () => {
    const r = serviceLevelAttainment({ ...base, arrivals, incidents: [] });
    expect(r.maintenanceWindows.map((w) => [w.reason, w.partners, w.honoured])).toEqual([
      ['pb upgrade', ['pb'], true],
      ['joint cut-over', ['pa', 'pb'], true],
      // pa's window ended Oct 25 06:00; its daily feed came back Oct 26 02:00, within 30 h; but
      // its weekly feed too (Oct 29 09:00, within 9 days): honoured.
      ['pa move', ['pa'], true],
    ]);
    const gone = arrivals.filter(
      (a) => !(a.partner === 'pa' && a.kpi === 'daily' && a.at >= at('2026-10-24T00:00:00Z')),
    );
    const r2 = serviceLevelAttainment({ ...base, arrivals: gone, incidents: [] });
    expect(r2.maintenanceWindows[2]!.honoured).toBe(false);
    const early = serviceLevelAttainment({ ...base, now: at('2026-10-25T08:00:00Z'), arrivals: gone, incidents: [] });
    expect(early.maintenanceWindows[2]!.honoured).toBeNull();
  });

  it('incidents: acknowledged and resolved within the level of their severity; a window stops the clock', () => {
    const incidents = [
      // In time: acknowledged after 3 h, resolved after 20 h.
      incident('pa', 'daily', '2026-10-03T08:00:00Z', '2026-10-03T11:00:00Z', '2026-10-04T04:00:00Z'),
      // Late both ways.
      incident('pa', 'daily', '2026-10-06T08:00:00Z', '2026-10-06T13:00:00Z', '2026-10-08T08:00:00Z'),
      // Resolved (the feed came back) before anyone acknowledged it: nothing to acknowledge.
      incident('pa', 'daily', '2026-10-12T08:00:00Z', null, '2026-10-12T10:00:00Z'),
      // Opened just before pb's window: 4 h counted as 1 h before it and 3 h after it; acknowledged Oct 11 02:30.
      incident('pb', 'daily', '2026-10-09T23:00:00Z', '2026-10-11T02:30:00Z', null),
      // Combined, still open, past its levels at `now`.
      incident('combined', 'daily', '2026-10-28T08:00:00Z', null, null),
      // A minor incident: no level agreed for minor.
      incident('pa', 'weekly', '2026-10-15T08:00:00Z', null, null),
    ];
    const r = serviceLevelAttainment({ ...base, arrivals, incidents });
    const sev = (p: string, s: string) =>
      r.partners.find((x) => x.partner === p)!.incidents.find((i) => i.severity === s)!;
    expect(sev('pa', 'critical')).toMatchObject({
      level: { acknowledge: 'PT4H', resolve: 'P1D' },
      opened: 3,
      acknowledgedInTime: 2,
      acknowledgedLate: 1,
      resolvedInTime: 2,
      resolvedLate: 1,
    });
    expect(sev('pa', 'critical').acknowledgeShare).toBeCloseTo(2 / 3, 10);
    // pb's is unresolved and its day (plus the window's 24 h) has passed by `now`: late.
    expect(sev('pb', 'critical')).toMatchObject({ opened: 1, acknowledgedInTime: 1, resolvedLate: 1 });
    expect(sev('combined', 'critical')).toMatchObject({ opened: 1, acknowledgedLate: 1, resolvedLate: 1 });
    expect(sev('pa', 'minor')).toMatchObject({ level: null, opened: 1, acknowledgeShare: null, resolveShare: null });
    // Not yet due is neither in time nor late.
    const soon = serviceLevelAttainment({ ...base, now: at('2026-10-28T09:00:00Z'), arrivals, incidents });
    expect(soon.partners.find((x) => x.partner === 'combined')!.incidents[0]).toMatchObject({
      opened: 1,
      acknowledgedInTime: 0,
      acknowledgedLate: 0,
      acknowledgeShare: null,
    });
  });

  it('without service levels: nothing agreed, feed shares still measured, no target', () => {
    const plain = parseAgreement(doc.slice(0, doc.indexOf('serviceLevels:')));
    const r = serviceLevelAttainment({ ...base, agreement: plain, kpis: plain.kpis, arrivals, incidents: [] });
    expect(r.agreed).toBe(false);
    expect(r.maintenanceWindows).toEqual([]);
    const pb = r.partners.find((p) => p.partner === 'pb')!;
    expect([pb.feeds.target, pb.feeds.met]).toEqual([null, null]);
    // Without its window pb's Oct 10 is a missed night too: Oct 5, 6, 10 and 11 late.
    expect(pb.feeds.byKpi[0]).toEqual({ kpi: 'daily', periods: 31, onTime: 27, excused: 0 });
  });
});
