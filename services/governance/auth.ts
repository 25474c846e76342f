import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../platform/clock.js';
import type { ControlDb } from '../platform/control-db.js';
import { badRequest, forbidden, unauthorized } from '../platform/errors.js';
import type { AuditEntry, Room } from '../platform/room.js';
import { findPrincipalByToken, type Principal, type Role } from './token-repository.js';
import { createSession, findPrincipalBySession, type SessionLimits } from './session-repository.js';

/**
 * How a route authenticates: `required` (the default under /v1) answers 401 without a valid
 * credential; `optional` lets an anonymous caller through as `principal: null` (public KPIs) but
 * still refuses a bad credential; `none` leaves the credential alone (sign-in, sign-out, health).
 */
export type AuthMode = 'required' | 'optional' | 'none';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, from its credential only (never the payload); null when anonymous or not checked. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    auth?: AuthMode;
  }
}

// The scheme is case-insensitive (RFC 9110 §11.1): `bearer x` is `Bearer x`.
const bearer = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/i;
const tokenShape = /^[A-Za-z0-9._~+/=-]{1,512}$/;

/** The dashboard's session cookie: a session id (never the token), httpOnly and SameSite=Strict. */
export const SESSION_COOKIE = 'parity_session';

/** A request's credential: a bearer token, or the id of a dashboard session. */
export type Credential = { bearer: string } | { session: string };

/**
 * The credential of a request: the bearer header, else the dashboard's session cookie. A
 * state-changing request on the cookie must come from the room's own page: this request's
 * origin, or `publicOrigin` (PARITY_PUBLIC_URL's, behind a TLS proxy), shown by its Origin
 * header or, without one, by `Sec-Fetch-Site: same-origin`.
 */
export function requestCredential(req: FastifyRequest, publicOrigin?: string): Credential | undefined {
  if (req.headers.authorization !== undefined) {
    const token = bearer.exec(req.headers.authorization)?.[1];
    return token === undefined ? undefined : { bearer: token };
  }
  const fromCookie = (req as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies?.[
    SESSION_COOKIE
  ];
  if (fromCookie === undefined || !tokenShape.test(fromCookie)) return undefined;
  if (req.method !== 'GET' && req.method !== 'HEAD' && !fromOwnPage(req, publicOrigin)) return undefined;
  return { session: fromCookie };
}

/**
 * Proof of a same-origin request: its Origin, or (a client that sends none) the browser's
 * Sec-Fetch-Site. A request with neither is refused: it could come from anywhere.
 */
export function fromOwnPage(req: FastifyRequest, publicOrigin?: string): boolean {
  const origin = req.headers.origin;
  return origin !== undefined
    ? origin === `${req.protocol}://${req.headers.host}` || origin === publicOrigin
    : req.headers['sec-fetch-site'] === 'same-origin';
}

/**
 * The caller's principal from the bearer token (or the session cookie). A missing, malformed,
 * unknown, revoked or expired token all get the same 401, so a response never says whether a
 * token exists.
 */
export async function authenticate(
  db: ControlDb,
  clock: Clock,
  req: FastifyRequest,
  opts: { publicOrigin?: string | undefined; sessions: SessionLimits },
): Promise<Principal> {
  const credential = requestCredential(req, opts.publicOrigin);
  if (!credential) throw unauthorized();
  const principal =
    'bearer' in credential
      ? await findPrincipalByToken(db, credential.bearer, clock.now())
      : await findPrincipalBySession(db, credential.session, clock.now(), opts.sessions);
  if (!principal) throw unauthorized();
  return principal;
}

/**
 * The one authentication hook: sets `request.principal` for every route by its `config.auth`
 * (routes under /v1 require a credential unless they say otherwise). It runs on the request's
 * line and headers (onRequest), before its body is read or parsed: an anonymous or bad credential
 * gets its 401 without the room holding a byte of the body, so a stranger cannot tie up memory
 * with stalled bodies (README, "Bad input").
 */
export function installAuthentication(app: FastifyInstance, room: Room): void {
  const publicOrigin = room.config.publicUrl ? new URL(room.config.publicUrl).origin : undefined;
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    const mode = req.routeOptions.config.auth ?? (req.routeOptions.url?.startsWith('/v1/') ? 'required' : 'none');
    if (mode === 'none') return;
    if (
      mode === 'optional' &&
      requestCredential(req, publicOrigin) === undefined &&
      req.headers.authorization === undefined
    )
      return;
    req.principal = await authenticate(room.control.db, room.clock, req, {
      publicOrigin,
      sessions: room.config.sessions,
    });
  });
}

/** The authenticated caller of a route that requires a credential (the hook has checked it). */
export function caller(req: FastifyRequest): Principal {
  if (!req.principal) throw unauthorized();
  return req.principal;
}

/** Writes a request's audit entry: the actor and partner come from its credential. */
export function auditRequest(
  room: Room,
  req: FastifyRequest,
  entry: Omit<AuditEntry, 'actor' | 'partnerId'> & { partnerId?: string | null },
): Promise<void> {
  const p = req.principal;
  return room.audit({
    actor: p?.tokenId ?? 'anonymous',
    partnerId: entry.partnerId === undefined ? (p?.partnerId ?? null) : entry.partnerId,
    action: entry.action,
    ...(entry.target === undefined ? {} : { target: entry.target }),
    ...(entry.details === undefined ? {} : { details: entry.details }),
  });
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

/**
 * Opens a dashboard session for a token and sets its cookie: an httpOnly, SameSite=Strict cookie
 * holding the session's id, never a token (sign-out, revocation and the idle and absolute limits
 * end it). Every way of signing in ends here.
 */
export async function openSession(
  room: Room,
  req: FastifyRequest,
  reply: FastifyReply,
  tokenId: string,
): Promise<void> {
  const secure = req.protocol === 'https' || (room.config.publicUrl?.startsWith('https:') ?? false);
  const session = await createSession(room.control.db, tokenId, room.clock.now(), room.config.sessions);
  void reply.setCookie(SESSION_COOKIE, session, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure,
    maxAge: Math.floor(room.config.sessions.absoluteMs / 1000),
  });
}

/**
 * Where the room is, as its people reach it: PARITY_PUBLIC_URL, else this request's origin —
 * a 400 naming `headers.host` when its Host is no host name (`a b`, a port past 65535).
 */
export function roomOrigin(room: Room, req: FastifyRequest): string {
  if (room.config.publicUrl) return room.config.publicUrl;
  let url: URL | undefined;
  try {
    url = new URL(`${req.protocol}://${req.host}`);
  } catch {
    url = undefined;
  }
  if (!url || url.pathname !== '/' || url.search || url.hash || url.username || url.password)
    throw badRequest('headers.host: not a host name and port; set PARITY_PUBLIC_URL behind a proxy', 'headers.host');
  return url.origin;
}
