import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { appendAuditIn } from '../governance/audit-repository.js';
import { canSee, findVisibleKpi, isNamedOwner } from '../governance/access-policy.js';
import type { Principal } from '../governance/token-repository.js';
import { durationMs, type Kpi } from '../platform/agreement-schema.js';
import { inTransaction, type ControlTx, type DrillRow } from '../platform/control-db.js';
import { badRequest, conflict, forbidden, notFound } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { chairAt } from '../platform/steering-chair.js';
import { dueAfter, maintenanceWindows, windowAt } from '../platform/maintenance.js';
import type { DrillEvent, DrillSheet } from './alert-schemas.js';
import {
  createDrill,
  findDrill,
  findRunningDrill,
  listDrills,
  listDrillsDueForEscalation,
  markDrillAcknowledged,
  markDrillEnded,
  markDrillEscalated,
  markDrillNotified,
} from './drill-repository.js';
import { responsiblePartners } from './fact-sheet.js';
import { enqueueMessages, ownerRecipients, steeringRecipients, type Recipient } from './outbox.js';

// Escalation drills (issue #15): the steering committee practises the chain a breach starts — the
// owner told, acknowledgement awaited, the committee (and its chair) told when it does not come —
// on a simulated incident. A drill lives in its own table: no KPI value, band state or incident is
// read for it or written by it; every message, audit entry and page marks it a drill.

const MIN_ACK_MS = 60_000;
const MAX_ACK_MS = 7 * 86_400_000;

export const drillInputSchema = z.strictObject({
  kpi: z.string().min(1).max(63),
  scope: z.string().min(1).max(63).default('combined').describe("'combined' or a partner's id"),
  ackWithin: z
    .string()
    .max(40)
    .optional()
    .describe("the acknowledgement deadline, an ISO-8601 duration from PT1M to P7D (default: the KPI's ackWithin)"),
});
export type DrillInput = z.infer<typeof drillInputSchema>;

const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string).toISOString());
const seconds = (from: unknown, to: unknown) =>
  to === null || to === undefined
    ? null
    : (new Date(to as string).getTime() - new Date(from as string).getTime()) / 1000;

function drillState(r: DrillRow): DrillSheet['state'] {
  if (r.acknowledged_at) return 'acknowledged';
  if (r.ended_at) return 'ended';
  return r.escalated_at ? 'escalated' : 'running';
}

export function drillSheet(room: Room, r: DrillRow, kpi: Kpi | undefined): DrillSheet {
  const agreement = room.agreement().agreement;
  const chair = r.escalated_to ? agreement.steering.find((s) => s.email === r.escalated_to) : undefined;
  return {
    drill: true,
    id: r.id,
    state: drillState(r),
    kpi: { id: r.kpi, title: kpi?.title ?? r.kpi, unit: kpi?.unit ?? '' },
    scope: r.scope,
    startedBy: r.started_by,
    startedAt: iso(r.started_at)!,
    ackDueAt: iso(r.ack_due_at)!,
    notifiedAt: iso(r.notified_at),
    acknowledgedAt: iso(r.acknowledged_at),
    acknowledgedBy: r.acknowledged_by,
    escalatedAt: iso(r.escalated_at),
    chair: r.escalated_to ? { name: chair?.name ?? r.escalated_to, email: r.escalated_to } : null,
    endedAt: iso(r.ended_at),
    endedBy: r.ended_by,
    owners: kpi ? responsiblePartners(kpi, r.scope).map((p) => ({ partner: p, name: kpi.owners[p]!.name })) : [],
    result: {
      notifySeconds: seconds(r.started_at, r.notified_at),
      acknowledgeSeconds: seconds(r.started_at, r.acknowledged_at),
      escalateSeconds: seconds(r.started_at, r.escalated_at),
    },
    snapshot: room.duck.snapshots.latest,
  };
}

const kpiOf = (room: Room, id: string) => room.agreement().agreement.kpis.find((k) => k.id === id);

async function tell(
  tx: ControlTx,
  room: Room,
  r: DrillRow,
  event: DrillEvent,
  recipients: Recipient[],
  now: Date,
): Promise<number> {
  return enqueueMessages(tx, room, {
    payload: { type: event, timestamp: now.toISOString(), data: drillSheet(room, r, kpiOf(room, r.kpi)) },
    about: { drill_id: r.id },
    recipients,
    now,
  });
}

