import { sql } from 'kysely';
import type { ControlDb, IncidentRow, IncidentUpdate, NewIncident } from '../platform/control-db.js';

/** Which incidents a listing asks for; `kpis` are the ones the reader may see (never empty). */
export interface IncidentQuery {
  kpis: string[];
  state?: IncidentRow['state'] | 'active' | undefined;
  kpi?: string | undefined;
  scope?: string | undefined;
  kind?: IncidentRow['kind'] | undefined;
  /** Opened at or after. */
  openedFrom?: Date | undefined;
  /** Opened before. */
  openedBefore?: Date | undefined;
  limit: number;
}

/** Incidents newest first; state 'active' is every one not resolved. */
export async function listIncidentRows(db: ControlDb, f: IncidentQuery): Promise<IncidentRow[]> {
  let q = db.selectFrom('incidents').selectAll().where('kpi', 'in', f.kpis);
  if (f.state === 'active') q = q.where('state', '<>', 'resolved');
  else if (f.state) q = q.where('state', '=', f.state);
  if (f.kpi) q = q.where('kpi', '=', f.kpi);
  if (f.scope) q = q.where('scope', '=', f.scope);
  if (f.kind) q = q.where('kind', '=', f.kind);
  if (f.openedFrom) q = q.where('opened_at', '>=', f.openedFrom);
  if (f.openedBefore) q = q.where('opened_at', '<', f.openedBefore);
  return q.orderBy('opened_at', 'desc').orderBy('id').limit(f.limit).execute();
}

export async function findIncidentById(db: ControlDb, id: string): Promise<IncidentRow | undefined> {
  return db.selectFrom('incidents').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A KPI's incidents not resolved yet (at most one per scope and kind). */
export async function listUnresolvedIncidents(db: ControlDb, kpi: string): Promise<IncidentRow[]> {
  return db.selectFrom('incidents').selectAll().where('kpi', '=', kpi).where('state', '<>', 'resolved').execute();
}

/** What a KPI's owners closed themselves: a resolution covers its period (and a stale feed until it next sends). */
export async function listOwnerResolutions(
  db: ControlDb,
  kpi: string,
): Promise<Pick<IncidentRow, 'scope' | 'kind' | 'period' | 'resolved_at'>[]> {
  return db
    .selectFrom('incidents')
    .select(['scope', 'kind', 'period', 'resolved_at'])
    .where('kpi', '=', kpi)
    .where('state', '=', 'resolved')
    .where('resolution', '=', 'owner')
    .execute();
}

/** Open or notified incidents whose acknowledgement was due by `now` and that were not escalated yet. */
export async function listIncidentsDueForEscalation(db: ControlDb, now: Date): Promise<IncidentRow[]> {
  return db
    .selectFrom('incidents')
    .selectAll()
    .where('state', 'in', ['open', 'notified'])
    .where('escalated_at', 'is', null)
    .where('ack_due_at', '<=', now)
    .execute();
}

/** Stores a new incident; the one-open-per-key index refuses a second open one (23505). */
export async function createIncident(db: ControlDb, row: NewIncident): Promise<IncidentRow> {
  return db.insertInto('incidents').values(row).returningAll().executeTakeFirstOrThrow();
}

/** Changes an incident that is in one of `states`; the changed row, or undefined if it was not. */
export async function updateIncidentInStates(
  db: ControlDb,
  id: string,
  states: IncidentRow['state'][],
  set: IncidentUpdate,
): Promise<IncidentRow | undefined> {
  return db
    .updateTable('incidents')
    .set(set)
    .where('id', '=', id)
    .where('state', 'in', states)
    .returningAll()
    .executeTakeFirst();
}

/** Changes an incident unless it is resolved (an owner may have resolved it since it was read). */
export async function updateUnresolvedIncident(
  db: ControlDb,
  id: string,
  set: IncidentUpdate,
): Promise<IncidentRow | undefined> {
  return db
    .updateTable('incidents')
    .set(set)
    .where('id', '=', id)
    .where('state', '<>', 'resolved')
    .returningAll()
    .executeTakeFirst();
}

/** Marks an open or notified incident escalated, once; the row, or undefined if another run did or it moved on. */
export async function markIncidentEscalated(db: ControlDb, id: string, now: Date): Promise<IncidentRow | undefined> {
  return db
    .updateTable('incidents')
    .set({ escalated_at: now, updated_at: now })
    .where('id', '=', id)
    .where('escalated_at', 'is', null)
    .where('state', 'in', ['open', 'notified'])
    .returningAll()
    .executeTakeFirst();
}

/** An open incident becomes notified; whether it was open. */
export async function markIncidentNotified(
  db: ControlDb,
  id: string,
  set: { notified_at: Date; updated_at?: Date },
): Promise<boolean> {
  const r = await db
    .updateTable('incidents')
    .set({ state: 'notified', ...set })
    .where('id', '=', id)
    .where('state', '=', 'open')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Incidents per KPI and scope opened, and resolved, in [from, to) (counts as the driver hands them over). */
export async function countIncidentsByScope(
  db: ControlDb,
  from: Date,
  to: Date,
): Promise<{ kpi: string; scope: string; opened: string; resolved: string }[]> {
  const r = await sql<{ kpi: string; scope: string; opened: string; resolved: string }>`
    SELECT kpi, scope, count(*) FILTER (WHERE opened_at >= ${from} AND opened_at < ${to}) AS opened,
           count(*) FILTER (WHERE resolved_at >= ${from} AND resolved_at < ${to}) AS resolved
    FROM incidents WHERE (opened_at >= ${from} AND opened_at < ${to}) OR (resolved_at >= ${from} AND resolved_at < ${to})
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return r.rows;
}
