import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import { problemSchema } from '../ingest/receipt-schema.js';
import { authenticate, requireRole } from '../platform/auth.js';
import { jsonColumn } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import { assertReader, canSee } from '../query/series-service.js';
import { AlertEngine } from './alert-engine.js';
import { ackSchema, isoDate, resolutionSchema } from './fact-sheet.js';
import {
  acknowledgeIncident,
  findIncident,
  incidentStates,
  listIncidents,
  resolveIncident,
  sheetOf,
} from './incident-service.js';
import { Notifier, webhookSecret } from './notifier.js';
import { listMessagesForPartner, listWebhookEndpoints } from './outbox-repository.js';

export interface Alerts {
  engine: AlertEngine;
  notifier: Notifier;
}

const running = new WeakMap<Room, Alerts>();

/** The room's alert engine and notifier, started once per room (none when PARITY_ALERTS=off). */
export async function startAlerts(
  room: Room,
  log: Pick<Logger, 'info' | 'warn' | 'error'>,
): Promise<Alerts | undefined> {
  if (!room.config.alerts) return undefined;
  let a = running.get(room);
  if (!a) {
    const notifier = new Notifier(room, log);
    a = { notifier, engine: new AlertEngine(room, notifier, log) };
    running.set(room, a);
    await notifier.start();
    a.engine.start();
  }
  return a;
}

export function alertsOf(room: Room): Alerts | undefined {
  return running.get(room);
}

export async function stopAlerts(room: Room): Promise<void> {
  const a = running.get(room);
  if (!a) return;
  running.delete(room);
  await a.engine.stop();
  await a.notifier.stop();
}

const idParam = z.strictObject({
  id: z.string().regex(/^inc_[A-Za-z0-9_-]{1,40}$/, 'expected an incident id (inc_…)'),
});
const sheetSchema = z.record(z.string(), z.unknown()).describe('the fact sheet: one template for every incident');

/** Incidents, their fact sheets, acknowledgement and resolution; kept notifications; webhook secrets. */
export const alertRoutes: FastifyPluginAsync<{ room: Room }> = async (fastify, { room }) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const kick = () => alertsOf(room)?.notifier.kick();

  app.get(
    '/v1/incidents',
    {
      schema: {
        summary: 'Incidents of the KPIs you may see, newest first',
        tags: ['alerts'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({
          state: z.enum([...incidentStates, 'active']).optional(),
          kpi: z.string().max(63).optional(),
          scope: z.string().max(63).optional(),
          kind: z.enum(['breach', 'stale']).optional(),
          from: isoDate.optional().describe('opened on or after this day (UTC)'),
          to: isoDate.optional().describe('opened on or before this day (UTC)'),
          limit: z.coerce.number().int().min(1).max(1000).default(200),
        }),
        response: {
          200: z.object({ incidents: z.array(sheetSchema) }),
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
        },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      const incidents = await listIncidents(room, p, req.query);
      await room.audit({
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: 'query.incidents',
        details: { role: p.role, filter: req.query, returned: incidents.length },
      });
      return { incidents: incidents as unknown as Record<string, unknown>[] };
    },
  );

  app.get(
    '/v1/incidents/:id',
    {
      schema: {
        summary: "An incident's fact sheet",
        tags: ['alerts'],
        security: [{ bearer: [] }],
        params: idParam,
        response: { 200: sheetSchema, 400: problemSchema, 401: problemSchema, 403: problemSchema, 404: problemSchema },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      const { row } = await findIncident(room, p, req.params.id);
      await room.audit({
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: 'query.incident',
        target: row.id,
        details: { role: p.role },
      });
      return sheetOf(room.agreement().agreement, row) as unknown as Record<string, unknown>;
    },
  );

  app.post(
    '/v1/incidents/:id/ack',
    {
      schema: {
        summary: 'Acknowledge an incident (its named owner, or steering)',
        tags: ['alerts'],
        security: [{ bearer: [] }],
        params: idParam,
        body: ackSchema.optional(),
        response: {
          200: sheetSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
        },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      return (await acknowledgeIncident(room, p, req.params.id, req.body?.note)) as unknown as Record<string, unknown>;
    },
  );

  app.post(
    '/v1/incidents/:id/resolve',
    {
      schema: {
        summary: 'Resolve an incident with a fact sheet (its named owner, or steering)',
        tags: ['alerts'],
        security: [{ bearer: [] }],
        params: idParam,
        body: resolutionSchema,
        response: {
          200: sheetSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          409: problemSchema,
        },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      return (await resolveIncident(room, p, req.params.id, req.body, kick)) as unknown as Record<string, unknown>;
    },
  );

  app.get(
    '/v1/notifications',
    {
      schema: {
        summary:
          "Notifications to your partner's people (or, for steering, to the committee), with their delivery state",
        tags: ['alerts'],
        security: [{ bearer: [] }],
        querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: {
          200: z.object({ notifications: z.array(z.record(z.string(), z.unknown())) }),
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
        },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      assertReader(p);
      const agreement = room.agreement().agreement;
      const visible = agreement.kpis.filter((k) => canSee(p, k)).map((k) => k.id);
      if (visible.length === 0) return { notifications: [] };
      const rows = await listMessagesForPartner(room.control.db, {
        kpis: visible,
        partnerId: p.partnerId,
        withSteering: p.role === 'steering',
        limit: req.query.limit,
      });
      const notifications = rows.map((r) => ({
        id: r.id,
        event: r.event,
        channel: r.channel,
        recipientName: r.recipient_name,
        state: r.state,
        attempts: r.attempts,
        createdAt: new Date(r.created_at).toISOString(),
        deliveredAt: r.delivered_at ? new Date(r.delivered_at).toISOString() : null,
        lastError: r.last_error,
        factSheet: jsonColumn<{ data: unknown }>(r.payload).data,
      }));
      await room.audit({
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: 'query.notifications',
        details: { role: p.role, returned: notifications.length },
      });
      return { notifications };
    },
  );

  app.get(
    '/v1/webhooks',
    {
      schema: {
        summary: "Your partner's webhook endpoints from the agreement, with their signing secrets (Standard Webhooks)",
        tags: ['alerts'],
        security: [{ bearer: [] }],
        response: {
          200: z.object({
            webhooks: z.array(
              z.object({
                url: z.string(),
                kpis: z.array(z.string()),
                secret: z.string(),
                disabledAt: z.string().nullable(),
              }),
            ),
          }),
          401: problemSchema,
          403: problemSchema,
        },
      },
    },
    async (req) => {
      const p = await authenticate(room.control.db, room.clock, req);
      requireRole(p, 'admin', 'owner');
      const byUrl = new Map<string, string[]>();
      // Only the KPIs the caller may see: an owner outside a need-to-know KPI does not learn of it here either.
      for (const k of room.agreement().agreement.kpis) {
        if (!canSee(p, k)) continue;
        const hook = p.partnerId ? k.owners[p.partnerId]?.webhook : undefined;
        if (hook) byUrl.set(hook, [...(byUrl.get(hook) ?? []), k.id]);
      }
      const disabled = await listWebhookEndpoints(room.control.db, [...byUrl.keys()]);
      await room.audit({
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: 'webhooks.secrets_read',
        details: { endpoints: byUrl.size },
      });
      return {
        webhooks: [...byUrl].map(([url, kpis]) => {
          const d = disabled.find((x) => x.url === url)?.disabled_at;
          return {
            url,
            kpis,
            secret: webhookSecret(room.secret, url),
            disabledAt: d ? new Date(d).toISOString() : null,
          };
        }),
      };
    },
  );
};
