import { createHash } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import { canonicalJson } from '../platform/canonical-json.js';
import type { AuditRow, ControlDb, Database } from '../platform/control-db.js';
import type { AuditEntry } from '../platform/room.js';

export const GENESIS_HASH = '0'.repeat(64);
// One advisory lock serialises writers of the chain across processes sharing a server.
const AUDIT_LOCK = 7_417_001;

export function entryHash(
  prevHash: string,
  e: {
    seq: number;
    at: Date;
    actor: string;
    partner_id: string | null;
    action: string;
    target: string | null;
    details: unknown;
  },
): string {
  const body = canonicalJson({
    seq: e.seq,
    at: e.at.toISOString(),
    actor: e.actor,
    partner: e.partner_id,
    action: e.action,
    target: e.target,
    details: e.details ?? {},
  });
  return createHash('sha256').update(prevHash).update('\n').update(body).digest('hex');
}

/** The chain's tail as this process last wrote or read it: only a hint, the primary key on seq guards it. */
const tails = new WeakMap<ControlDb, { seq: number; hash: string }>();
const writers = new WeakMap<ControlDb, Promise<unknown>>();

/**
 * Appends one entry to the hash chain in one statement (the hot path: every query is audited).
 * Appends of one process run in order; the statement takes the chain's advisory lock, so a
 * transactional append ({@link appendAuditIn}) elsewhere is never disturbed, and if another
 * writer moved the tail meanwhile the insert hits the primary key and is retried on the new tail.
 */
export function appendAudit(db: ControlDb, entry: AuditEntry, at: Date): Promise<number> {
  const run = (writers.get(db) ?? Promise.resolve()).catch(() => undefined).then(() => appendAtTail(db, entry, at));
  writers.set(db, run);
  return run;
}

async function appendAtTail(db: ControlDb, entry: AuditEntry, at: Date): Promise<number> {
  const tail = tails.get(db);
  if (tail) {
    const row = {
      seq: tail.seq + 1,
      at: new Date(at.getTime()),
      actor: entry.actor,
      partner_id: entry.partnerId,
      action: entry.action,
      target: entry.target ?? null,
      details: entry.details ?? {},
    };
    const hash = entryHash(tail.hash, row);
    try {
      await sql`INSERT INTO audit_log (seq, at, actor, partner_id, action, target, details, prev_hash, hash)
        SELECT ${row.seq}, ${row.at}, ${row.actor}, ${row.partner_id}, ${row.action}, ${row.target}, ${JSON.stringify(row.details)}::jsonb, ${tail.hash}, ${hash}
        FROM (SELECT pg_advisory_xact_lock(${AUDIT_LOCK})) AS chain_lock`.execute(db);
      tails.set(db, { seq: row.seq, hash });
      return row.seq;
    } catch (err) {
      tails.delete(db);
      if ((err as { code?: string }).code !== '23505') throw err;
      // Another writer moved the tail: append under the lock, reading the tail there.
    }
  }
  const written = await db.transaction().execute(async (tx) => {
    const seq = await appendAuditIn(tx, entry, at);
    const row = await tx.selectFrom('audit_log').select('hash').where('seq', '=', seq).executeTakeFirstOrThrow();
    return { seq, hash: row.hash };
  });
  tails.set(db, written);
  return written.seq;
}

/** Appends one entry inside the caller's transaction: the entry lands with the change it records, or neither does. */
export async function appendAuditIn(tx: Transaction<Database>, entry: AuditEntry, at: Date): Promise<number> {
  await sql`SELECT pg_advisory_xact_lock(${AUDIT_LOCK})`.execute(tx);
  const last = await tx
    .selectFrom('audit_log')
    .select(['seq', 'hash'])
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  const seq = (last ? Number(last.seq) : 0) + 1;
  // Postgres keeps microseconds; a millisecond Date round-trips exactly, so the hash does too.
  const row = {
    seq,
    at: new Date(at.getTime()),
    actor: entry.actor,
    partner_id: entry.partnerId,
    action: entry.action,
    target: entry.target ?? null,
    details: entry.details ?? {},
  };
  const prev = last?.hash ?? GENESIS_HASH;
  await tx
    .insertInto('audit_log')
    .values({ ...row, details: JSON.stringify(row.details), prev_hash: prev, hash: entryHash(prev, row) })
    .execute();
  return seq;
}

/** Recomputes the chain; the first broken link, or ok. */
export async function verifyAuditChain(
  db: ControlDb,
): Promise<{ ok: true; entries: number } | { ok: false; entries: number; brokenAt: number; reason: string }> {
  let prev = GENESIS_HASH;
  let count = 0;
  let after = 0;
  for (;;) {
    const rows: AuditRow[] = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(1000)
      .execute();
    if (rows.length === 0) break;
    for (const r of rows) {
      count++;
      const seq = Number(r.seq);
      if (seq !== count)
        return { ok: false, entries: count, brokenAt: seq, reason: `expected entry ${count}, found ${seq}` };
      if (r.prev_hash !== prev)
        return { ok: false, entries: count, brokenAt: seq, reason: 'prev_hash does not match the previous entry' };
      const h = entryHash(prev, {
        seq,
        at: new Date(r.at),
        actor: r.actor,
        partner_id: r.partner_id,
        action: r.action,
        target: r.target,
        details: r.details,
      });
      if (h !== r.hash)
        return { ok: false, entries: count, brokenAt: seq, reason: 'the entry does not match its hash' };
      prev = r.hash;
      after = seq;
    }
  }
  return { ok: true, entries: count };
}
