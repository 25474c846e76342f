import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { inTransaction } from '../platform/control-db.js';
import { notFound, problemResponses } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { appendAuditIn } from './audit-repository.js';
import { auditRequest, caller, openSession, roomOrigin } from './auth.js';
import {
  acceptInvitation,
  createInvitation,
  invitationInputSchema,
  invitationSchema,
  issuedInvitationSchema,
  listInvitations,
  revokeInvitation,
} from './invitations.js';
import { SignInError, type OidcSignIn } from './oidc.js';
import { endSessionsOfToken } from './session-repository.js';
import { whoSchema } from './session-schemas.js';
import { createPersonToken, findPersonToken, revokeToken, type Role } from './token-repository.js';

const FLOW_COOKIE = 'parity_oidc';

/**
 * How people sign in besides a pasted token: their partner's identity provider (OpenID Connect)
 * and invitations. Both end in a dashboard session anchored on a sign-in token of the person.
 */
export const identityRoutes: FastifyPluginAsync<{ room: Room; oidc: OidcSignIn | undefined }> = async (
  fastify,
  { room, oidc },
) => {
  const refusals = new RefusalBudget(REFUSALS_AUDITED);
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const partnerName = (id: string) => room.agreement().agreement.partners.find((p) => p.id === id)?.name ?? id;
  const who = (p: { name: string; role: Role; partnerId: string }) => ({
    name: p.name,
    role: p.role,
    partner: p.partnerId,
    partnerName: partnerName(p.partnerId),
  });

  app.get(
    '/v1/auth/providers',
    {
      config: { auth: 'none' },
      schema: {
        summary: "The partners' identity providers a person may sign in with",
        tags: ['dashboard'],
        response: {
          200: z.object({
            providers: z.array(
              z.object({ partner: z.string(), partnerName: z.string(), label: z.string(), loginUrl: z.string() }),
            ),
          }),
          ...problemResponses(500),
        },
      },
    },
    async () => ({
      providers: (oidc?.providers ?? []).map((p) => ({
        partner: p.partner,
        partnerName: partnerName(p.partner),
        label: p.label ?? partnerName(p.partner),
        loginUrl: `/v1/auth/oidc/${encodeURIComponent(p.partner)}/login`,
      })),
    }),
  );

  app.get(
    '/v1/auth/oidc/:partner/login',
    {
      config: { auth: 'none' },
      schema: {
        summary: "Sign in through a partner's identity provider (redirects there; authorization code with PKCE)",
        // A browser's navigation (302 to the provider), not an API call: in the README, not the OpenAPI.
        hide: true,
        tags: ['dashboard'],
        params: z.strictObject({ partner: z.string().max(63) }),
        response: problemResponses(400, 404, 503),
      },
    },
    async (req, reply) => {
      if (!oidc?.provider(req.params.partner))
        throw notFound(`no identity provider for ${JSON.stringify(req.params.partner.slice(0, 63))}`);
      try {
        const { flowId, url } = await oidc.start(
          req.params.partner,
          `${roomOrigin(room, req)}/v1/auth/oidc/${encodeURIComponent(req.params.partner)}/callback`,
          room.clock.now().getTime(),
          req.ip,
        );
        // Lax, not Strict: the provider sends the person back with a top-level navigation.
        void reply.setCookie(FLOW_COOKIE, flowId, {
          httpOnly: true,
          sameSite: 'lax',
          path: '/v1/auth/oidc',
          secure: roomOrigin(room, req).startsWith('https:'),
          maxAge: 600,
        });
        return reply.redirect(url.href, 302);
      } catch (e) {
        if (e instanceof SignInError) return reply.redirect(`/#signin-error=${e.reason}`, 303);
        throw e;
      }
    },
  );

  app.get(
    '/v1/auth/oidc/:partner/callback',
    {
      config: { auth: 'none' },
      schema: {
        summary: "Where a partner's identity provider sends the person back: signs them in and opens the dashboard",
        hide: true,
        tags: ['dashboard'],
        params: z.strictObject({ partner: z.string().max(63) }),
        querystring: z.record(z.string(), z.string().max(4096)),
      },
    },
    async (req, reply) => {
      const flowId = req.cookies[FLOW_COOKIE];
      void reply.clearCookie(FLOW_COOKIE, { path: '/v1/auth/oidc' });
      const now = room.clock.now();
      try {
        if (!oidc) throw new SignInError('flow', 'this room has no identity provider');
        const current = new URL(`${roomOrigin(room, req)}${req.url}`);
        const person = await oidc.finish(
          flowId,
          req.params.partner,
          current,
          room.agreement().agreement,
          now.getTime(),
        );
        // One sign-in token per person and role: a changed role (the groups changed) replaces it.
        // (Two callbacks of one person at once: the index lets one token through; the other finds it.)
        const signIn = () =>
          inTransaction(room.control.db, async (tx) => {
            const existing = await findPersonToken(tx, person.partner, person.email, 'oidc');
            if (existing && existing.role === person.role) return existing.id;
            if (existing) {
              await revokeToken(tx, existing.id, now);
              await endSessionsOfToken(tx, existing.id);
            }
            const id = await createPersonToken(
              tx,
              {
                partnerId: person.partner,
                role: person.role,
                name: person.email,
                origin: 'oidc',
                createdBy: person.issuer,
              },
              now,
            );
            await appendAuditIn(
              tx,
              {
                actor: id,
                partnerId: person.partner,
                action: 'token.oidc',
                target: id,
                details: { role: person.role, issuer: person.issuer, ...(existing ? { replaces: existing.id } : {}) },
              },
              now,
            );
            return id;
          });
        const tokenId = await signIn().catch((e: Error) => {
          if (/tokens_one_sign_in|unique/i.test(e.message)) return signIn();
          throw e;
        });
        await room.audit({
          actor: tokenId,
          partnerId: person.partner,
          action: 'session.login',
          details: { role: person.role, via: 'oidc', issuer: person.issuer },
        });
        await openSession(room, req, reply, tokenId);
        return reply.redirect('/#/', 303);
      } catch (e) {
        if (!(e instanceof SignInError)) throw e;
        // Someone the provider no longer gives a role (out of every group, off the committee) loses
        // the sign-in they had: its sessions end now, not at their limit.
        if (e.reason === 'role' && e.partner && e.email) {
          const gone = await findPersonToken(room.control.db, e.partner, e.email, 'oidc');
          if (gone)
            await inTransaction(room.control.db, async (tx) => {
              await revokeToken(tx, gone.id, now);
              await endSessionsOfToken(tx, gone.id);
              await appendAuditIn(
                tx,
                {
                  actor: 'sign-in',
                  partnerId: e.partner,
                  action: 'token.revoked',
                  target: gone.id,
                  details: { via: 'oidc', reason: 'role' },
                },
                now,
              );
            });
        }
        // Who tried is not known for sure: the reason, and where from — in the log of the partner
        // whose provider it went through (its admins see their people's refused sign-ins). A
        // callback no flow of this room started names no partner: logged, not audited (anyone
        // could write such entries without signing in).
        // Anyone may start a flow and come back with a junk code: at most REFUSALS_AUDITED entries a
        // minute per partner; the refusals past them are counted into the next entry written.
        const unaudited = e.partner ? refusals.admit(e.partner, now.getTime()) : undefined;
        if (e.partner && unaudited !== undefined)
          await room.audit({
            actor: 'anonymous',
            partnerId: e.partner,
            action: 'session.refused',
            details: {
              via: 'oidc',
              reason: e.reason,
              detail: e.message.slice(0, 300),
              ip: req.ip,
              ...(unaudited > 0 ? { unauditedBefore: unaudited } : {}),
            },
          });
        req.log.warn({ reason: e.reason, partner: e.partner }, 'sign-in refused'); // (the audit entry says why, for the partner's admins)
        return reply.redirect(`/#signin-error=${e.reason}`, 303);
      }
    },
  );

  app.post(
    '/v1/session/invitation',
    {
      config: { auth: 'none' },
      schema: {
        summary: 'Sign in with an invitation link (once; sets the session cookie)',
        tags: ['dashboard'],
        body: z.strictObject({
          code: z.string().regex(/^inv_[A-Za-z0-9_-]{43}$/, 'expected an invitation code (inv_…)'),
        }),
        response: { 200: whoSchema, ...problemResponses(400, 401, 410, 413, 415) },
      },
    },
    async (req, reply) => {
      const p = await acceptInvitation(room, req.body.code);
      await room.audit({
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: 'session.login',
        details: { role: p.role, via: 'invitation' },
      });
      await openSession(room, req, reply, p.tokenId);
      return who(p);
    },
  );

  app.post(
    '/v1/invitations',
    {
      schema: {
        summary: 'Invite a person of your partner with a role (a partner admin): a one-time link, shown once',
        tags: ['governance'],
        security: [{ bearer: [] }],
        body: invitationInputSchema,
        response: { 201: issuedInvitationSchema, ...problemResponses(400, 401, 403, 413, 415) },
      },
    },
    async (req, reply) =>
      reply.code(201).send(
        await createInvitation(room, caller(req), req.body, roomOrigin(room, req), {
          domains: caller(req).partnerId ? oidc?.provider(caller(req).partnerId!)?.domains : undefined,
        }),
      ),
  );

  app.get(
    '/v1/invitations',
    {
      schema: {
        summary: "Your partner's invitations and their state (a partner admin)",
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: z.object({ invitations: z.array(invitationSchema) }), ...problemResponses(401, 403) },
      },
    },
    async (req) => {
      const invitations = await listInvitations(room, caller(req));
      await auditRequest(room, req, { action: 'query.invitations', details: { returned: invitations.length } });
      return { invitations };
    },
  );

  app.delete(
    '/v1/invitations/:id',
    {
      schema: {
        summary: 'Withdraw an invitation not used yet (a partner admin)',
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: z.strictObject({
          id: z.string().regex(/^ivt_[A-Za-z0-9_-]{1,40}$/, 'expected an invitation id (ivt_…)'),
        }),
        response: { 200: invitationSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (req) => revokeInvitation(room, caller(req), req.params.id),
  );
};

/** Refused sign-ins a partner's audit log takes a minute; past them they are counted, not written. */
const REFUSALS_AUDITED = 30;

/** Per partner, how many refusals the current minute has audited, and how many it has not. */
class RefusalBudget {
  readonly #minutes = new Map<string, { start: number; written: number; unwritten: number }>();
  constructor(private readonly perMinute: number) {}

  /** Undefined: not to be written. Else how many went unwritten before it (then reset). */
  admit(partner: string, now: number): number | undefined {
    let m = this.#minutes.get(partner);
    if (!m || now - m.start >= 60_000) {
      const unwritten = m?.unwritten ?? 0;
      this.#minutes.set(partner, (m = { start: now, written: 0, unwritten }));
    }
    if (m.written >= this.perMinute) {
      m.unwritten++;
      return undefined;
    }
    m.written++;
    const before = m.unwritten;
    m.unwritten = 0;
    return before;
  }
}
