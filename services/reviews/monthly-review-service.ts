import { addPeriods, isMonth, localToday, shiftDays } from '../platform/calendar.js';
import { jsonColumn } from '../platform/control-db.js';
import { badRequest } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { evaluationContext } from '../query/kpi-summary.js';
import type { SeriesReader } from '../query/series-reader.js';
import { buildReview } from './monthly-review.js';
import { findReview, keepReview } from './review-repository.js';
import type { Review } from './review-schemas.js';

/** The first working day (Monday to Friday) of the month starting at `first` (YYYY-MM-01). */
export function firstWorkingDay(first: string): string {
  let d = first;
  while ([0, 6].includes(new Date(`${d}T00:00:00Z`).getUTCDay())) d = shiftDays(d, 1);
  return d;
}

/** How far back a review may be built. */
const MAX_MONTHS_BACK = 36;

/** A month the review may be asked for: YYYY-MM, and closed (before the partnership's current month). */
export function closedMonth(room: Room, month: string, field = 'params.month'): string {
  if (!isMonth(month)) throw badRequest('month: expected YYYY-MM between 2000 and 2100', field);
  const current = localToday(room.clock.now(), room.agreement().agreement.partnership.timezone).slice(0, 7);
  if (month >= current)
    throw badRequest(`month: ${month} is not closed yet (the review of a month is built after it ends)`, field);
  // Each first read builds and keeps a review: a reader may not make the room build decades of them.
  const oldest = addPeriods(`${current}-01`, 'month', -MAX_MONTHS_BACK).slice(0, 7);
  if (month < oldest) throw badRequest(`month: reviews go back ${MAX_MONTHS_BACK} months, to ${oldest}`, field);
  return month;
}

/**
 * Whether a month's review may be built now: from the first working day after it (its send day,
 * in the partnership's zone). Built earlier, the first reader would freeze it before the last
 * days' data and late corrections land.
 */
export function reviewDay(month: string): string {
  return firstWorkingDay(addPeriods(`${month}-01`, 'month', 1));
}

/** The month before the partnership's current one. */
export function lastClosedMonth(room: Room): string {
  const today = localToday(room.clock.now(), room.agreement().agreement.partnership.timezone);
  return addPeriods(`${today.slice(0, 7)}-01`, 'month', -1).slice(0, 7);
}

/**
 * The month's review: the kept one, or built now at the latest snapshot and kept, so every later
 * reader (and every partner) gets the same document. Judged as of the month's end: its periods
 * are the last closed ones, whatever the date it is built on. Callers run it in a stable read
 * (DuckStore.stableRead): what it keeps for good is never built across a rewrite of the points.
 */
export async function monthlyReview(room: Room, reader: SeriesReader, month: string): Promise<Review> {
  const kept = await findReview(room.control.db, month);
  if (kept) return jsonColumn<Review>(kept.document);
  const today = localToday(room.clock.now(), room.agreement().agreement.partnership.timezone);
  if (today < reviewDay(month))
    throw badRequest(
      `month: the review of ${month} is built on ${reviewDay(month)}, the first working day after the month, so that its last days' data is in`,
      'params.month',
    );
  const active = room.agreement();
  const now = room.clock.now();
  const ctx = {
    ...evaluationContext(
      reader,
      active.agreement,
      active.version,
      now,
      active.activatedAt ?? now,
      room.duck.snapshots.latest,
    ),
    today: addPeriods(`${month}-01`, 'month', 1),
  };
  const review = await buildReview(room, ctx, month);
  const row = await keepReview(room.control.db, {
    month,
    snapshot: review.snapshot,
    agreement_version: review.agreementVersion,
    digest: review.digest,
    document: JSON.stringify(review),
    created_at: now,
  });
  return jsonColumn<Review>(row.document);
}
