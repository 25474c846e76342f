import { randomBytes } from 'node:crypto';
import { afterCommit, type ControlDb } from '../platform/control-db.js';
import { hashToken, tokenCacheEpoch, type Principal, type Role } from './token-repository.js';

/** How long a dashboard session lives: idle (since its last use) and at most (since sign-in). */
export interface SessionLimits {
  idleMs: number;
  absoluteMs: number;
}

/** Starts a session for a token; the id (for the cookie) is returned once, only its hash is kept. */
export async function createSession(db: ControlDb, tokenId: string, now: Date, limits: SessionLimits): Promise<string> {
  const id = `pts_${randomBytes(32).toString('base64url')}`;
  await db
    .insertInto('sessions')
    .values({
      id_hash: hashToken(id),
      token_id: tokenId,
      created_at: now,
      last_seen_at: now,
      absolute_expires_at: new Date(now.getTime() + limits.absoluteMs),
    })
    .execute();
  await db.updateTable('tokens').set({ last_used_at: now }).where('id', '=', tokenId).execute();
  return id;
}

/**
 * The principal of a live session: its token live (not revoked, not expired), the session used
 * within the idle limit and before its absolute end. A use moves the idle clock (at most once a
 * minute, so reads do not write on every request). A session found dead is deleted.
 */
/** Session rows read in the last second, by hash (as tokens are: services/governance/token-repository.ts). */
const SESSION_CACHE_MS = 1000;
type SessionRow = NonNullable<Awaited<ReturnType<typeof readSession>>>;
const sessionCache = new Map<string, { row: SessionRow; at: number }>();

/** Forgets every session read (a session ended, or its token changed). */
export function forgetSessions(): void {
  sessionCache.clear();
}

export async function findPrincipalBySession(
  db: ControlDb,
  id: string,
  now: Date,
  limits: SessionLimits,
): Promise<Principal | undefined> {
  const key = hashToken(id);
  const cached = sessionCache.get(key);
  let row: SessionRow | undefined;
  if (cached && Date.now() - cached.at < SESSION_CACHE_MS && tokenCacheEpoch() === cached.row.epoch) row = cached.row;
  else {
    row = await readSession(db, key);
    if (sessionCache.size >= 10_000) sessionCache.clear();
    if (row) sessionCache.set(key, { row, at: Date.now() });
  }
  return liveSession(db, id, row, now, limits);
}

async function readSession(db: ControlDb, key: string) {
  const row = await db
    .selectFrom('sessions')
    .innerJoin('tokens', 'tokens.id', 'sessions.token_id')
    .select([
      'sessions.id_hash',
      'sessions.last_seen_at',
      'sessions.absolute_expires_at',
      'tokens.id as token_id',
      'tokens.partner_id',
      'tokens.role',
      'tokens.name',
      'tokens.expires_at',
      'tokens.revoked_at',
    ])
    .where('sessions.id_hash', '=', key)
    .executeTakeFirst();
  return row && { ...row, epoch: tokenCacheEpoch() };
}

async function liveSession(
  db: ControlDb,
  id: string,
  row: SessionRow | undefined,
  now: Date,
  limits: SessionLimits,
): Promise<Principal | undefined> {
  if (!row) return undefined;
  const t = now.getTime();
  const dead =
    row.revoked_at !== null ||
    (row.expires_at !== null && new Date(row.expires_at).getTime() <= t) ||
    new Date(row.absolute_expires_at).getTime() <= t ||
    new Date(row.last_seen_at).getTime() + limits.idleMs <= t;
  if (dead) {
    await endSession(db, id);
    return undefined;
  }
  if (t - new Date(row.last_seen_at).getTime() >= 60_000) {
    await db.updateTable('sessions').set({ last_seen_at: now }).where('id_hash', '=', row.id_hash).execute();
    await db.updateTable('tokens').set({ last_used_at: now }).where('id', '=', row.token_id).execute();
    row.last_seen_at = now;
  }
  return { tokenId: row.token_id, partnerId: row.partner_id, role: row.role as Role, name: row.name };
}

/** Ends a session (sign-out); true if there was one. */
export async function endSession(db: ControlDb, id: string): Promise<boolean> {
  const r = await db.deleteFrom('sessions').where('id_hash', '=', hashToken(id)).executeTakeFirst();
  changedSessions(db);
  return Number(r.numDeletedRows) > 0;
}

/** Ends every session of a token (revocation and rotation end the sessions signed in with it). */
export async function endSessionsOfToken(db: ControlDb, tokenId: string): Promise<void> {
  await db.deleteFrom('sessions').where('token_id', '=', tokenId).execute();
  changedSessions(db);
}

/** After sessions ended: forget what was read now, and again once the transaction commits. */
function changedSessions(db: ControlDb): void {
  forgetSessions();
  afterCommit(db, forgetSessions);
}
