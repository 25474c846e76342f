import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import { badRequest, problemResponses, problemSchema } from '../platform/errors.js';
import { requireRole, caller, auditRequest } from '../governance/auth.js';
import { jsonColumn } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import { assertReader, canSee } from '../governance/access-policy.js';
import type { SeriesReader } from '../query/series-reader.js';
import { AlertEngine } from './alert-engine.js';
import {
  factSheetSchema,
  incidentsResponseSchema,
  notificationsResponseSchema,
  webhooksResponseSchema,
  webhookViewSchema,
  rotateWebhookSchema,
  type WebhookView,
  type AlertEvent,
  type FactSheet,
  type GoalNotice,
  type DrillSheet,
} from './alert-schemas.js';
import { ackSchema, isoDate, resolutionSchema } from './fact-sheet.js';
import {
  acknowledgeIncident,
  findIncident,
  incidentStates,
  listIncidents,
  resolveIncident,
  sheetOf,
} from './incident-service.js';
import { Notifier, webhookSecretsNow } from './notifier.js';
import { listWebhookSecretStates, rotateWebhookSecret } from './webhook-secret-repository.js';
import type { Principal } from '../governance/token-repository.js';
import { isDocumentPayload, isDrillPayload, isGoalPayload, type NotificationPayload } from './outbox.js';
import { listMessagesForPartner, listWebhookEndpoints } from './outbox-repository.js';

