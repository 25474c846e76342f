// The partnership's calendar: local days as YYYY-MM-DD strings, weeks starting on Monday (ISO),
// months on the 1st. One module for every service and the dashboard (no Node APIs here).

/** The grains an agreement can name. */
export type Grain = 'day' | 'week' | 'month';

const DAY_MS = 86_400_000;

/** A calendar month YYYY-MM between 2000 and 2100 (the range every date parameter accepts). */
export function isMonth(s: string): boolean {
  return /^\d{4}-(0[1-9]|1[0-2])$/.test(s) && s >= '2000-01' && s <= '2100-12';
}

/** One formatter per zone: making one costs far more than formatting (it ran on every read). */
const dayFormats = new Map<string, Intl.DateTimeFormat>();

/** The last answer per zone, for the second it was asked in: a busy dashboard asks thousands of times a second. */
const todays = new Map<string, { second: number; day: string }>();

/** Today's date in the partnership's zone. */
export function localToday(now: Date, timezone: string): string {
  const second = Math.floor(now.getTime() / 1000);
  const last = todays.get(timezone);
  if (last?.second === second) return last.day;
  let f = dayFormats.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dayFormats.set(timezone, f);
  }
  const day = f.format(now);
  todays.set(timezone, { second, day });
  return day;
}

/** The day `days` after (or before, negative) `date`. */
export function shiftDays(date: string, days: number): string {
  return new Date(Date.parse(date) + days * DAY_MS).toISOString().slice(0, 10);
}

/** First local day of the period holding `date`. */
export function periodStart(date: string, grain: Grain): string {
  if (grain === 'day') return date;
  if (grain === 'month') return `${date.slice(0, 8)}01`;
  const dow = (new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7; // Monday = 0
  return shiftDays(date, -dow);
}

/** The start of the period `k` periods after (or before, negative) the one starting at `start`. */
export function addPeriods(start: string, grain: Grain, k: number): string {
  if (grain === 'day') return shiftDays(start, k);
  if (grain === 'week') return shiftDays(start, 7 * k);
  const d = new Date(`${start}T00:00:00Z`);
  d.setUTCMonth(d.getUTCMonth() + k);
  return d.toISOString().slice(0, 10);
}

/** The last day of the period starting at `start`. */
export function periodEnd(start: string, grain: Grain): string {
  return shiftDays(addPeriods(start, grain, 1), -1);
}

/** Whole days from `from` to `to` (both YYYY-MM-DD). */
export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(to) - Date.parse(from)) / DAY_MS);
}

/** Sorted, disjoint spans of local days, [first, last] inclusive: the days a change touched. */
export type DaySpans = readonly (readonly [string, string])[];

/**
 * Spans covering the given spans (or single days), sorted, with overlapping and adjacent ones
 * merged: 2026-01-01…02 and 2026-01-03 become one span.
 */
export function mergeDaySpans(spans: Iterable<readonly [string, string]>): [string, string][] {
  const sorted = [...spans].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [string, string][] = [];
  for (const [lo, hi] of sorted) {
    const last = out.at(-1);
    if (last && lo <= shiftDays(last[1], 1)) {
      if (hi > last[1]) last[1] = hi;
    } else out.push([lo, hi]);
  }
  return out;
}

const clockFormats = new Map<string, Intl.DateTimeFormat>();

/** The instant a local day starts in a zone (the offset found by asking the zone itself). */
export function localMidnight(day: string, timezone: string): Date {
  const guess = new Date(`${day}T00:00:00Z`);
  let f = clockFormats.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
    });
    clockFormats.set(timezone, f);
  }
  const parts = f.formatToParts(guess);
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  const asIfUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'));
  return new Date(guess.getTime() - (asIfUtc - guess.getTime()));
}

/** [from, to) of a calendar month (YYYY-MM) in a zone, as instants. */
export function monthBounds(month: string, timezone: string): { from: Date; to: Date } {
  const first = `${month}-01`;
  return { from: localMidnight(first, timezone), to: localMidnight(addPeriods(first, 'month', 1), timezone) };
}
