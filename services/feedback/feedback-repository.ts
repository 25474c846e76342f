import { sql } from 'kysely';
import type { AnnotationRow, AnnotationVersionRow, CommentRow, ControlDb, ControlTx } from '../platform/control-db.js';

/** A KPI's annotations overlapping [from, to] (all of them without a range), oldest period first. */
export async function listAnnotations(
  db: ControlDb,
  f: { kpi: string; from?: string | undefined; to?: string | undefined; limit: number },
): Promise<AnnotationRow[]> {
  let q = db.selectFrom('annotations').selectAll().where('kpi', '=', f.kpi);
  if (f.from) q = q.where('period_to', '>=', f.from);
  if (f.to) q = q.where('period_from', '<=', f.to);
  return q.orderBy('period_from').orderBy('created_at').orderBy('id').limit(f.limit).execute();
}

export async function findAnnotation(db: ControlDb, id: string): Promise<AnnotationRow | undefined> {
  return db.selectFrom('annotations').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Stores a new annotation and its first version. */
export async function createAnnotation(tx: ControlTx, row: AnnotationRow): Promise<void> {
  await tx.insertInto('annotations').values(row).execute();
  await tx
    .insertInto('annotation_versions')
    .values({
      annotation_id: row.id,
      version: row.version,
      scope: row.scope,
      period_from: row.period_from,
      period_to: row.period_to,
      text: row.text,
      edited_at: row.updated_at,
    })
    .execute();
}

/**
 * Writes an edit as the next version, if the annotation is still at `version` (two edits at once:
 * the second finds it moved on); the updated row, or undefined.
 */
export async function updateAnnotation(
  tx: ControlTx,
  id: string,
  version: number,
  set: Pick<AnnotationRow, 'scope' | 'period_from' | 'period_to' | 'text' | 'updated_at'>,
): Promise<AnnotationRow | undefined> {
  const row = await tx
    .updateTable('annotations')
    .set({ ...set, version: version + 1 })
    .where('id', '=', id)
    .where('version', '=', version)
    .returningAll()
    .executeTakeFirst();
  if (row)
    await tx
      .insertInto('annotation_versions')
      .values({
        annotation_id: id,
        version: version + 1,
        scope: set.scope,
        period_from: set.period_from,
        period_to: set.period_to,
        text: set.text,
        edited_at: set.updated_at,
      })
      .execute();
  return row;
}

export async function listAnnotationVersions(db: ControlDb, id: string): Promise<AnnotationVersionRow[]> {
  return db.selectFrom('annotation_versions').selectAll().where('annotation_id', '=', id).orderBy('version').execute();
}

/** A thread's latest `limit` comments, oldest first (a flood of old ones pushes no new one out). */
export async function listComments(
  db: ControlDb,
  kind: CommentRow['target_kind'],
  id: string,
  limit: number,
): Promise<CommentRow[]> {
  const latest = await db
    .selectFrom('comments')
    .selectAll()
    .where('target_kind', '=', kind)
    .where('target_id', '=', id)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
  return latest.reverse();
}

/**
 * How many comments, notes or retrospective items one author (a partner's users together, or one
 * partnerless person) wrote since `since`: what the room's write budgets count (feedback-service.ts).
 */
export async function countWrittenSince(
  db: ControlDb,
  table: 'comments' | 'annotations' | 'retro_items',
  author: { partner: string } | { name: string },
  since: Date,
): Promise<number> {
  let q = db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('created_at', '>=', since);
  q = 'partner' in author ? q.where('author_partner', '=', author.partner) : q.where('author_name', '=', author.name);
  return Number((await q.executeTakeFirst())?.n ?? 0);
}

/**
 * How many comments of one author (as countWrittenSince counts them) since `since` mentioned each
 * of `emails` (compared without case; the map's keys are lower case).
 */
export async function countMentionsSince(
  db: ControlDb,
  author: { partner: string } | { name: string },
  emails: readonly string[],
  since: Date,
): Promise<Map<string, number>> {
  if (emails.length === 0) return new Map();
  const who = 'partner' in author ? sql`c.author_partner = ${author.partner}` : sql`c.author_name = ${author.name}`;
  const wanted = emails.map((e) => e.toLowerCase());
  const { rows } = await sql<{ email: string; n: string }>`
    SELECT lower(m.email) AS email, count(*) AS n
    FROM comments c CROSS JOIN LATERAL jsonb_array_elements_text(c.mentions) AS m(email)
    WHERE ${who} AND c.created_at >= ${since} AND lower(m.email) IN (${sql.join(wanted)})
    GROUP BY lower(m.email)`.execute(db);
  return new Map(rows.map((r) => [r.email, Number(r.n)]));
}

export async function createComment(tx: ControlTx, row: CommentRow): Promise<void> {
  await tx
    .insertInto('comments')
    .values({ ...row, mentions: JSON.stringify(row.mentions) })
    .execute();
}
