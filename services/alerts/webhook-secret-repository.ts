import { sql } from 'kysely';
import type { ControlDb, WebhookSecretRow } from '../platform/control-db.js';

/** Where each of a partner's endpoints stands after its rotations (none: generation 0). */
export async function listWebhookSecretStates(db: ControlDb, partnerId: string): Promise<WebhookSecretRow[]> {
  return db.selectFrom('webhook_secrets').selectAll().where('partner_id', '=', partnerId).orderBy('url').execute();
}

export async function findWebhookSecretState(
  db: ControlDb,
  partnerId: string,
  url: string,
): Promise<WebhookSecretRow | undefined> {
  return db
    .selectFrom('webhook_secrets')
    .selectAll()
    .where('partner_id', '=', partnerId)
    .where('url', '=', url)
    .executeTakeFirst();
}

/** Moves an endpoint to its next generation; the one before keeps signing until `previousUntil`. */
export async function rotateWebhookSecret(
  db: ControlDb,
  partnerId: string,
  url: string,
  now: Date,
  previousUntil: Date,
): Promise<WebhookSecretRow> {
  return db
    .insertInto('webhook_secrets')
    .values({ partner_id: partnerId, url, generation: 1, rotated_at: now, previous_until: previousUntil })
    .onConflict((oc) =>
      oc.columns(['partner_id', 'url']).doUpdateSet({
        generation: sql<number>`webhook_secrets.generation + 1`,
        rotated_at: now,
        previous_until: previousUntil,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}
