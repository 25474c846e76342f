import { randomBytes } from 'node:crypto';
import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import type { ControlTx, IncidentRow, NewOutboxRow } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import {
  documentEventSchema,
  type AlertEvent,
  type DocumentEvent,
  type DrillEvent,
  type DrillSheet,
  type GoalEvent,
  type GoalNotice,
  type IncidentEvent,
  type MailDocument,
} from './alert-schemas.js';
import { factSheet, responsiblePartners, type FactSheet } from './fact-sheet.js';
import { createOutboxMessages, listDisabledWebhookUrls } from './outbox-repository.js';

export type { AlertEvent, GoalEvent, GoalNotice };

/** Who a notification goes to; partnerId null is the steering committee. */
export interface Recipient {
  partnerId: string | null;
  name: string;
  email: string;
  webhook?: string | undefined;
}

/** The root-cause owners answering for a scope (for a stale feed: that partner's own owner only). */
export function ownerRecipients(kpi: Kpi, scope: string): Recipient[] {
  return responsiblePartners(kpi, scope).map((p) => ({ partnerId: p, ...kpi.owners[p]! }));
}

export function steeringRecipients(agreement: Agreement): Recipient[] {
  return agreement.steering.map((s) => ({ partnerId: null, name: s.name, email: s.email }));
}

/** The body every channel carries: a Standard Webhooks envelope around a fact sheet or a goal notice. */
export type NotificationPayload =
  | { type: IncidentEvent; timestamp: string; data: FactSheet }
  | { type: GoalEvent; timestamp: string; data: GoalNotice }
  | { type: DocumentEvent; timestamp: string; data: MailDocument }
  | { type: DrillEvent; timestamp: string; data: DrillSheet };

export function isDrillPayload(p: NotificationPayload): p is Extract<NotificationPayload, { type: DrillEvent }> {
  return p.type.startsWith('incident.drill.');
}

export function isGoalPayload(p: NotificationPayload): p is Extract<NotificationPayload, { type: GoalEvent }> {
  return p.type === 'goal.milestone_missed' || p.type === 'goal.exit_criterion_met';
}

export function isDocumentPayload(p: NotificationPayload): p is Extract<NotificationPayload, { type: DocumentEvent }> {
  return (documentEventSchema.options as readonly string[]).includes(p.type);
}

export const messageId = () => `msg_${randomBytes(16).toString('base64url')}`;

/**
 * Writes the notifications of one incident event in the caller's transaction, so an incident
 * change and its notifications land together or not at all.
 */
export async function enqueue(
  tx: ControlTx,
  room: Room,
  opts: {
    incident: IncidentRow;
    kpi: Kpi;
    event: IncidentEvent;
    recipients: Recipient[];
    now: Date;
    /** An escalation names the steering committee's chair. */
    chair?: { name: string; email: string };
  },
): Promise<number> {
  const payload: NotificationPayload = {
    type: opts.event,
    timestamp: opts.now.toISOString(),
    data: { ...factSheet(opts.incident, opts.kpi), ...(opts.chair ? { chair: opts.chair } : {}) },
  };
  return enqueueMessages(tx, room, { payload, about: { incident_id: opts.incident.id }, ...opts });
}

/**
 * Writes one event's messages in the caller's transaction: each recipient gets an e-mail (kept
 * for the dashboard when the room has no SMTP_URL) and, where agreed, a webhook (one per URL).
 */
export async function enqueueMessages(
  tx: ControlTx,
  room: Room,
  opts: {
    payload: NotificationPayload;
    about:
      | { incident_id: string }
      | { goal_id: string }
      | { review_month: string }
      | { comment_id: string }
      | { action_id: string }
      | { drill_id: string };
    recipients: Recipient[];
    now: Date;
  },
): Promise<number> {
  const smtp = Boolean(room.config.smtpUrl);
  const disabled = new Set(await listDisabledWebhookUrls(tx));
  const rows: NewOutboxRow[] = [];
  const seenHooks = new Set<string>();
  for (const r of opts.recipients) {
    const base = {
      incident_id: null,
      ...opts.about,
      event: opts.payload.type,
      partner_id: r.partnerId,
      recipient_name: r.name,
      payload: JSON.stringify(opts.payload),
      attempts: 0,
      next_attempt_at: opts.now,
      created_at: opts.now,
    };
    rows.push({
      ...base,
      id: messageId(),
      channel: 'email',
      recipient: r.email,
      state: smtp ? 'pending' : 'kept',
      delivered_at: smtp ? null : opts.now,
    });
    if (r.webhook && !seenHooks.has(r.webhook)) {
      seenHooks.add(r.webhook);
      const off = disabled.has(r.webhook);
      rows.push({
        ...base,
        id: messageId(),
        channel: 'webhook',
        recipient: r.webhook,
        state: off ? 'disabled' : 'pending',
        last_error: off ? 'endpoint disabled after answering 410 Gone' : null,
      });
    }
  }
  if (rows.length) await createOutboxMessages(tx, rows);
  return rows.length;
}
