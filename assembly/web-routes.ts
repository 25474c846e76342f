import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { findPrincipalByToken, type Role } from '../services/governance/token-repository.js';
import { endSession, findPrincipalBySession } from '../services/governance/session-repository.js';
import { problemResponses, problemSchema } from '../services/platform/errors.js';
import { caller, fromOwnPage, openSession, SESSION_COOKIE, auditRequest } from '../services/governance/auth.js';
import { forbidden, Problem } from '../services/platform/errors.js';
import { packageRoot } from '../services/platform/paths.js';
import { signedOutSchema, whoSchema } from '../services/governance/session-schemas.js';
import type { Room } from '../services/platform/room.js';

/** Where the built dashboard lives (vite build web → web/dist). */
export function webDist(): string {
  return join(packageRoot(), 'web', 'dist');
}

/**
 * The dashboard at / (the Vite build, no CDN) and its sign-in: a user token entered once is
 * kept in an httpOnly, SameSite=Strict cookie; `DELETE /v1/session` signs out.
 */
export const webRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  const describe = (p: { name: string; role: Role; partnerId: string | null }) => ({
    name: p.name,
    role: p.role,
    partner: p.partnerId,
    partnerName: room.agreement().agreement.partners.find((x) => x.id === p.partnerId)?.name ?? null,
  });

  app.post(
    '/v1/session',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Sign in to the dashboard with a user token (sets an httpOnly session cookie)',
        tags: ['dashboard'],
        body: z.strictObject({ token: z.string().min(1).max(512) }),
        response: {
          200: whoSchema,
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (req, reply) => {
      const principal = /^[A-Za-z0-9._~+/=-]+$/.test(req.body.token)
        ? await findPrincipalByToken(room.control.db, req.body.token, room.clock.now())
        : undefined;
      if (!principal) {
        // A refused sign-in is remembered (who tried is unknown: never the token, only where from).
        await room.audit({ actor: 'anonymous', partnerId: null, action: 'session.refused', details: { ip: req.ip } });
        throw new Problem(401, 'Unauthorized', 'this token is unknown, revoked or expired', { field: 'body.token' });
      }
      if (principal.role === 'ingest')
        throw forbidden('an ingest token is for partner systems; sign in with a user token');
      await auditRequest(room, req, {
        action: 'session.login',
        details: { role: principal.role },
      });
      await openSession(room, req, reply, principal.tokenId);
      return describe(principal);
    },
  );

  app.get(
    '/v1/session',
    {
      schema: {
        summary: 'Who the session (or bearer token) belongs to',
        tags: ['dashboard'],
        response: { 200: whoSchema, 401: problemSchema, 500: problemSchema },
      },
    },
    async (req) => describe(caller(req)),
  );

  app.delete(
    '/v1/session',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Sign out (clears the session cookie)',
        tags: ['dashboard'],
        response: { 204: signedOutSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req, reply) => {
      const session = req.cookies[SESSION_COOKIE];
      // Like every other change made on the cookie, only from the room's own page (auth.ts).
      const publicOrigin = room.config.publicUrl ? new URL(room.config.publicUrl).origin : undefined;
      if (session !== undefined && !fromOwnPage(req, publicOrigin))
        throw forbidden("sign out from the room's own page: this request shows no same-origin Origin");
      const principal = session
        ? await findPrincipalBySession(room.control.db, session, room.clock.now(), room.config.sessions)
        : undefined;
      if (session) await endSession(room.control.db, session);
      if (principal)
        await room.audit({ actor: principal.tokenId, partnerId: principal.partnerId, action: 'session.logout' });
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.code(204).send(null);
    },
  );

  const dist = webDist();
  if (existsSync(join(dist, 'index.html'))) {
    await app.register(fastifyStatic, {
      root: dist,
      prefix: '/',
      index: 'index.html',
      wildcard: false,
      cacheControl: false,
      setHeaders: (res, path) =>
        res.header('cache-control', path.endsWith('.html') ? 'no-cache' : 'public, max-age=31536000, immutable'),
    });
  } else {
    app.get('/', { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type('text/plain; charset=utf-8')
        .send('The dashboard is not built: run `npm run build` (npm install and npm start do it for you).\n'),
    );
  }
};