export interface Alerts {
  engine: AlertEngine;
  notifier: Notifier;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The room's alert engine and notifier (none when PARITY_ALERTS=off); the assembly starts and stops them. */
export function createAlerts(room: Room, reader: SeriesReader, log: Pick<Logger, 'info' | 'warn' | 'error'>): Alerts {
  const notifier = new Notifier(room, log);
  const engine = new AlertEngine(room, reader, notifier, log);
  return {
    engine,
    notifier,
    start: async () => {
      await notifier.start();
      engine.start();
    },
    stop: async () => {
      await engine.stop();
      await notifier.stop();
    },
  };
}

/** A message's payload as the notifications list shows it: a fact sheet or a goal notice. */
function payloadView(p: NotificationPayload): {
  factSheet: FactSheet | null;
  goalNotice: GoalNotice | null;
  drill: DrillSheet | null;
} {
  const none = { factSheet: null, goalNotice: null, drill: null };
  if (isDocumentPayload(p)) return none;
  if (isDrillPayload(p)) return { ...none, drill: p.data };
  return isGoalPayload(p) ? { ...none, goalNotice: p.data } : { ...none, factSheet: p.data };
}

const idParam = z.strictObject({
  id: z.string().regex(/^inc_[A-Za-z0-9_-]{1,40}$/, 'expected an incident id (inc_…)'),
});

/** Incidents, their fact sheets, acknowledgement and resolution; kept notifications; webhook secrets. */
export const alertRoutes: FastifyPluginAsync<{ room: Room; alerts: Alerts | undefined }> = async (
  fastify,
  { room, alerts },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const kick = () => alerts?.notifier.kick();

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
          200: incidentsResponseSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const p = caller(req);
      const incidents = await listIncidents(room, p, req.query);
      await auditRequest(room, req, {
        action: 'query.incidents',
        details: { role: p.role, filter: req.query, returned: incidents.length },
      });
      return { incidents };
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
        response: {
          200: factSheetSchema,
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
      const { row } = await findIncident(room, p, req.params.id);
      await auditRequest(room, req, {
        action: 'query.incident',
        target: row.id,
        details: { role: p.role },
      });
      return sheetOf(room.agreement().agreement, row);
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
          200: factSheetSchema,
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
    async (req) => {
      const p = caller(req);
      return acknowledgeIncident(room, p, req.params.id, req.body?.note);
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
          200: factSheetSchema,
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
    async (req) => {
      const p = caller(req);
      return resolveIncident(room, p, req.params.id, req.body, kick);
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
          200: notificationsResponseSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req) => {
      const p = caller(req);
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
      const readable = new Set(visible);
      const notifications = rows
        .map((r) => ({
          id: r.id,
          event: r.event as AlertEvent,
          channel: r.channel,
          recipientName: r.recipient_name,
          state: r.state,
          attempts: r.attempts,
          createdAt: new Date(r.created_at).toISOString(),
          deliveredAt: r.delivered_at ? new Date(r.delivered_at).toISOString() : null,
          lastError: r.last_error,
          ...payloadView(jsonColumn<NotificationPayload>(r.payload)),
        }))
        // A goal notice whose exit criterion names a KPI the reader may not see stays out (its
        // e-mail went to the goal's owners, who may).
        .filter((n) => !n.goalNotice?.criterion || readable.has(n.goalNotice.criterion.kpi));
      await auditRequest(room, req, {
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
        response: { 200: webhooksResponseSchema, 401: problemSchema, 403: problemSchema, 500: problemSchema },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'admin', 'owner');
      const endpoints = await webhookViews(p);
      await auditRequest(room, req, {
        action: 'webhooks.secrets_read',
        details: { endpoints: endpoints.length },
      });
      return { webhooks: endpoints };
    },
  );

  app.post(
    '/v1/webhooks/rotate',
    {
      schema: {
        summary:
          "Rotate one of your partner's webhook signing secrets; the old one keeps signing beside the new one for the overlap",
        tags: ['alerts'],
        security: [{ bearer: [] }],
        body: rotateWebhookSchema,
        response: {
          200: webhookViewSchema,
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (req) => {
      const p = caller(req);
      requireRole(p, 'admin');
      const partner = p.partnerId!;
      const endpoints = webhookEndpoints(p);
      if (!endpoints.has(req.body.url))
        throw badRequest("url: not one of your partner's webhook endpoints in the agreement", 'body.url');
      const now = room.clock.now();
      const overlapHours = req.body.overlapHours ?? 24;
      await rotateWebhookSecret(
        room.control.db,
        partner,
        req.body.url,
        now,
        new Date(now.getTime() + overlapHours * 3_600_000),
      );
      await auditRequest(room, req, {
        action: 'webhooks.secret_rotated',
        // The URL is the partner's own setting in the shared agreement; the secrets are never logged.
        details: { url: req.body.url, overlapHours },
      });
      return (await webhookViews(p, new Map([[req.body.url, endpoints.get(req.body.url)!]])))[0]!;
    },
  );

  /** The caller's partner's endpoints in the agreement, each with the KPIs (the caller may see) it serves. */
  function webhookEndpoints(p: Principal): Map<string, string[]> {
    const byUrl = new Map<string, string[]>();
    // Only the KPIs the caller may see: an owner outside a need-to-know KPI does not learn of it here either.
    for (const k of room.agreement().agreement.kpis) {
      if (!canSee(p, k)) continue;
      const hook = p.partnerId ? k.owners[p.partnerId]?.webhook : undefined;
      if (hook) byUrl.set(hook, [...(byUrl.get(hook) ?? []), k.id]);
    }
    return byUrl;
  }

  /** Those endpoints with their secrets as they sign now, and whether a 410 disabled them. */
  async function webhookViews(p: Principal, byUrl = webhookEndpoints(p)): Promise<WebhookView[]> {
    if (!p.partnerId || byUrl.size === 0) return [];
    const disabled = await listWebhookEndpoints(room.control.db, [...byUrl.keys()]);
    const states = await listWebhookSecretStates(room.control.db, p.partnerId);
    const now = room.clock.now();
    return [...byUrl].map(([url, kpis]) => {
      const d = disabled.find((x) => x.url === url)?.disabled_at;
      const s = webhookSecretsNow(
        room.secret,
        p.partnerId,
        url,
        states.find((x) => x.url === url),
        now,
      );
      return {
        url,
        kpis,
        secret: s.current,
        previousSecret: s.previous,
        previousUntil: s.previousUntil?.toISOString() ?? null,
        disabledAt: d ? new Date(d).toISOString() : null,
      };
    });
  }
};
