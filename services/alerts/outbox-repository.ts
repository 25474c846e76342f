import { sql } from 'kysely';
import type { ControlDb, ControlTx, NewOutboxRow, OutboxRow, WebhookEndpointRow } from '../platform/control-db.js';

/** States of a notification still to be delivered (a claimed one is `sending` until its lease ends). */
const UNSETTLED = ['pending', 'sending'] as const;

export async function createOutboxMessages(db: ControlDb, rows: NewOutboxRow[]): Promise<void> {
  await db.insertInto('outbox').values(rows).execute();
}

/** Whether an incident has a notification kept for the dashboard (no SMTP, no webhook). */
export async function hasKeptMessage(db: ControlDb, incidentId: string): Promise<boolean> {
  const kept = await db
    .selectFrom('outbox')
    .select('id')
    .where('incident_id', '=', incidentId)
    .where('state', '=', 'kept')
    .limit(1)
    .executeTakeFirst();
  return kept !== undefined;
}

/** What a crash left in flight is due again at `now` (same ids; receivers deduplicate). */
export async function requeueSendingMessages(db: ControlDb, now: Date): Promise<void> {
  await db
    .updateTable('outbox')
    .set({ state: 'pending', next_attempt_at: now })
    .where('state', '=', 'sending')
    .execute();
}

/** Notifications due by `now`: pending ones, and claimed ones whose lease ran out. */
export async function countDueMessages(db: ControlDb, now: Date): Promise<number> {
  const due = await db
    .selectFrom('outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', 'in', UNSETTLED)
    .where('next_attempt_at', '<=', now)
    .executeTakeFirstOrThrow();
  return Number(due.n);
}

/** Notifications waiting for delivery or a retry, whenever due. */
export async function countUnsettledMessages(db: ControlDb): Promise<number> {
  const pending = await db
    .selectFrom('outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', 'in', UNSETTLED)
    .executeTakeFirstOrThrow();
  return Number(pending.n);
}

/**
 * Claims up to `limit` due notifications (skipping rows another claimer holds and the ids in
 * `exclude`): each becomes `sending` with one more attempt, due again at `leaseUntil` unless its
 * outcome is recorded first. The rows as they were before the claim, oldest due first.
 */
export async function claimDueMessages(
  tx: ControlTx,
  opts: { now: Date; limit: number; exclude: string[]; leaseUntil: Date },
): Promise<OutboxRow[]> {
  let q = tx.selectFrom('outbox').selectAll().where('state', 'in', UNSETTLED).where('next_attempt_at', '<=', opts.now);
  if (opts.exclude.length) q = q.where('id', 'not in', opts.exclude);
  const due = await q.orderBy('next_attempt_at').limit(opts.limit).forUpdate().skipLocked().execute();
  if (due.length) {
    await tx
      .updateTable('outbox')
      .set({ state: 'sending', attempts: sql<number>`attempts + 1`, next_attempt_at: opts.leaseUntil })
      .where(
        'id',
        'in',
        due.map((r) => r.id),
      )
      .execute();
  }
  return due;
}

export async function markMessageDelivered(db: ControlDb, id: string, now: Date): Promise<void> {
  await db
    .updateTable('outbox')
    .set({ state: 'delivered', delivered_at: now, last_error: null })
    .where('id', '=', id)
    .execute();
}

/** A notification that will not be sent again: `failed` (retries used up) or `disabled` (its endpoint is gone). */
export async function markMessageGivenUp(
  db: ControlDb,
  id: string,
  state: 'failed' | 'disabled',
  error: string,
): Promise<void> {
  await db.updateTable('outbox').set({ state, last_error: error }).where('id', '=', id).execute();
}

/** A failed attempt: the notification is due again at `at`. */
export async function scheduleMessageRetry(db: ControlDb, id: string, error: string, at: Date): Promise<void> {
  await db
    .updateTable('outbox')
    .set({ state: 'pending', last_error: error, next_attempt_at: at })
    .where('id', '=', id)
    .execute();
}

