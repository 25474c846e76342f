import { endSessionsOfToken } from './session-repository.js';
import { grantsMoreThanRole } from './access-policy.js';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses, problemSchema } from '../platform/errors.js';
import { requirePartnerAdmin, caller, auditRequest } from './auth.js';
import { badRequest, conflict, forbidden, notFound } from '../platform/errors.js';
import { inTransaction } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import { appendAuditIn } from './audit-repository.js';
import { issuedTokenSchema, rotatedTokenSchema, tokenSchema, tokensResponseSchema } from './governance-schemas.js';
import {
  createToken,
  findToken,
  findTokenForUpdate,
  findReplacement,
  listTokens,
  revokeToken,
  setTokenExpiry,
  tokenView,
  type Role,
} from './token-repository.js';

/** Roles a partner admin hands out; steering and operator tokens are issued by the room's host (CLI). */
export const adminIssuedRoles = ['ingest', 'analyst', 'owner', 'admin'] as const satisfies readonly Role[];
const MAX_OVERLAP_HOURS = 168;

const idParam = z.object({ id: z.string().max(64) });

/** A token of the admin's own partner; others' tokens are not found (their ids say nothing). */
async function ownToken(room: Room, partner: string, id: string) {
  const row = await findToken(room.control.db, id);
  if (!row || row.partner_id !== partner)
    throw notFound(`no token ${JSON.stringify(id.slice(0, 40))} of partner ${partner}`);
  return row;
}

/** Whether a name grants more than the role would (services/governance/access-policy.ts). */
function privilegedName(room: Room, partner: string, role: Role, name: string): boolean {
  return grantsMoreThanRole(room.agreement().agreement, partner, role, name);
}

