import { shareableAgreement } from '../platform/agreement-schema.js';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole, caller, auditRequest } from './auth.js';
import { canSee } from './access-policy.js';
import type { Room } from '../platform/room.js';
import { problemSchema } from '../platform/errors.js';
import {
  agreementResponseSchema,
  proposalSchema,
  proposalsResponseSchema,
  versionsResponseSchema,
} from './governance-schemas.js';
import { decide, getProposal, listProposals, listVersions, propose } from './proposal-service.js';

const idParam = z.object({ id: z.string().max(64) });
/** What a proposal's decision can answer besides the proposal: a JSON body, a token, a party, an open proposal. */
const errors = {
  400: problemSchema,
  401: problemSchema,
  403: problemSchema,
  404: problemSchema,
  409: problemSchema,
  413: problemSchema,
  415: problemSchema,
  500: problemSchema,
};

/** The agreement in force, its versions, and co-signed proposals to change it. */
export const governanceRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/v1/agreement',
    {
      schema: {
        summary: 'The agreement in force, with its version and digest',
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: agreementResponseSchema, 401: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const principal = caller(req);
      const a = room.agreement();
      await auditRequest(room, req, {
        action: 'agreement.read',
        target: `v${a.version}`,
      });
      // Need-to-know KPIs are left out for readers who may not see them: not even their definition
      // reaches such a reader. Admins, steering and the operator, who decide on or run the agreement, get it whole.
      const whole = principal.role === 'admin' || principal.role === 'steering' || principal.role === 'operator';
      const agreement = whole
        ? a.agreement
        : shareableAgreement(a.agreement, (k) => k.disclosure !== 'need_to_know' || canSee(principal, k));
      return {
        version: a.version,
        digest: a.digest,
        activatedAt: a.activatedAt?.toISOString() ?? null,
        agreement,
      };
    },
  );

  app.get(
    '/v1/agreement/versions',
    {
      schema: {
        summary: 'Every agreement version kept, newest first (which proposal made it, when it took effect)',
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: versionsResponseSchema, 401: problemSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'analyst', 'owner', 'steering', 'admin', 'operator');
      // Where the host keeps its files is the host's business: partners read "the host's file".
      const versions = (await listVersions(room)).map((v) =>
        p.role === 'operator' || v.proposal ? v : { ...v, source: "the host's agreement file" },
      );
      await auditRequest(room, req, {
        action: 'versions.read',
        details: { role: p.role },
      });
      return { versions };
    },
  );

  app.post(
    '/v1/agreement/proposals',
    {
      schema: {
        summary: "Propose a new agreement (a partner admin); it takes effect when every partner's admin has approved",
        tags: ['governance'],
        security: [{ bearer: [] }],
        body: z.strictObject({
          document: z
            .union([
              z.string().min(1).max(262_144, 'at most 256 KiB of text; an agreement needs a few'),
              z.record(z.string(), z.unknown()),
            ])
            .describe('the whole new agreement: an object, or its YAML/JSON text'),
          reason: z.string().trim().min(1, 'say why the agreement should change').max(2000),
          expiresInDays: z
            .number()
            .int()
            .min(1)
            .max(90)
            .optional()
            .describe('days until the proposal expires unapproved (default 14)'),
        }),
        response: {
          201: proposalSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          409: problemSchema,
          413: problemSchema,
          415: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      const view = await propose(room, p, req.body);
      return reply.code(201).header('location', `/v1/agreement/proposals/${view.id}`).send(view);
    },
  );

  app.get(
    '/v1/agreement/proposals',
    {
      schema: {
        summary: 'Recent proposals, newest first',
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: proposalsResponseSchema, 401: problemSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'admin', 'steering', 'operator');
      const proposals = await listProposals(room);
      await auditRequest(room, req, {
        action: 'proposals.read',
        details: { role: p.role, returned: proposals.length },
      });
      return { proposals };
    },
  );

  app.get(
    '/v1/agreement/proposals/:id',
    {
      schema: {
        summary: 'One proposal with its diff against the version it changes',
        tags: ['governance'],
        security: [{ bearer: [] }],
        params: idParam,
        response: {
          200: proposalSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'admin', 'steering', 'operator');
      const proposal = await getProposal(room, req.params.id);
      await auditRequest(room, req, {
        action: 'proposals.read',
        target: proposal.id,
        details: { role: p.role },
      });
      return proposal;
    },
  );

  for (const decision of ['approve', 'reject'] as const) {
    app.post(
      `/v1/agreement/proposals/:id/${decision}`,
      {
        schema: {
          summary:
            decision === 'approve'
              ? 'Approve a proposal for your partner (its admin); the last approval activates it'
              : 'Reject a proposal for your partner (its admin); it is closed',
          tags: ['governance'],
          security: [{ bearer: [] }],
          params: idParam,
          body:
            decision === 'approve'
              ? z.strictObject({ note: z.string().max(2000).optional() }).optional()
              : z.strictObject({ reason: z.string().trim().min(1, 'say why you reject it').max(2000) }),
          response: { 200: proposalSchema, ...errors },
        },
      },
      async (req) => {
        const p = caller(req);
        const body = req.body as { note?: string; reason?: string } | undefined;
        return decide(room, p, req.params.id, decision, body?.note ?? body?.reason, req.log);
      },
    );
  }
};
