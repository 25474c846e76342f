import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../platform/errors.js';
import { requireRole, caller, auditRequest } from './auth.js';
import { jsonColumn } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import { listAuditEntries, verifyAuditChain } from './audit-repository.js';
import { auditPageSchema, auditVerifySchema, transparencyContent, type JsonValue } from './governance-schemas.js';
import { resolveMonth, transparencyCsv, transparencyReport } from './transparency.js';
import { canSee } from './access-policy.js';
import { listKpiIdsOfAllVersions } from './agreement-repository.js';
import { readCaller, type ReadGate } from '../query/read-gate.js';

/** Roles that read the whole log (it holds no values): the parity-staffed committee and the neutral host. */
const wholeLog = new Set(['steering', 'operator']);

/** GET /v1/audit and /v1/audit/verify: the hash-chained log of every access and change. */
/** Every KPI id any version named, read once per room and version in force (versions only grow). */
const everAgreed = new WeakMap<Room['control'], { version: number; ids: Promise<Set<string>> }>();
function kpiIdsEverAgreed(room: Room): Promise<Set<string>> {
  const version = room.agreement().version;
  let known = everAgreed.get(room.control);
  if (known?.version !== version) {
    const ids = listKpiIdsOfAllVersions(room.control.db);
    known = { version, ids };
    everAgreed.set(room.control, known);
    // A failed read is not kept: the next request reads again.
    ids.catch(() => everAgreed.delete(room.control));
  }
  return known.ids;
}

export const auditRoutes: FastifyPluginAsync<{ room: Room; gate: ReadGate }> = async (fastify, { room, gate }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/audit',
    {
      schema: {
        summary:
          "Audit entries about your partner's own actions and the shared ones (the room's, agreement changes; all of them for steering and the operator); never values",
        tags: ['governance'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({
          after: z.coerce
            .number()
            .int()
            .min(0)
            .max(Number.MAX_SAFE_INTEGER)
            .optional()
            .describe('entries after this sequence number'),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
          action: z
            .string()
            .regex(/^[a-z._]{1,60}$/, 'expected an action or its prefix, such as query. or token.created')
            .optional(),
        }),
        response: {
          200: auditPageSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'analyst', 'owner', 'admin', 'steering', 'operator');
      const whole = wholeLog.has(p.role);
      // Others read their own partner's entries and the shared ones (see listAuditEntries).
      const rows = await listAuditEntries(room.control.db, {
        after: req.query.after ?? 0,
        limit: req.query.limit,
        scope: whole ? 'all' : { partnerId: p.partnerId },
        action: req.query.action,
      });
      const all = rows.map((r) => ({
        seq: Number(r.seq),
        at: new Date(r.at).toISOString(),
        actor: r.actor,
        partner: r.partner_id,
        action: r.action,
        target: r.target,
        details: jsonColumn<Record<string, JsonValue>>(r.details),
        prevHash: r.prev_hash,
        hash: r.hash,
      }));
      // Need-to-know KPIs the reader may not see stay out, as everywhere: not even their ids. So do
      // KPIs a later version removed (they may have been need-to-know): every KPI any version named
      // but those the reader may read now (a red team read a removed need-to-know KPI's incidents).
      const visible = new Set(
        room
          .agreement()
          .agreement.kpis.filter((k) => canSee(p, k))
          .map((k) => k.id),
      );
      const hidden = whole
        ? new Set<string>()
        : new Set([...(await kpiIdsEverAgreed(room))].filter((id) => !visible.has(id)));
      const mentions = ({ target, details: d }: (typeof all)[number]) =>
        [
          target,
          d['kpi'],
          (d['filter'] as Record<string, unknown> | undefined)?.['kpi'],
          ...(Array.isArray(d['kpis']) ? d['kpis'] : []),
          ...Object.keys((d['perKpi'] as object | undefined) ?? {}), // entries written before counts were dropped
        ].some((k) => typeof k === 'string' && hidden.has(k));
      const entries = hidden.size === 0 ? all : all.filter((e) => !mentions(e));
      await auditRequest(room, req, {
        action: 'audit.read',
        details: {
          role: p.role,
          after: req.query.after ?? 0,
          action: req.query.action ?? null,
          returned: entries.length,
        },
      });
      return { entries, next: rows.length === req.query.limit ? Number(rows.at(-1)!.seq) : null };
    },
  );

  app.get(
    '/v1/audit/verify',
    {
      schema: {
        summary: 'Recompute the audit hash chain; the first broken link if any',
        tags: ['governance'],
        security: [{ bearer: [] }],
        response: { 200: auditVerifySchema, 401: problemSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'analyst', 'owner', 'admin', 'steering', 'operator');
      const result = await verifyAuditChain(room.control.db);
      await auditRequest(room, req, {
        action: 'audit.verified',
        details: { role: p.role, ...result },
      });
      return result;
    },
  );

  app.get(
    '/v1/transparency',
    {
      schema: {
        summary:
          'The metadata report of a month: batches, points, freshness, reads per KPI by partner and role, suppressed cells, incidents, notifications, agreement changes — counts and times only',
        tags: ['governance'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({
          month: z
            .string()
            .max(7)
            .optional()
            .describe("YYYY-MM in the partnership's time zone (default: this month so far)"),
          format: z.enum(['json', 'csv']).default('json'),
        }),
        response: {
          200: { content: transparencyContent },
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      requireRole(p, 'analyst', 'owner', 'admin', 'steering', 'operator');
      const month = resolveMonth(req.query.month, room);
      const report = await transparencyReport(room, month, p, (read) => gate.run(readCaller(req), read));
      await auditRequest(room, req, {
        action: 'transparency.read',
        details: { role: p.role, month, format: req.query.format },
      });
      if (req.query.format === 'csv') {
        return reply
          .type('text/csv; charset=utf-8')
          .header(
            'content-disposition',
            `attachment; filename="parity-transparency-${report.partnership}-${month}.csv"`,
          )
          .send(transparencyCsv(report)); // a string is sent as it is
      }
      return reply
        .header('content-disposition', `inline; filename="parity-transparency-${report.partnership}-${month}.json"`)
        .send(report);
    },
  );
};