/** Partner admins manage their own partner's tokens: issue, list, revoke, rotate. */
export const tokenRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/tokens',
    {
      schema: {
        summary: "Your partner's tokens and users (a partner admin); never the tokens themselves",
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: tokensResponseSchema, 401: problemSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const p = caller(req);
      const partner = requirePartnerAdmin(p, "manage its partner's tokens");
      const now = room.clock.now();
      const tokens = (await listTokens(room.control.db, partner)).map((r) => tokenView(r, now));
      await auditRequest(room, req, {
        partnerId: partner,
        action: 'token.listed',
        details: { returned: tokens.length },
      });
      return { tokens };
    },
  );

  app.post(
    '/v1/tokens',
    {
      schema: {
        summary:
          "Issue a token for your partner (a partner admin): a system's ingest token or a user's token named by their e-mail",
        tags: ['governance'],
        security: [{ bearer: [] }],
        body: z.strictObject({
          role: z.enum(adminIssuedRoles),
          name: z
            .string()
            .trim()
            .min(1)
            .max(200)
            // Printed by `parity token list` and in the dashboard: no terminal escapes, no line breaks.
            .refine((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s), { message: 'control characters are not allowed' })
            .describe("the user's e-mail, or the system's name"),
          expiresAt: z.iso.datetime({ offset: true }).optional(),
        }),
        response: {
          201: issuedTokenSchema,
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      const partner = requirePartnerAdmin(p, "manage its partner's tokens");
      const now = room.clock.now();
      const expiresAt = req.body.expiresAt ? new Date(req.body.expiresAt) : null;
      if (expiresAt && expiresAt <= now) throw badRequest('expiresAt: must be in the future', 'body.expiresAt');
      if (privilegedName(room, partner, req.body.role, req.body.name))
        throw forbidden(
          `body.name: ${req.body.name} is a steering member, named on a need-to-know KPI or another KPI owner; the room's host issues that token`,
          'body.name',
        );
      const { token, id } = await inTransaction(room.control.db, async (tx) => {
        const made = await createToken(
          tx,
          { partnerId: partner, role: req.body.role, name: req.body.name, expiresAt, createdBy: p.tokenId },
          now,
        );
        await appendAuditIn(
          tx,
          {
            actor: p.tokenId,
            partnerId: partner,
            action: 'token.created',
            target: made.id,
            details: { role: req.body.role, expiresAt: expiresAt?.toISOString() ?? null },
          },
          now,
        );
        return made;
      });
      const row = (await findToken(room.control.db, id))!;
      return reply.code(201).send({ ...tokenView(row, now), token });
    },
  );

  app.delete(
    '/v1/tokens/:id',
    {
      schema: {
        summary: "Revoke one of your partner's tokens at once (a partner admin)",
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: idParam,
        response: {
          200: tokenSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const p = caller(req);
      const partner = requirePartnerAdmin(p, "manage its partner's tokens");
      const now = room.clock.now();
      await ownToken(room, partner, req.params.id);
      await inTransaction(room.control.db, async (tx) => {
        if (!(await revokeToken(tx, req.params.id, now))) throw conflict(`token ${req.params.id} is already revoked`);
        // The dashboard sessions signed in with it end with it (a session would refuse it anyway).
        await endSessionsOfToken(tx, req.params.id);
        await appendAuditIn(
          tx,
          { actor: p.tokenId, partnerId: partner, action: 'token.revoked', target: req.params.id },
          now,
        );
      });
      return tokenView((await findToken(room.control.db, req.params.id))!, now);
    },
  );

  app.post(
    '/v1/tokens/:id/rotate',
    {
      schema: {
        summary:
          'Rotate a token without downtime: a new token now, the old one valid for overlapHours more (a partner admin)',
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: idParam,
        body: z
          .strictObject({
            overlapHours: z
              .number()
              .min(0)
              .max(MAX_OVERLAP_HOURS)
              .optional()
              .describe('how long both tokens work (default 24)'),
          })
          .optional(),
        response: {
          201: rotatedTokenSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
          413: problemSchema,
          415: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      const partner = requirePartnerAdmin(p, "manage its partner's tokens");
      const now = room.clock.now();
      const old = await ownToken(room, partner, req.params.id);
      // What an admin may not issue, it may not renew either: the host rotates those.
      if (
        !(adminIssuedRoles as readonly string[]).includes(old.role) ||
        privilegedName(room, partner, old.role as Role, old.name)
      ) {
        throw forbidden(
          `token ${old.id} (${old.role}, ${old.name}) is issued by the room's host; ask the host to rotate it`,
        );
      }
      // A person's sign-in (identity provider, invitation) has no secret to renew: it is revoked,
      // and the person signs in again.
      if (old.origin !== 'token')
        throw conflict(`token ${old.id} is ${old.name}'s sign-in (${old.origin}): revoke it; they sign in again`);
      const overlapEnds = new Date(now.getTime() + (req.body?.overlapHours ?? 24) * 3_600_000);
      const issued = await inTransaction(room.control.db, async (tx) => {
        // Checked under a row lock: two rotations at once make one replacement, not two.
        const current = await findTokenForUpdate(tx, old.id);
        if (tokenView(current, now).state !== 'live')
          throw conflict(`token ${old.id} is ${tokenView(current, now).state}; issue a new one instead`);
        // Live through its overlap, it is rotated once: a second rotation would mint a second heir.
        const heir = await findReplacement(tx, current.id);
        if (heir)
          throw conflict(`token ${old.id} was rotated already (its replacement is ${heir.id}); rotate that one`);
        const oldExpiry = current.expires_at ? new Date(current.expires_at) : null;
        const made = await createToken(
          tx,
          {
            partnerId: partner,
            role: current.role as Role,
            name: current.name,
            expiresAt: oldExpiry,
            createdBy: p.tokenId,
            replaces: current.id,
          },
          now,
        );
        const validUntil = oldExpiry && oldExpiry < overlapEnds ? oldExpiry : overlapEnds;
        await setTokenExpiry(tx, current.id, validUntil);
        await appendAuditIn(
          tx,
          {
            actor: p.tokenId,
            partnerId: partner,
            action: 'token.rotated',
            target: current.id,
            details: { replacement: made.id, oldValidUntil: validUntil.toISOString() },
          },
          now,
        );
        return made;
      });
      const [row, prev] = [(await findToken(room.control.db, issued.id))!, (await findToken(room.control.db, old.id))!];
      return reply.code(201).send({ ...tokenView(row, now), token: issued.token, previous: tokenView(prev, now) });
    },
  );
};
