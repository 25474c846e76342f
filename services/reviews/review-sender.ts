import type { MailDocument } from '../alerts/alert-schemas.js';
import { enqueueMessages, steeringRecipients, type Recipient } from '../alerts/outbox.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import type { Agreement } from '../platform/agreement-schema.js';
import { addPeriods, localToday } from '../platform/calendar.js';
import { inTransaction } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import type { SeriesReader } from '../query/series-reader.js';
import { firstWorkingDay, monthlyReview } from './monthly-review-service.js';
import type { Review } from './review-schemas.js';
import { reviewHtml, reviewText } from './review-render.js';
import { claimReviewSend, findReview, markReviewSent } from './review-repository.js';
import { Problem } from '../platform/errors.js';

/** Who gets the review: each partner's contacts, and the steering committee; each address once (as its first role). */
export function reviewRecipients(a: Agreement): Recipient[] {
  const seen = new Set<string>();
  const out: Recipient[] = [];
  for (const r of [
    ...a.partners.flatMap((p) => p.contacts.map((c) => ({ partnerId: p.id as string | null, ...c }))),
    ...steeringRecipients(a),
  ]) {
    const key = r.email.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(r);
  }
  return out;
}

/**
 * Sends a month's review by e-mail through the outbox (kept for the dashboard without SMTP): the
 * kept document, rendered as HTML and text, one message per recipient. Scheduled sends go out
 * once (the review's sent_at is claimed in the same transaction); `resend` sends again.
 * Returns the review and the messages written.
 */
export async function sendReview(
  room: Room,
  reader: SeriesReader,
  month: string,
  /** `pauseMs`: a resend within this long of the last send is refused (429). */
  opts: { resend: boolean; pauseMs?: number },
): Promise<{ review: Review; messages: number }> {
  const review = await monthlyReview(room, reader, month);
  const a = room.agreement().agreement;
  const now = room.clock.now();
  const doc: MailDocument = {
    id: month,
    digest: review.digest,
    snapshot: review.snapshot,
    subject: `[Parity] Monthly review ${month} — ${review.partnership.title}`,
    text: reviewText(review),
    html: reviewHtml(review),
  };
  const messages = await inTransaction(room.control.db, async (tx) => {
    if (opts.resend) {
      const pause = opts.pauseMs ?? 0;
      if (!(await markReviewSent(tx, month, now, pause > 0 ? new Date(now.getTime() - pause) : undefined))) {
        const last = (await findReview(tx, month))?.sent_at;
        const from = new Date((last ? new Date(last).getTime() : now.getTime()) + pause);
        throw new Problem(
          429,
          'Too Many Requests',
          `the review of ${month} was sent less than ${pause / 3_600_000} h ago; it may be sent again from ${from.toISOString()}`,
          {},
          { 'retry-after': String(Math.max(1, Math.ceil((from.getTime() - now.getTime()) / 1000))) },
        );
      }
    } else if (!(await claimReviewSend(tx, month, now))) return 0;
    const recipients = reviewRecipients(a);
    await appendAuditIn(
      tx,
      {
        actor: 'reviews',
        partnerId: null,
        target: month,
        action: opts.resend ? 'review.resent' : 'review.sent',
        details: { digest: review.digest, snapshot: review.snapshot, recipients: recipients.length },
      },
      now,
    );
    return enqueueMessages(tx, room, {
      payload: { type: 'review.monthly', timestamp: now.toISOString(), data: doc },
      about: { review_month: month },
      recipients,
      now,
    });
  });
  return { review, messages };
}

/**
 * On the schedule: from the first working day of a month (in the partnership's zone) last month's
 * review goes out, once. A watcher of the alert evaluation, so inside its stable read.
 */
export async function sendDueReview(room: Room, reader: SeriesReader): Promise<number> {
  const today = localToday(room.clock.now(), room.agreement().agreement.partnership.timezone);
  const first = `${today.slice(0, 7)}-01`;
  if (today < firstWorkingDay(first)) return 0;
  const month = addPeriods(first, 'month', -1).slice(0, 7);
  if ((await findReview(room.control.db, month))?.sent_at) return 0;
  return (await sendReview(room, reader, month, { resend: false })).messages;
}
