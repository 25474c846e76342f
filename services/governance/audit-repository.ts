import { createHash } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import { canonicalJson } from '../platform/canonical-json.js';
import {
  AUDIT_APPEND_AFTER,
  inTransaction,
  type AuditRow,
  type ControlDb,
  type ControlTx,
} from '../platform/control-db.js';
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
 * process last wrote or read it — only a hint: the database refuses a group hashed on a tail
 * that is not the chain's ({@link appendAuditRowsAfter}).
 */
export class AuditChain {
  /** The tail the next group is hashed on: the last group sent, landed or still in flight. */
  #tail: { seq: number; hash: string } | undefined;
  /** Entries not yet in a group. */
  #waiting: Waiting[] = [];
  /** Groups sent and not yet answered. */
  #inFlight = 0;
  /** Groups the database refused (the tail moved): written again, in order, before any other. */
  #again: (Waiting[] & { sentAfter: number; alone?: true })[] = [];
  #rewriting = false;
  #scheduled = false;
  /** Groups refused because the tail moved, and entries written again one by one (tests read them). */
  readonly stats = { refused: 0, alone: 0 };

  /**
   * @param maxInFlight how many groups may travel at once: while one commits (on PostgreSQL the
   *   commit's flush is most of an append's time) the next is already on its way, on another
   *   connection. An embedded control plane runs one statement at a time anyway.
   */
  constructor(
    readonly db: ControlDb,
    readonly maxInFlight = 1,
  ) {}

  /**
   * Appends one entry to the hash chain (the hot path: every query is audited) and resolves once
   * it is durable. Group commit: the entries of concurrent requests are appended in one
   * statement, in the order they came — one round trip, one lock and one commit for many reads.
   */
  append(entry: AuditEntry, at: Date): Promise<number> {
    return new Promise<number>((done, fail) => {
      this.#waiting.push({ entry, at, done, fail });
      this.#schedule();
    });
  }

  /**
   * Starts a group on the next turn of the event loop: the requests read in this turn reach
   * their entry first (an embedded control plane runs on this thread, so without the wait each
   * append would finish before the next request was parsed and every group would hold one).
   */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#again.length || this.#rewriting) {
      // Refused groups are written again on the real tail once nothing else is in flight, and
      // nothing new is sent until they are in: their entries came first.
      if (!this.#rewriting && this.#inFlight === 0) void this.#rewrite();
      return;
    }
    while (this.#waiting.length && this.#inFlight < this.maxInFlight) {
      const tail = this.#tail;
      // With the tail unknown, the next group waits for those in flight (its place comes after theirs).
      if (!tail && this.#inFlight > 0) break;
      const group = this.#waiting.splice(0, GROUP_MAX);
      this.#inFlight++;
      const sent = tail ? this.#appendAfter(tail, group) : this.#settleLocked(group);
      void sent.finally(() => {
        this.#inFlight--;
        this.#pump();
      });
      if (!tail) break; // the tail is known again once this group is in
    }
  }

  /** Hashes the group on the expected tail and sends it; a refusal queues it to be written again. */
  async #appendAfter(tail: { seq: number; hash: string }, group: Waiting[]): Promise<void> {
    try {
      let prev = tail.hash;
      const rows = group.map((g, i) => {
        const row = auditRow(tail.seq + 1 + i, g.entry, g.at);
        const out = { ...row, prev_hash: prev, hash: entryHash(prev, row) };
        prev = out.hash;
        return out;
      });
      this.#tail = { seq: rows.at(-1)!.seq, hash: prev };
      await appendAuditRowsAfter(this.db, tail, rows);
      rows.forEach((r, i) => group[i]!.done(r.seq));
    } catch (err) {
      this.#tail = undefined;
      const code = (err as { code?: string }).code;
      if (code === 'PA001' || code === '23505') {
        // Another writer moved the tail, or a group sent before this one did not land: every
        // group hashed after it is refused too, and all are written again in the order sent.
        this.stats.refused++;
        this.#again.push(Object.assign(group, { sentAfter: tail.seq }));
        this.#again.sort((a, b) => a.sentAfter - b.sentAfter);
      } else if (isDataError(code) && group.length > 1) {
        // The control plane refused an entry's data: nothing of the group landed, and it is
        // written again one entry at a time, so the bad entry fails alone. (Any other failure —
        // a connection lost, say — fails the group: it may have committed, and writing it again
        // could record its reads twice.)
        this.#again.push(Object.assign(group, { sentAfter: tail.seq, alone: true as const }));
        this.#again.sort((a, b) => a.sentAfter - b.sentAfter);
      } else for (const g of group) g.fail(err);
    }
  }

  /** Writes the refused groups again, oldest first, on the tail read under the lock. */
  async #rewrite(): Promise<void> {
    this.#rewriting = true;
    const groups = this.#again.splice(0);
    try {
      for (const group of groups)
        if (group.alone) await this.#oneByOne(group);
        else await this.#settleLocked(group);
    } finally {
      this.#rewriting = false;
      this.#pump();
    }
  }

  /**
   * Appends the group under the lock and settles its entries either way; if the control plane
   * refused an entry's data, the group is written again one entry at a time.
   */
  async #settleLocked(group: Waiting[]): Promise<void> {
    const err = await this.#appendLocked(group);
    if (err === undefined) return;
    if (group.length > 1 && isDataError((err as { code?: string }).code)) await this.#oneByOne(group);
    else for (const g of group) g.fail(err);
  }

  async #oneByOne(group: Waiting[]): Promise<void> {
    this.stats.alone += group.length;
    for (const g of group) {
      const err = await this.#appendLocked([g]);
      if (err !== undefined) g.fail(err);
    }
  }

  /**
   * Appends the group under the lock in one transaction, reading the tail there; resolves its
   * entries when it lands, else returns the error and leaves them to the caller.
   */
  async #appendLocked(group: Waiting[]): Promise<unknown> {
    try {
      const written = await inTransaction(this.db, async (tx) => {
        const seqs: number[] = [];
        for (const g of group) seqs.push(await appendAuditIn(tx, g.entry, g.at));
        return { seqs, hash: await findAuditHash(tx, seqs.at(-1)!) };
      });
      this.#tail = { seq: written.seqs.at(-1)!, hash: written.hash };
      group.forEach((g, i) => g.done(written.seqs[i]!));
      return undefined;
    } catch (err) {
      this.#tail = undefined;
      return err ?? new Error('the audit append failed');
    }
  }
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): the entry's data, not the connection. */
const isDataError = (code: string | undefined) => code !== undefined && /^2[23]/.test(code) && code !== '23505';

type Waiting = { entry: AuditEntry; at: Date; done: (seq: number) => void; fail: (err: unknown) => void };

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

/**
 * The one-statement append of rows after the tail they were hashed on: the database function
 * takes the chain's lock, checks the tail and inserts (sql/control/012_audit_append.sql). The rows
 * travel as one JSON parameter, so the statement's text is the same whatever the group's size.
 */
async function appendAuditRowsAfter(
  db: ControlDb,
  tail: { seq: number; hash: string },
  rows: (ReturnType<typeof auditRow> & { prev_hash: string; hash: string })[],
): Promise<void> {
  const json = JSON.stringify(rows.map((r) => ({ ...r, at: r.at.toISOString() })));
  await db.executeQuery(CompiledQuery.raw(AUDIT_APPEND_AFTER, [json, tail.seq, tail.hash]));
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
