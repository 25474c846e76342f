import type { ControlDb, NewReview, ReviewRow } from '../platform/control-db.js';

/** A month's kept review, if it was built. */
export async function findReview(db: ControlDb, month: string): Promise<ReviewRow | undefined> {
  return db.selectFrom('reviews').selectAll().where('month', '=', month).executeTakeFirst();
}

/**
 * Keeps a month's review unless one is kept already (two readers asking at once build it twice;
 * the first one kept is the month's review); returns the month's kept row.
 */
export async function keepReview(db: ControlDb, row: NewReview): Promise<ReviewRow> {
  await db
    .insertInto('reviews')
    .values(row)
    .onConflict((oc) => oc.column('month').doNothing())
    .execute();
  return db.selectFrom('reviews').selectAll().where('month', '=', row.month).executeTakeFirstOrThrow();
}

/** Every kept review without its document, newest month first. */
export async function listReviews(
  db: ControlDb,
): Promise<Pick<ReviewRow, 'month' | 'snapshot' | 'digest' | 'created_at' | 'sent_at'>[]> {
  return db
    .selectFrom('reviews')
    .select(['month', 'snapshot', 'digest', 'created_at', 'sent_at'])
    .orderBy('month', 'desc')
    .execute();
}

/**
 * Marks a month's review sent again at `at`, unless it was sent after `notAfter` (a resend's
 * pause); false then, and nothing changes.
 */
export async function markReviewSent(db: ControlDb, month: string, at: Date, notAfter?: Date): Promise<boolean> {
  let q = db.updateTable('reviews').set({ sent_at: at }).where('month', '=', month);
  if (notAfter) q = q.where((eb) => eb.or([eb('sent_at', 'is', null), eb('sent_at', '<=', notAfter)]));
  return (await q.returning('month').executeTakeFirst()) !== undefined;
}

/** Marks a month's review sent unless it was: true when this call marked it (the scheduled send goes out once). */
export async function claimReviewSend(db: ControlDb, month: string, at: Date): Promise<boolean> {
  const claimed = await db
    .updateTable('reviews')
    .set({ sent_at: at })
    .where('month', '=', month)
    .where('sent_at', 'is', null)
    .returning('month')
    .executeTakeFirst();
  return claimed !== undefined;
}
