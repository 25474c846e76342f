import { sql } from 'kysely';
import type { ActionRow, ControlDb, ControlTx, IncidentRow, RetroItemRow } from '../platform/control-db.js';

/**
 * Incidents whose fact sheet lists actions the tracker does not hold yet: in steady state none, so
 * copying them in costs one query that returns nothing.
 */
export async function listIncidentsWithUntrackedActions(
  db: ControlDb,
): Promise<Pick<IncidentRow, 'id' | 'kpi' | 'fact_sheet'>[]> {
  return (
    db
      .selectFrom('incidents')
      .select(['id', 'kpi', 'fact_sheet'])
      // (PostgreSQL does not promise to test the type first in an AND: one expression does.)
      .where(
        sql<boolean>`jsonb_array_length(CASE WHEN jsonb_typeof(fact_sheet -> 'actions') = 'array' THEN fact_sheet -> 'actions' ELSE '[]'::jsonb END) > 0`,
      )
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('actions')
              .select('actions.id')
              .whereRef('actions.source', '=', sql<string>`'incident:' || incidents.id`),
          ),
        ),
      )
      .orderBy('opened_at')
      .limit(1000)
      .execute()
  );
}

export async function listRetroItems(db: ControlDb, period: string): Promise<RetroItemRow[]> {
  return db
    .selectFrom('retro_items')
    .selectAll()
    .where('period', '=', period)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

export async function createRetroItem(tx: ControlTx, row: RetroItemRow): Promise<void> {
  await tx.insertInto('retro_items').values(row).execute();
}

/** Stores an action; one already there under its id (an incident's, copied in before) is left alone. */
export async function createAction(tx: ControlTx, row: ActionRow): Promise<boolean> {
  const r = await tx
    .insertInto('actions')
    .values(row)
    .onConflict((oc) => oc.column('id').doNothing())
    .returning('id')
    .executeTakeFirst();
  return r !== undefined;
}

export async function findAction(db: ControlDb, id: string): Promise<ActionRow | undefined> {
  return db.selectFrom('actions').selectAll().where('id', '=', id).executeTakeFirst();
}

/** How many actions a partner's users recorded that are still open, or that they recorded since a time. */
export async function countActionsOf(
  db: ControlDb,
  partner: string,
  which: { open: true } | { since: Date },
): Promise<number> {
  let q = db
    .selectFrom('actions')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('created_partner', '=', partner);
  q = 'open' in which ? q.where('state', '=', 'open') : q.where('created_at', '>=', which.since);
  return Number((await q.executeTakeFirst())?.n ?? 0);
}

/** Actions by source (`retrospective:<period>`), or all of them; due first. */
export async function listActions(
  db: ControlDb,
  f: { source?: string | undefined; state?: ActionRow['state'] | undefined; limit: number },
): Promise<ActionRow[]> {
  let q = db.selectFrom('actions').selectAll();
  if (f.source) q = q.where('source', '=', f.source);
  if (f.state) q = q.where('state', '=', f.state);
  return q.orderBy('due').orderBy('id').limit(f.limit).execute();
}

export async function markActionDone(tx: ControlTx, id: string, by: string, at: Date): Promise<ActionRow | undefined> {
  return tx
    .updateTable('actions')
    .set({ state: 'done', done_at: at, done_by: by })
    .where('id', '=', id)
    .where('state', '=', 'open')
    .returningAll()
    .executeTakeFirst();
}

/** Open actions due before `today` whose owner was not told yet. */
export async function listOverdueUnnotified(db: ControlDb, today: string): Promise<ActionRow[]> {
  return db
    .selectFrom('actions')
    .selectAll()
    .where('state', '=', 'open')
    .where('due', '<', today)
    .where('notified_at', 'is', null)
    .where('owner_email', 'is not', null)
    .orderBy('due')
    .execute();
}

/** Claims an overdue action's one notice; true when this call claimed it. */
export async function claimOverdueNotice(tx: ControlTx, id: string, at: Date): Promise<boolean> {
  const r = await tx
    .updateTable('actions')
    .set({ notified_at: at })
    .where('id', '=', id)
    .where('notified_at', 'is', null)
    .returning('id')
    .executeTakeFirst();
  return r !== undefined;
}
