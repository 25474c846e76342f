import type { FastifyRequest } from 'fastify';
import { findPrincipalByToken, type Principal, type Role } from './token-repository.js';
import type { Clock } from '../platform/clock.js';
import type { ControlDb } from '../platform/control-db.js';
import { forbidden, unauthorized } from '../platform/errors.js';

const bearer = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/;
const tokenShape = /^[A-Za-z0-9._~+/=-]{1,512}$/;

/** The dashboard's session cookie: the user's token, httpOnly and SameSite=Strict. */
export const SESSION_COOKIE = 'parity_session';

/** The room's own origins: as this request reached it, and PARITY_PUBLIC_URL's (behind a TLS proxy). */
let publicOrigin: string | undefined;
export function setPublicUrl(url: string | undefined): void {
  publicOrigin = url ? new URL(url).origin : undefined;
}

/** The token of a request: the bearer header, else the dashboard's session cookie. */
export function requestToken(req: FastifyRequest): string | undefined {
  if (req.headers.authorization !== undefined) return bearer.exec(req.headers.authorization)?.[1];
  const fromCookie = (req as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies?.[
    SESSION_COOKIE
  ];
  if (fromCookie === undefined || !tokenShape.test(fromCookie)) return undefined;
  // A state-changing request on the cookie must come from the room's own page (SameSite=Strict, and the Origin says so).
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `${req.protocol}://${req.headers.host}` && origin !== publicOrigin)
      return undefined;
  }
  return fromCookie;
}

/**
 * The caller's principal from the bearer token (or the session cookie). A missing, malformed,
 * unknown, revoked or expired token all get the same 401, so a response never says whether a
 * token exists.
 */
export async function authenticate(db: ControlDb, clock: Clock, req: FastifyRequest): Promise<Principal> {
  const token = requestToken(req);
  if (!token) throw unauthorized();
  const principal = await findPrincipalByToken(db, token, clock.now());
  if (!principal) throw unauthorized();
  return principal;
}

/** The partner of a partner admin; 403 for anyone else (what an admin does, it does for its own partner). */
export function requirePartnerAdmin(p: Principal, what: string): string {
  if (p.role !== 'admin' || !p.partnerId) throw forbidden(`only a partner admin may ${what}`);
  return p.partnerId;
}

/** 403 unless the principal holds one of the roles. */
export function requireRole(p: Principal, ...allowed: Role[]): void {
  if (!allowed.includes(p.role))
    throw forbidden(`the ${p.role} role may not do this; it needs ${allowed.join(' or ')}`);
}
