import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { canonicalJson } from '../platform/canonical-json.js';
import { inTransaction, type AuditRow, type ControlDb, type ControlTx } from '../platform/control-db.js';
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

/**
 * The writer of one process's audit entries on one control-plane handle: the room creates one
 * when it opens (and a CLI command one for its own handle). It keeps the chain's tail as this
 * process last wrote or read it — only a hint, the primary key on seq guards it — and runs the
 * appends of the process one after another.
 */
export class AuditChain {
  #tail: { seq: number; hash: string } | undefined;
  /** Entries waiting for the append under way to finish: the next append writes them all. */
  #waiting: { entry: AuditEntry; at: Date; done: (seq: number) => void; fail: (err: unknown) => void }[] = [];
  #appending = false;

  constructor(readonly db: ControlDb) {}

  /**
   * Appends one entry to the hash chain (the hot path: every query is audited) and resolves once
   * it is durable. Group commit: while one append is under way, the entries of concurrent
   * requests wait, and the next append writes them all in one statement, in the order they came —
   * one round trip and one lock for many reads. The statement takes the chain's advisory lock, so
   * a transactional append ({@link appendAuditIn}) elsewhere is never disturbed; if another
   * writer moved the tail meanwhile, the insert hits the primary key and the group is written
   * again under the lock, on the new tail.
   */
  append(entry: AuditEntry, at: Date): Promise<number> {
    return new Promise<number>((done, fail) => {
      this.#waiting.push({ entry, at, done, fail });
      if (!this.#appending) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#appending = true;
    try {
      while (this.#waiting.length) {
        const group = this.#waiting.splice(0, GROUP_MAX);
        try {
          const seqs = await this.#appendGroup(group);
          group.forEach((g, i) => g.done(seqs[i]!));
        } catch (err) {
          for (const g of group) g.fail(err);
        }
      }
    } finally {
      this.#appending = false;
    }
  }

  async #appendGroup(group: { entry: AuditEntry; at: Date }[]): Promise<number[]> {
    const tail = this.#tail;
    if (tail) {
      let prev = tail.hash;
      const rows = group.map((g, i) => {
        const row = auditRow(tail.seq + 1 + i, g.entry, g.at);
        const hash = entryHash(prev, row);
        const out = { ...row, prev_hash: prev, hash };
        prev = hash;
        return out;
      });
      try {
        await appendAuditRowsAfter(this.db, rows);
        this.#tail = { seq: rows.at(-1)!.seq, hash: prev };
        return rows.map((r) => r.seq);
      } catch (err) {
        this.#tail = undefined;
        if ((err as { code?: string }).code !== '23505') throw err;
        // Another writer moved the tail: append under the lock, reading the tail there.
      }
    }
    const written = await inTransaction(this.db, async (tx) => {
      const seqs: number[] = [];
      for (const g of group) seqs.push(await appendAuditIn(tx, g.entry, g.at));
      return { seqs, hash: await findAuditHash(tx, seqs.at(-1)!) };
    });
    this.#tail = { seq: written.seqs.at(-1)!, hash: written.hash };
    return written.seqs;
  }
}

/** At most this many entries in one statement (a burst of reads is written in a few). */
const GROUP_MAX = 256;

/** An entry as its row is hashed and stored (Postgres keeps microseconds; a millisecond Date round-trips exactly, so the hash does too). */
function auditRow(seq: number, entry: AuditEntry, at: Date) {
  return {
    seq,
    at: new Date(at.getTime()),
    actor: entry.actor,
    partner_id: entry.partnerId,
    action: entry.action,
    target: entry.target ?? null,
    details: entry.details ?? {},
  };
}

/** The one-statement append of rows after a known tail, under the chain's advisory lock. */
async function appendAuditRowsAfter(
  db: ControlDb,
  rows: (ReturnType<typeof auditRow> & { prev_hash: string; hash: string })[],
): Promise<void> {
  const values = rows.map(
    (r) =>
      sql`(${r.seq}::bigint, ${r.at}::timestamptz, ${r.actor}, ${r.partner_id}, ${r.action}, ${r.target}, ${JSON.stringify(r.details)}::jsonb, ${r.prev_hash}, ${r.hash})`,
  );
  await sql`INSERT INTO audit_log (seq, at, actor, partner_id, action, target, details, prev_hash, hash)
        SELECT v.* FROM (SELECT pg_advisory_xact_lock(${AUDIT_LOCK})) AS chain_lock,
        (VALUES ${sql.join(values)}) AS v(seq, at, actor, partner_id, action, target, details, prev_hash, hash)`.execute(
    db,
  );
}

async function findAuditHash(db: ControlDb, seq: number): Promise<string> {
  return (await db.selectFrom('audit_log').select('hash').where('seq', '=', seq).executeTakeFirstOrThrow()).hash;
}

/** Appends one entry inside the caller's transaction: the entry lands with the change it records, or neither does. */
export async function appendAuditIn(tx: ControlTx, entry: AuditEntry, at: Date): Promise<number> {
  await sql`SELECT pg_advisory_xact_lock(${AUDIT_LOCK})`.execute(tx);
  const last = await tx
    .selectFrom('audit_log')
    .select(['seq', 'hash'])
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  const row = auditRow((last ? Number(last.seq) : 0) + 1, entry, at);
  const prev = last?.hash ?? GENESIS_HASH;
  await tx
    .insertInto('audit_log')
    .values({ ...row, details: JSON.stringify(row.details), prev_hash: prev, hash: entryHash(prev, row) })
    .execute();
  return row.seq;
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

/** Which entries a reader of the log sees: all of them, or a partner's own and the shared ones. */
export type AuditScope = 'all' | { partnerId: string | null };

/**
 * A page of the log in sequence order. `action` is an exact action, or a prefix when it ends
 * in a dot (`query.`). Shared entries are the room's own and the partnership's agreement
 * changes (every partner is a party); not another partner's reads of the agreement, and not
 * refused sign-ins (their address is for the host and steering).
 */
export async function listAuditEntries(
  db: ControlDb,
  q: { after: number; limit: number; scope: AuditScope; action?: string | undefined },
): Promise<AuditRow[]> {
  let query = db.selectFrom('audit_log').selectAll().where('seq', '>', q.after).orderBy('seq').limit(q.limit);
  const scope = q.scope;
  if (scope !== 'all') {
    query = query.where((eb) =>
      eb.or([
        eb('partner_id', '=', scope.partnerId),
        eb.and([eb('partner_id', 'is', null), eb('action', '!=', 'session.refused')]),
        eb.and([eb('action', 'like', 'agreement.%'), eb('action', '!=', 'agreement.read')]),
      ]),
    );
  }
  if (q.action)
    query = q.action.endsWith('.')
      ? query.where('action', 'like', `${q.action.replaceAll('_', '\\_')}%`)
      : query.where('action', '=', q.action);
  return query.execute();
}

/** The agreement's changes logged in [from, to): proposals, decisions, activations (not reads). */
export async function listAgreementChanges(
  db: ControlDb,
  from: Date,
  to: Date,
): Promise<Pick<AuditRow, 'at' | 'action' | 'target' | 'partner_id' | 'details'>[]> {
  return db
    .selectFrom('audit_log')
    .select(['at', 'action', 'target', 'partner_id', 'details'])
    .where('action', 'like', 'agreement.%')
    .where('action', '!=', 'agreement.read')
    .where('at', '>=', from)
    .where('at', '<', to)
    .orderBy('seq')
    .execute();
}

/** One row of {@link countKpiReads}; sums are numeric, which the driver may hand over as text (read them with Number). */
export interface KpiReadCount {
  kpi: string;
  partner: string | null;
  role: string;
  requests: string;
  cells: string | null;
  suppressed: string | null;
}

/**
 * Reads per KPI in [from, to), by the reader's partner and role: series and band reads name
 * their KPI (with the cells served and withheld), overviews and breach lists list theirs.
 */
export async function countKpiReads(db: ControlDb, from: Date, to: Date): Promise<KpiReadCount[]> {
  const q = await sql<KpiReadCount>`
    WITH reads AS (
      SELECT target AS kpi, partner_id, details->>'role' AS role, (details->>'cells')::bigint AS cells, (details->>'suppressed')::bigint AS suppressed
      FROM audit_log WHERE action IN ('query.series', 'query.bands') AND at >= ${from} AND at < ${to}
      UNION ALL
      SELECT k.value AS kpi, partner_id, details->>'role' AS role, NULL, NULL
      FROM audit_log, jsonb_array_elements_text(CASE WHEN jsonb_typeof(details->'kpis') = 'array' THEN details->'kpis' ELSE '[]'::jsonb END) AS k(value)
      WHERE action IN ('query.kpis', 'query.breaches') AND at >= ${from} AND at < ${to}
    )
    SELECT kpi, partner_id AS partner, coalesce(role, 'unknown') AS role, count(*) AS requests, sum(cells) AS cells, sum(suppressed) AS suppressed
    FROM reads GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS FIRST, 3`.execute(db);
  return q.rows;
}
