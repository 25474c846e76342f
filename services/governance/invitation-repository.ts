import type { ControlDb, ControlTx, InvitationRow } from '../platform/control-db.js';

export async function createInvitationRow(tx: ControlTx, row: InvitationRow): Promise<void> {
  await tx.insertInto('invitations').values(row).execute();
}

/** A partner's invitations, newest first. */
export async function listPartnerInvitations(
  db: ControlDb,
  partnerId: string,
  limit: number,
): Promise<InvitationRow[]> {
  return db
    .selectFrom('invitations')
    .selectAll()
    .where('partner_id', '=', partnerId)
    .orderBy('created_at', 'desc')
    .limit(limit)
    .execute();
}

export async function findInvitation(db: ControlDb, id: string): Promise<InvitationRow | undefined> {
  return db.selectFrom('invitations').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Withdraws a partner's invitation not used nor withdrawn yet. */
export async function withdrawInvitation(
  tx: ControlTx,
  id: string,
  partnerId: string,
  now: Date,
): Promise<InvitationRow | undefined> {
  return tx
    .updateTable('invitations')
    .set({ revoked_at: now })
    .where('id', '=', id)
    .where('partner_id', '=', partnerId)
    .where('used_at', 'is', null)
    .where('revoked_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/** The invitation of a code, locked until the transaction ends (a code is used once). */
export async function findInvitationByCodeForUpdate(
  tx: ControlTx,
  codeHash: string,
): Promise<InvitationRow | undefined> {
  return tx.selectFrom('invitations').selectAll().where('code_hash', '=', codeHash).forUpdate().executeTakeFirst();
}

export async function markInvitationUsed(tx: ControlTx, id: string, tokenId: string, now: Date): Promise<void> {
  await tx.updateTable('invitations').set({ used_at: now, token_id: tokenId }).where('id', '=', id).execute();
}