function audit(tx: ControlTx, actor: Principal | 'alerts', action: string, r: DrillRow, at: Date, extra = {}) {
  return appendAuditIn(
    tx,
    {
      actor: actor === 'alerts' ? 'alerts' : actor.tokenId,
      partnerId: actor === 'alerts' ? null : actor.partnerId,
      action,
      target: r.id,
      details: { drill: true, kpi: r.kpi, scope: r.scope, ...extra },
    },
    at,
  );
}

/** A steering member starts a drill on a KPI and scope: its owners are told now, as for a breach. */
export async function startDrill(room: Room, p: Principal, input: DrillInput): Promise<DrillSheet> {
  if (p.role !== 'steering') throw forbidden('only a steering member starts a drill');
  const agreement = room.agreement().agreement;
  const kpi = findVisibleKpi(agreement, p, input.kpi);
  if (input.scope !== 'combined') {
    if (!agreement.partners.some((x) => x.id === input.scope))
      throw badRequest(`expected combined or a partner id; ${input.scope} is neither`, 'body.scope');
    if (kpi.breakdown !== 'per_partner')
      throw badRequest(`${kpi.id} is agreed combined only: it has no partner's own figure`, 'body.scope');
  }
  let ackMs: number;
  try {
    ackMs = durationMs(input.ackWithin ?? kpi.escalation.ackWithin);
  } catch {
    throw badRequest('expected an ISO-8601 duration such as PT5M', 'body.ackWithin');
  }
  if (!(ackMs >= MIN_ACK_MS && ackMs <= MAX_ACK_MS))
    throw badRequest(
      `a drill waits between one minute (PT1M) and seven days (P7D) for acknowledgement${
        input.ackWithin ? '' : `; ${kpi.id}'s own ackWithin (${kpi.escalation.ackWithin}) does not: give ackWithin`
      }`,
      'body.ackWithin',
    );
  const recipients = ownerRecipients(kpi, input.scope);
  if (!recipients.length) throw badRequest(`${kpi.id} names no owner for ${input.scope}`, 'body.scope');
  const now = room.clock.now();
  const running = () => conflict(`a drill on ${kpi.id} (${input.scope}) is still running: end it first`);
  if (await findRunningDrill(room.control.db, kpi.id, input.scope)) throw running();
  const row: DrillRow = {
    id: `drl_${randomBytes(12).toString('base64url')}`,
    kpi: kpi.id,
    scope: input.scope,
    started_by: p.name,
    started_at: now,
    ack_due_at: new Date(now.getTime() + ackMs),
    notified_at: null,
    acknowledged_at: null,
    acknowledged_by: null,
    escalated_at: null,
    escalated_to: null,
    ended_at: null,
    ended_by: null,
  };
  try {
    await inTransaction(room.control.db, async (tx) => {
      await createDrill(tx, row);
      await audit(tx, p, 'drill.started', row, now, { ackDueAt: row.ack_due_at.toISOString() });
      await tell(tx, room, row, 'incident.drill.opened', recipients, now);
      // Without SMTP the message is kept for the dashboard: the owner counts as told now.
      if (!room.config.smtpUrl && (await markDrillNotified(tx, row.id, now))) {
        row.notified_at = now;
        await audit(tx, 'alerts', 'drill.notified', row, now, { channel: 'dashboard' });
      }
    });
  } catch (e) {
    // Two starts at once: the index of running drills (one per KPI and scope) lets one through.
    if (/drills_one_running|unique/i.test(String((e as Error).message))) throw running();
    throw e;
  }
  return drillSheet(room, row, kpi);
}

/** Whether the caller may see a drill: a reader of its KPI (of one since removed: steering only). */
const maySee = (p: Principal, kpi: Kpi | undefined) => (kpi ? canSee(p, kpi) : p.role === 'steering');

/**
 * Every drill the caller may see, newest first (those on a need-to-know KPI only for its
 * readers; filtered in the query, so hidden ones never shorten a reader's page).
 */
export async function listDrillSheets(room: Room, p: Principal, limit: number): Promise<DrillSheet[]> {
  const readable = room
    .agreement()
    .agreement.kpis.filter((k) => canSee(p, k))
    .map((k) => k.id);
  const rows = await listDrills(room.control.db, limit, p.role === 'steering' ? undefined : readable);
  return rows.flatMap((r) => {
    const kpi = kpiOf(room, r.kpi);
    return maySee(p, kpi) ? [drillSheet(room, r, kpi)] : [];
  });
}

async function visibleDrill(room: Room, p: Principal, id: string): Promise<{ row: DrillRow; kpi: Kpi | undefined }> {
  const row = await findDrill(room.control.db, id);
  const kpi = row && kpiOf(room, row.kpi);
  if (!row || !maySee(p, kpi)) throw notFound(`no drill ${JSON.stringify(id.slice(0, 40))} for you`);
  return { row, kpi };
}

export async function readDrill(room: Room, p: Principal, id: string): Promise<DrillSheet> {
  const { row, kpi } = await visibleDrill(room, p, id);
  return drillSheet(room, row, kpi);
}

/**
 * The drill's owner — the KPI's named owner for a partner answering for its scope — acknowledges:
 * the drill ends there, its time to acknowledge recorded. Nobody else can (that time is the
 * owner's answer or nothing); a steering member ends a drill without it.
 */
export async function acknowledgeDrill(room: Room, p: Principal, id: string): Promise<DrillSheet> {
  const { row, kpi } = await visibleDrill(room, p, id);
  const owner =
    kpi !== undefined &&
    p.role === 'owner' &&
    isNamedOwner(p, kpi) &&
    responsiblePartners(kpi, row.scope).includes(p.partnerId!);
  if (!owner) throw forbidden("only the drill's owner acknowledges it (a steering member may end it)");
  const now = room.clock.now();
  const done = await inTransaction(room.control.db, async (tx) => {
    const r = await markDrillAcknowledged(tx, id, p.name, now);
    if (!r) return undefined;
    await audit(tx, p, 'drill.acknowledged', r, now);
    const to = r.escalated_at ? steeringRecipients(room.agreement().agreement) : [];
    if (to.length) await tell(tx, room, r, 'incident.drill.ended', to, now);
    return r;
  });
  if (!done) throw conflict(`drill ${id} has ended already`);
  return drillSheet(room, done, kpi);
}

/** A steering member ends a drill without acknowledgement (its owners are told it is over). */
export async function endDrill(room: Room, p: Principal, id: string): Promise<DrillSheet> {
  const { row, kpi } = await visibleDrill(room, p, id);
  if (p.role !== 'steering') throw forbidden('only a steering member ends a drill');
  const now = room.clock.now();
  const done = await inTransaction(room.control.db, async (tx) => {
    const r = await markDrillEnded(tx, id, p.name, now);
    if (!r) return undefined;
    await audit(tx, p, 'drill.ended', r, now);
    if (kpi) await tell(tx, room, r, 'incident.drill.ended', ownerRecipients(kpi, row.scope), now);
    return r;
  });
  if (!done) throw conflict(`drill ${id} has ended already`);
  return drillSheet(room, done, kpi);
}

/**
 * Drills nobody acknowledged in time go to the steering committee, naming its chair, once (a
 * watcher of the scheduled evaluation, as escalation of incidents is).
 */
export async function escalateDueDrills(room: Room): Promise<number> {
  const now = room.clock.now();
  const agreement = room.agreement().agreement;
  let sent = 0;
  for (const d of await listDrillsDueForEscalation(room.control.db, now)) {
    // As for an incident: time inside a maintenance window of the partner concerned does not count.
    const windows = maintenanceWindows(agreement, d.scope === 'combined' ? null : d.scope);
    const started = new Date(d.started_at);
    const due = dueAfter(windows, started, new Date(d.ack_due_at).getTime() - started.getTime());
    if (windowAt(windows, now) || due > now) continue;
    const chair = chairAt(agreement, now);
    sent += await inTransaction(room.control.db, async (tx) => {
      const r = await markDrillEscalated(tx, d.id, chair.email, now);
      if (!r) return 0;
      await audit(tx, 'alerts', 'drill.escalated', r, now, { chair: chair.email });
      return tell(tx, room, r, 'incident.drill.escalated', steeringRecipients(agreement), now);
    });
  }
  return sent;
}
