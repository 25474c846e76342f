import type { ControlDb, ControlTx, DrillRow } from '../platform/control-db.js';

export async function createDrill(tx: ControlTx, row: DrillRow): Promise<void> {
  await tx.insertInto('drills').values(row).execute();
}

export async function findDrill(db: ControlDb, id: string): Promise<DrillRow | undefined> {
  return db.selectFrom('drills').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Drills newest first; with `kpis`, only those on these KPIs (the caller's readable ones). */
export async function listDrills(db: ControlDb, limit: number, kpis?: string[]): Promise<DrillRow[]> {
  if (kpis && kpis.length === 0) return [];
  let q = db.selectFrom('drills').selectAll();
  if (kpis) q = q.where('kpi', 'in', kpis);
  return q.orderBy('started_at', 'desc').orderBy('id').limit(limit).execute();
}

export async function findRunningDrill(db: ControlDb, kpi: string, scope: string): Promise<DrillRow | undefined> {
  return db
    .selectFrom('drills')
    .selectAll()
    .where('kpi', '=', kpi)
    .where('scope', '=', scope)
    .where('ended_at', 'is', null)
    .executeTakeFirst();
}

/** Running drills nobody acknowledged whose deadline passed: each escalates once. */
export async function listDrillsDueForEscalation(db: ControlDb, now: Date): Promise<DrillRow[]> {
  return db
    .selectFrom('drills')
    .selectAll()
    .where('ended_at', 'is', null)
    .where('acknowledged_at', 'is', null)
    .where('escalated_at', 'is', null)
    .where('ack_due_at', '<=', now)
    .orderBy('ack_due_at')
    .limit(100)
    .execute();
}

/** The first notification delivered (or kept) tells the owner: the drill's notify time. */
export async function markDrillNotified(tx: ControlTx, id: string, now: Date): Promise<boolean> {
  const r = await tx
    .updateTable('drills')
    .set({ notified_at: now })
    .where('id', '=', id)
    .where('notified_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

export async function markDrillEscalated(
  tx: ControlTx,
  id: string,
  chair: string,
  now: Date,
): Promise<DrillRow | undefined> {
  return tx
    .updateTable('drills')
    .set({ escalated_at: now, escalated_to: chair })
    .where('id', '=', id)
    .where('escalated_at', 'is', null)
    .where('acknowledged_at', 'is', null)
    .where('ended_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/** Acknowledgement ends a drill: the chain was exercised to its end. */
export async function markDrillAcknowledged(
  tx: ControlTx,
  id: string,
  by: string,
  now: Date,
): Promise<DrillRow | undefined> {
  return tx
    .updateTable('drills')
    .set({ acknowledged_at: now, acknowledged_by: by, ended_at: now, ended_by: by })
    .where('id', '=', id)
    .where('ended_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

export async function markDrillEnded(tx: ControlTx, id: string, by: string, now: Date): Promise<DrillRow | undefined> {
  return tx
    .updateTable('drills')
    .set({ ended_at: now, ended_by: by })
    .where('id', '=', id)
    .where('ended_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}
