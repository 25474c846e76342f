import { findWebhookSecretState } from './webhook-secret-repository.js';
import { createHmac } from 'node:crypto';
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import { appendAuditIn } from '../governance/audit-repository.js';
import { canonicalJson } from '../platform/canonical-json.js';
import { inTransaction, jsonColumn, type OutboxRow } from '../platform/control-db.js';
import { Lifecycle } from '../platform/lifecycle.js';
import type { Room } from '../platform/room.js';
import { markDrillNotified } from './drill-repository.js';
import { renderDrillEmail, renderEmail, renderGoalEmail } from './fact-sheet.js';
import { markIncidentNotified } from './incident-repository.js';
import { isDocumentPayload, isDrillPayload, isGoalPayload, type NotificationPayload } from './outbox.js';
import {
  claimDueMessages,
  countDueMessages,
  disableWebhookEndpoint,
  markMessageDelivered,
  markMessageGivenUp,
  requeueSendingMessages,
  scheduleMessageRetry,
} from './outbox-repository.js';

/** Standard Webhooks' schedule after a failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (then give up, about a day in). */
export const RETRY_DELAYS_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
export const WEBHOOK_TIMEOUT_MS = 15_000;
// New notifications kick the notifier at once; the poll only finds retries coming due (≥ 5 s apart).
const POLL_MS = 1_000;
/** A claimed row not settled by then (its outcome could not be recorded) is due again. */
const LEASE_MS = 4 * WEBHOOK_TIMEOUT_MS;
const MAX_IN_FLIGHT = 16;

/**
 * The signing secret of one partner's endpoint, `whsec_` + base64 of 32 bytes derived from the
 * room secret, the partner and the URL: two partners given the same URL get different secrets,
 * so neither can forge what the room sends the other.
 */
export function webhookSecret(roomSecret: Buffer, partnerId: string | null, url: string, generation = 0): string {
  // Generation 0 is the secret before any rotation; each rotation derives the next.
  const key = `webhook\u0000${partnerId ?? '(steering)'}\u0000${url}${generation > 0 ? `\u0000${generation}` : ''}`;
  return `whsec_${createHmac('sha256', roomSecret).update(key).digest('base64')}`;
}

/**
 * The secrets an endpoint signs with now: its generation's, and during a rotation's overlap the
 * one before (receivers verify against either: Standard Webhooks sends one signature per secret).
 */
export function webhookSecretsNow(
  roomSecret: Buffer,
  partnerId: string | null,
  url: string,
  state: { generation: number; previous_until: Date | string } | undefined,
  now: Date,
): { current: string; previous: string | null; previousUntil: Date | null } {
  const generation = state?.generation ?? 0;
  const until = state ? new Date(state.previous_until) : null;
  const overlapping = until !== null && until > now && generation > 0;
  return {
    current: webhookSecret(roomSecret, partnerId, url, generation),
    previous: overlapping ? webhookSecret(roomSecret, partnerId, url, generation - 1) : null,
    previousUntil: overlapping ? until : null,
  };
}

/** The `webhook-signature` header: one `v1,…` signature per secret, space-separated. */
export function signatureHeader(secrets: readonly string[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => signWebhook(s, id, timestamp, body)).join(' ');
}

/** Standard Webhooks signature: v1,base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)). */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

type Outcome = { ok: true } | { ok: false; gone?: boolean; error: string };

/**
 * Delivers the outbox: claims due rows, sends each over its channel, and records the outcome
 * durably; a failure is retried on the schedule with the same webhook-id. Rows a crash left
 * in flight are sent again on start (the receiver deduplicates by webhook-id).
 */
export class Notifier {
  readonly #room: Room;
  readonly #log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** The mail transport once the first e-mail opened it (#transport), until stop() closes it. */
  #mail: Promise<Transporter> | null = null;
  /** Deliveries under way in this process, by outbox id. */
  readonly #inFlight = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | null = null;
  #again = false;

  constructor(room: Room, log: Pick<Logger, 'info' | 'warn' | 'error'>) {
    this.#room = room;
    this.#log = log;
  }

