import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterCommit, type ControlDb, type ControlTx, type TokenRow } from '../platform/control-db.js';
import type { TokenView } from './governance-schemas.js';

export const roles = ['ingest', 'analyst', 'owner', 'steering', 'admin', 'operator'] as const;
export type Role = (typeof roles)[number];

/** Who is calling, as established by the token alone. */
export interface Principal {
  tokenId: string;
  partnerId: string | null;
  role: Role;
  name: string;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Creates a token; the plain token is returned once and only its hash is stored. */
export async function createToken(
  db: ControlDb,
  input: {
    partnerId: string | null;
    role: Role;
    name: string;
    expiresAt?: Date | null;
    createdBy?: string;
    replaces?: string;
  },
  now: Date,
): Promise<{ token: string; id: string }> {
  const token = `pty_${randomBytes(32).toString('base64url')}`;
  const id = `tok_${randomBytes(9).toString('base64url')}`;
  await db
    .insertInto('tokens')
    .values({
      id,
      token_hash: hashToken(token),
      partner_id: input.partnerId,
      role: input.role,
      name: input.name,
      created_at: now,
      expires_at: input.expiresAt ?? null,
      created_by: input.createdBy ?? null,
      replaces: input.replaces ?? null,
    })
    .execute();
  return { token, id };
}

/**
 * Token rows read in the last second, by hash: a dashboard fires several requests per viewer and
 * each would otherwise ask the control plane who it is. A revocation, rotation or expiry change
 * in this process forgets them at once; one in another process sharing the server takes effect
 * within the second. Expiry is checked against the clock on every use.
 */
const TOKEN_CACHE_MS = 1000;
const tokenCache = new Map<string, { row: TokenRow; at: number }>();

let epoch = 0;
/** Forgets every token read (a token changed): sessions read before it are forgotten too. */
export function forgetTokens(): void {
  tokenCache.clear();
  epoch++;
}

/** After a change to tokens: forget what was read now, and again once its transaction commits. */
function changedTokens(db: ControlDb): void {
  forgetTokens();
  afterCommit(db, forgetTokens);
}

/** Moves on each forgetTokens(): a session read before a token changed is read again. */
export function tokenCacheEpoch(): number {
  return epoch;
}

/** The principal of a live token (not revoked, not expired), else undefined. */
export async function findPrincipalByToken(db: ControlDb, token: string, now: Date): Promise<Principal | undefined> {
  const key = hashToken(token);
  const cached = tokenCache.get(key);
  let row: TokenRow | undefined;
  if (cached && Date.now() - cached.at < TOKEN_CACHE_MS) row = cached.row;
  else {
    row = await db.selectFrom('tokens').selectAll().where('token_hash', '=', key).executeTakeFirst();
    if (tokenCache.size >= 10_000) tokenCache.clear();
    if (row) tokenCache.set(key, { row, at: Date.now() });
  }
  if (!row || row.revoked_at || (row.expires_at && new Date(row.expires_at) <= now)) return undefined;
  await markTokenUsed(db, row, now);
  return { tokenId: row.id, partnerId: row.partner_id, role: row.role as Role, name: row.name };
}

/** Moves a token's last use, at most once a minute (reads do not write on every request). */
export async function markTokenUsed(
  db: ControlDb,
  row: { id: string; last_used_at: Date | string | null },
  now: Date,
): Promise<void> {
  if (row.last_used_at !== null && now.getTime() - new Date(row.last_used_at).getTime() < 60_000) return;
  await db.updateTable('tokens').set({ last_used_at: now }).where('id', '=', row.id).execute();
  row.last_used_at = now;
}

/**
 * A person's sign-in token (through their identity provider or an invitation): like any token, but
 * its secret is drawn and thrown away — it only anchors the person's sessions.
 */
export async function createPersonToken(
  db: ControlDb,
  input: { partnerId: string; role: Role; name: string; origin: 'oidc' | 'invitation'; createdBy: string },
  now: Date,
): Promise<string> {
  const id = `tok_${randomBytes(9).toString('base64url')}`;
  await db
    .insertInto('tokens')
    .values({
      id,
      token_hash: hashToken(`pty_${randomBytes(32).toString('base64url')}`),
      partner_id: input.partnerId,
      role: input.role,
      name: input.name,
      created_at: now,
      expires_at: null,
      created_by: input.createdBy,
      replaces: null,
      origin: input.origin,
    })
    .execute();
  return id;
}

/** The live sign-in token of a person at a partner, from one origin. */
export async function findPersonToken(
  db: ControlDb,
  partnerId: string,
  name: string,
  origin: 'oidc' | 'invitation',
): Promise<TokenRow | undefined> {
  return db
    .selectFrom('tokens')
    .selectAll()
    .where('partner_id', '=', partnerId)
    .where('origin', '=', origin)
    .where((eb) => eb(eb.fn('lower', ['name']), '=', name.toLowerCase()))
    .where('revoked_at', 'is', null)
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
}

export async function revokeToken(db: ControlDb, id: string, now: Date): Promise<boolean> {
  const r = await db
    .updateTable('tokens')
    .set({ revoked_at: now })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  changedTokens(db);
  return Number(r.numUpdatedRows) > 0;
}

export async function countTokens(db: ControlDb): Promise<number> {
  const r = await db
    .selectFrom('tokens')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** A token as its partner's admin sees it (its shape is the response schema's): never the token or its hash. */
export type { TokenView };

export function tokenView(r: TokenRow, now: Date): TokenView {
  const expired = r.expires_at !== null && new Date(r.expires_at) <= now;
  return {
    id: r.id,
    partner: r.partner_id,
    role: r.role as Role,
    name: r.name,
    createdAt: new Date(r.created_at).toISOString(),
    createdBy: r.created_by,
    expiresAt: r.expires_at ? new Date(r.expires_at).toISOString() : null,
    revokedAt: r.revoked_at ? new Date(r.revoked_at).toISOString() : null,
    replaces: r.replaces,
    state: r.revoked_at ? 'revoked' : expired ? 'expired' : 'live',
    origin: r.origin,
    lastUsedAt: r.last_used_at ? new Date(r.last_used_at).toISOString() : null,
  };
}

export async function listTokens(db: ControlDb, partnerId: string | null): Promise<TokenRow[]> {
  let q = db.selectFrom('tokens').selectAll().orderBy('created_at', 'desc').orderBy('id');
  q = partnerId === null ? q : q.where('partner_id', '=', partnerId);
  return q.execute();
}

export async function findToken(db: ControlDb, id: string): Promise<TokenRow | undefined> {
  return db.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A token under a row lock for the rest of the transaction (two rotations at once make one replacement). */
export async function findTokenForUpdate(tx: ControlTx, id: string): Promise<TokenRow> {
  return tx.selectFrom('tokens').selectAll().where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
}

/** The unrevoked token that replaced `id` in a rotation, if any. */
export async function findReplacement(db: ControlDb, id: string): Promise<Pick<TokenRow, 'id'> | undefined> {
  return db
    .selectFrom('tokens')
    .select('id')
    .where('replaces', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
}

export async function setTokenExpiry(db: ControlDb, id: string, expiresAt: Date): Promise<void> {
  await db.updateTable('tokens').set({ expires_at: expiresAt }).where('id', '=', id).execute();
  changedTokens(db);
}

/** Unrevoked tokens whose name is one of `lowerNames` (compared lower-case), by id. */
export async function listUnrevokedTokensNamed(
  db: ControlDb,
  lowerNames: string[],
): Promise<Pick<TokenRow, 'id' | 'partner_id' | 'role' | 'name' | 'expires_at'>[]> {
  return db
    .selectFrom('tokens')
    .select(['id', 'partner_id', 'role', 'name', 'expires_at'])
    .where('revoked_at', 'is', null)
    .where(sql<boolean>`lower(name) in (${sql.join(lowerNames)})`)
    .orderBy('id')
    .execute();
}

/** Revokes every live token of a partner not in `keptPartners` (partner-less tokens stay); the ones revoked now. */
export async function revokeTokensOfPartnersOtherThan(
  db: ControlDb,
  keptPartners: string[],
  now: Date,
): Promise<Pick<TokenRow, 'id' | 'partner_id'>[]> {
  const dropped = await db
    .updateTable('tokens')
    .set({ revoked_at: now })
    .where('revoked_at', 'is', null)
    .where('partner_id', 'is not', null)
    .where('partner_id', 'not in', keptPartners)
    .returning(['id', 'partner_id'])
    .execute();
  changedTokens(db);
  return dropped;
}
