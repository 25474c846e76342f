import type { FastifyRequest } from 'fastify';
import { findPrincipalByToken, type Principal, type Role } from '../governance/token-repository.js';
import type { Clock } from './clock.js';
import type { ControlDb } from './control-db.js';
import { forbidden, unauthorized } from './errors.js';

const bearer = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/;

/**
 * The caller's principal from the bearer token. A missing, malformed, unknown, revoked or
 * expired token all get the same 401, so a response never says whether a token exists.
 */
export async function authenticate(db: ControlDb, clock: Clock, req: FastifyRequest): Promise<Principal> {
  const m = bearer.exec(req.headers.authorization ?? '');
  if (!m) throw unauthorized();
  const principal = await findPrincipalByToken(db, m[1]!, clock.now());
  if (!principal) throw unauthorized();
  return principal;
}

/** 403 unless the principal holds one of the roles. */
export function requireRole(p: Principal, ...allowed: Role[]): void {
  if (!allowed.includes(p.role)) throw forbidden(`the ${p.role} role may not do this; it needs ${allowed.join(' or ')}`);
}