  /** Starts delivering, once however often asked; again after stop() has resolved (its first e-mail opens a new mail transport). */
  async start(): Promise<void> {
    if (!this.#lifecycle.begin()) return;
    this.#again = false;
    try {
      // This process owns the room: what a crash left in flight is due now (same ids; receivers dedupe).
      await requeueSendingMessages(this.#room.control.db, this.#room.clock.now());
    } catch (err) {
      this.#lifecycle.abandon();
      throw err;
    }
    if (this.#lifecycle.stopped) return; // stopped meanwhile
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.kick(), POLL_MS);
    this.#timer.unref();
    this.kick();
  }

  /** Looks for due notifications now (after an enqueue) instead of at the next poll. */
  kick(): void {
    if (this.#lifecycle.stopped) return;
    if (this.#polling) {
      this.#again = true;
      return;
    }
    this.#polling = this.#poll()
      .catch((err: unknown) => this.#log.error({ err }, 'notifier: polling the outbox failed'))
      .finally(() => {
        this.#polling = null;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /** Resolves when nothing is due and nothing is in flight (tests, benchmarks). */
  async settle(): Promise<void> {
    for (;;) {
      if (this.#polling) await this.#polling;
      if (this.#inFlight.size) await Promise.all(this.#inFlight.values());
      const due = await countDueMessages(this.#room.control.db, this.#room.clock.now());
      if (due === 0 && !this.#polling && this.#inFlight.size === 0) return;
      this.kick();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops after the deliveries under way; callers while it runs share the one stop. */
  stop(): Promise<void> {
    return this.#lifecycle.stop(() => this.#stop());
  }

  async #stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#polling) await this.#polling;
    await Promise.allSettled(this.#inFlight.values());
    const mail = this.#mail;
    this.#mail = null;
    (await mail?.catch(() => null))?.close();
  }

  /**
   * The mail transport, opened with the first e-mail since start (nodemailer loads then, not
   * with the room: most rooms send none for hours); null without SMTP_URL.
   */
  #transport(): Promise<Transporter> | null {
    const url = this.#room.config.smtpUrl;
    if (!url) return null;
    if (!this.#mail) {
      const opening = import('nodemailer').then((m) => m.default.createTransport(url));
      // A transport that failed to open is opened again by the next e-mail, and never left unhandled.
      opening.catch(() => {
        if (this.#mail === opening) this.#mail = null;
      });
      this.#mail = opening;
    }
    return this.#mail;
  }
  readonly #lifecycle = new Lifecycle('notifier');

  async #poll(): Promise<void> {
    const free = MAX_IN_FLIGHT - this.#inFlight.size;
    if (free <= 0) return;
    const now = this.#room.clock.now();
    const busy = [...this.#inFlight.keys()];
    // Pending rows that are due, and claimed rows whose lease ran out without an outcome.
    const rows = await inTransaction(this.#room.control.db, (tx) =>
      claimDueMessages(tx, { now, limit: free, exclude: busy, leaseUntil: new Date(now.getTime() + LEASE_MS) }),
    );
    for (const row of rows) {
      const p: Promise<void> = this.#deliver({ ...row, attempts: row.attempts + 1 })
        .catch((err: unknown) =>
          this.#log.error(
            { err, notification: row.id },
            'notifier: recording a delivery failed; it is retried when its lease ends',
          ),
        )
        .finally(() => {
          this.#inFlight.delete(row.id);
          this.kick();
        });
      this.#inFlight.set(row.id, p);
    }
  }

  async #deliver(row: OutboxRow): Promise<void> {
    const payload = jsonColumn<NotificationPayload>(row.payload);
    const outcome =
      row.channel === 'webhook' ? await this.#sendWebhook(row, payload) : await this.#sendEmail(row, payload);
    const now = this.#room.clock.now();
    const db = this.#room.control.db;
    const audit = {
      actor: 'notifier',
      partnerId: row.partner_id,
      target: row.incident_id ?? row.goal_id ?? row.review_month ?? row.comment_id ?? row.action_id ?? row.drill_id,
    };
    const details = {
      notification: row.id,
      channel: row.channel,
      event: row.event,
      attempts: row.attempts,
      // The KPIs a message is about, so the audit log shows the entry only to those who may read them.
      ...(isDrillPayload(payload) ? { drill: true } : {}),
      kpis: isGoalPayload(payload)
        ? [payload.data.kpi.id, ...(payload.data.criterion ? [payload.data.criterion.kpi] : [])]
        : isDocumentPayload(payload)
          ? (payload.data.kpis ?? [])
          : [payload.data.kpi.id],
    };
    if (outcome.ok) {
      // Rows first, the audit chain last — the order every writer keeps (an incident's or a drill's
      // owner acting on it locks its row, then appends): two orders would deadlock.
      await inTransaction(db, async (tx) => {
        await markMessageDelivered(tx, row.id, now);
        const incidentNotified =
          row.event === 'incident.opened' &&
          row.incident_id !== null &&
          (await markIncidentNotified(tx, row.incident_id, { notified_at: now, updated_at: now }));
        const drillNotified =
          row.event === 'incident.drill.opened' &&
          row.drill_id !== null &&
          (await markDrillNotified(tx, row.drill_id, now));
        await appendAuditIn(tx, { ...audit, action: 'notification.delivered', details }, now);
        if (incidentNotified)
          await appendAuditIn(
            tx,
            { ...audit, action: 'incident.notified', details: { channel: row.channel, kpis: details.kpis } },
            now,
          );
        if (drillNotified)
          await appendAuditIn(
            tx,
            { ...audit, action: 'drill.notified', details: { drill: true, kpis: details.kpis, channel: row.channel } },
            now,
          );
      });
      return;
    }
    if (outcome.gone) {
      await inTransaction(db, async (tx) => {
        await markMessageGivenUp(tx, row.id, 'disabled', outcome.error);
        await disableWebhookEndpoint(tx, row.recipient, now, '410 Gone');
        await appendAuditIn(tx, { ...audit, action: 'notification.disabled', details }, now);
      });
      this.#log.warn({ notification: row.id }, 'notifier: webhook endpoint answered 410 Gone; disabled');
      return;
    }
    const delay = RETRY_DELAYS_MS[row.attempts - 1];
    if (delay === undefined) {
      await inTransaction(db, async (tx) => {
        await markMessageGivenUp(tx, row.id, 'failed', outcome.error);
        await appendAuditIn(
          tx,
          { ...audit, action: 'notification.failed', details: { ...details, error: outcome.error } },
          now,
        );
      });
      this.#log.error(
        { notification: row.id, attempts: row.attempts },
        `notifier: gave up on a ${row.channel} notification: ${outcome.error}`,
      );
      return;
    }
    await scheduleMessageRetry(db, row.id, outcome.error, new Date(now.getTime() + delay));
    this.#log.warn(
      { notification: row.id, attempts: row.attempts, retryInMs: delay },
      `notifier: ${row.channel} delivery failed: ${outcome.error}`,
    );
  }

  async #sendWebhook(row: OutboxRow, payload: NotificationPayload): Promise<Outcome> {
    const body = canonicalJson(payload);
    // The timestamp is transport time (receivers check it against their own clock), not the room's clock.
    const timestamp = Math.floor(Date.now() / 1000);
    const state = row.partner_id
      ? await findWebhookSecretState(this.#room.control.db, row.partner_id, row.recipient)
      : undefined;
    const secrets = webhookSecretsNow(this.#room.secret, row.partner_id, row.recipient, state, this.#room.clock.now());
    try {
      const res = await fetch(row.recipient, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Parity-Notifier/1',
          'webhook-id': row.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signatureHeader(
            secrets.previous ? [secrets.current, secrets.previous] : [secrets.current],
            row.id,
            timestamp,
            body,
          ),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true };
      return { ok: false, gone: res.status === 410, error: `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return {
        ok: false,
        error:
          e.name === 'TimeoutError'
            ? `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s`
            : (e.cause?.code ?? e.message).slice(0, 200),
      };
    }
  }

  async #sendEmail(row: OutboxRow, payload: NotificationPayload): Promise<Outcome> {
    const transport = this.#transport();
    if (!transport) return { ok: false, error: 'SMTP_URL is not set' };
    const mail = isDocumentPayload(payload)
      ? payload.data
      : isGoalPayload(payload)
        ? renderGoalEmail(payload.type, payload.data, this.#room.config.publicUrl)
        : isDrillPayload(payload)
          ? renderDrillEmail(payload.type, payload.data, this.#room.config.publicUrl)
          : renderEmail(payload.type, payload.data, this.#room.config.publicUrl);
    try {
      await (
        await transport
      ).sendMail({
        from: this.#room.config.mailFrom,
        to: { name: row.recipient_name, address: row.recipient },
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: `<${row.id}@parity>`,
        headers: {
          ...(row.incident_id ? { 'X-Parity-Incident': row.incident_id } : {}),
          ...(row.goal_id ? { 'X-Parity-Goal': row.goal_id } : {}),
          ...(row.review_month ? { 'X-Parity-Review': row.review_month } : {}),
          ...(row.comment_id ? { 'X-Parity-Comment': row.comment_id } : {}),
          ...(row.action_id ? { 'X-Parity-Action': row.action_id } : {}),
          ...(row.drill_id ? { 'X-Parity-Drill': row.drill_id } : {}),
          'X-Parity-Snapshot': String(payload.data.snapshot),
        },
      });
      return { ok: true };
    } catch (err) {
      return { ok: false, error: (err as Error).message.slice(0, 200) };
    }
  }
}