/** Disables a webhook endpoint (after 410 Gone): it is remembered, and its pending notifications are not sent. */
export async function disableWebhookEndpoint(db: ControlDb, url: string, now: Date, reason: string): Promise<void> {
  await db
    .updateTable('outbox')
    .set({ state: 'disabled', last_error: 'endpoint disabled after answering 410 Gone' })
    .where('recipient', '=', url)
    .where('channel', '=', 'webhook')
    .where('state', '=', 'pending')
    .execute();
  await db
    .insertInto('webhook_endpoints')
    .values({ url, disabled_at: now, reason })
    .onConflict((oc) => oc.column('url').doUpdateSet({ disabled_at: now, reason }))
    .execute();
}

/** URLs of the webhook endpoints disabled so far. */
export async function listDisabledWebhookUrls(db: ControlDb): Promise<string[]> {
  const rows = await db.selectFrom('webhook_endpoints').select('url').where('disabled_at', 'is not', null).execute();
  return rows.map((r) => r.url);
}

/** The stored state of some webhook endpoints (only those ever disabled have a row); `urls` may be empty. */
export async function listWebhookEndpoints(db: ControlDb, urls: string[]): Promise<WebhookEndpointRow[]> {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('url', 'in', [...urls, ''])
    .execute();
}

/**
 * Notifications about the given KPIs to a partner's people, newest first; with `withSteering`
 * also those to the steering committee (partner null).
 */
export async function listMessagesForPartner(
  db: ControlDb,
  opts: { kpis: string[]; partnerId: string | null; withSteering: boolean; limit: number },
): Promise<OutboxRow[]> {
  let q = db
    .selectFrom('outbox')
    .selectAll()
    .where(sql<string>`payload->'data'->'kpi'->>'id'`, 'in', opts.kpis);
  q = opts.withSteering
    ? q.where((eb) => eb.or([eb('partner_id', '=', opts.partnerId), eb('partner_id', 'is', null)]))
    : q.where('partner_id', '=', opts.partnerId);
  return q.orderBy('created_at', 'desc').orderBy('id').limit(opts.limit).execute();
}

/** Notifications created in [from, to) per channel, partner and state, with the last one's time. */
/**
 * Notifications created in [from, to), counted by channel, recipient partner, state and what they
 * are about: the KPI (an incident's, an incident action's, or the incident's or note's a comment is
 * on), the goal (a goal notice's, or the goal a comment is on) and the KPI of a notice's exit
 * criterion, or a proposal's thread. The
 * metadata report counts for each reader only what it may read (governance/transparency.ts).
 */
export async function countMessagesBySubject(db: ControlDb, from: Date, to: Date) {
  return (
    db
      .selectFrom('outbox as o')
      .leftJoin('incidents as i', 'i.id', 'o.incident_id')
      .leftJoin('actions as ac', 'ac.id', 'o.action_id')
      .leftJoin('comments as c', 'c.id', 'o.comment_id')
      .leftJoin('incidents as ci', (j) => j.onRef('ci.id', '=', 'c.target_id').on('c.target_kind', '=', 'incident'))
      .leftJoin('annotations as an', (j) => j.onRef('an.id', '=', 'c.target_id').on('c.target_kind', '=', 'annotation'))
      .select((eb) => [
        'o.channel',
        'o.partner_id',
        'o.state',
        eb.fn.coalesce('i.kpi', 'ac.kpi', 'ci.kpi', 'an.kpi').as('about_kpi'),
        eb.fn
          .coalesce('o.goal_id', eb.case().when('c.target_kind', '=', 'goal').then(eb.ref('c.target_id')).end())
          .as('about_goal'),
        // A goal notice's exit criterion may name another KPI than its goal's.
        sql<string | null>`o.payload->'data'->'criterion'->>'kpi'`.as('about_criterion'),
        eb.fn.coalesce(eb('c.target_kind', '=', 'proposal'), eb.lit(false)).as('about_proposal'),
        eb.fn.countAll<string>().as('count'),
        eb.fn.max('o.created_at').as('last'),
      ])
      .where('o.created_at', '>=', from)
      .where('o.created_at', '<', to)
      // A drill's messages are an exercise, not the room's notifications.
      .where('o.drill_id', 'is', null)
      .groupBy(['o.channel', 'o.partner_id', 'o.state', 'about_kpi', 'about_goal', 'about_criterion', 'about_proposal'])
      .execute()
  );
}
