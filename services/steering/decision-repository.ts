import { sql } from 'kysely';
import type { ControlDb, ControlTx, DecisionRow } from '../platform/control-db.js';

/** Every record, newest first (a partnership records a few a month). */
export async function listDecisions(db: ControlDb, limit: number): Promise<DecisionRow[]> {
  return db.selectFrom('decisions').selectAll().orderBy('number', 'desc').limit(limit).execute();
}

export async function findDecision(db: ControlDb, id: string): Promise<DecisionRow | undefined> {
  return db.selectFrom('decisions').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findSuperseding(db: ControlDb, ids: string[]): Promise<Map<string, string>> {
  if (!ids.length) return new Map();
  const rows = await db.selectFrom('decisions').select(['id', 'supersedes']).where('supersedes', 'in', ids).execute();
  return new Map(rows.map((r) => [r.supersedes!, r.id]));
}

/** Appends a record numbered after the last one (the table's triggers refuse any change after). */
export async function appendDecision(tx: ControlTx, row: Omit<DecisionRow, 'number'>): Promise<number> {
  // One writer at a time numbers the records (a transaction-scoped lock, released at commit).
  await sql`SELECT pg_advisory_xact_lock(hashtext('parity.decisions'))`.execute(tx);
  const last = await tx
    .selectFrom('decisions')
    .select((eb) => eb.fn.max('number').as('n'))
    .executeTakeFirstOrThrow();
  const number = Number(last.n ?? 0) + 1;
  await tx
    .insertInto('decisions')
    .values({
      ...row,
      number,
      options: JSON.stringify(row.options),
      decision_makers: JSON.stringify(row.decision_makers),
      incidents: JSON.stringify(row.incidents),
      agreement_versions: JSON.stringify(row.agreement_versions),
      kpis: JSON.stringify(row.kpis),
    })
    .execute();
  return number;
}
