import { z } from 'zod';
import { documentEventSchema } from '../alerts/alert-schemas.js';
import { enqueueMessages } from '../alerts/outbox.js';
import { canSee } from '../governance/access-policy.js';
import type { Principal } from '../governance/token-repository.js';
import { shareableAgreement, stages, type Agreement } from '../platform/agreement-schema.js';
import { isMonth, localToday } from '../platform/calendar.js';
import { inTransaction, type ActionRow, type RetroItemRow } from '../platform/control-db.js';
import { badRequest, conflict, forbidden, notFound, Problem } from '../platform/errors.js';
import { escapeHtml } from '../platform/html.js';
import type { Room } from '../platform/room.js';
import {
  claimOverdueNotice,
  countActionsOf,
  createAction,
  createRetroItem,
  findAction,
  listIncidentsWithUntrackedActions,
  listActions,
  listOverdueUnnotified,
  listRetroItems,
  markActionDone,
} from './action-repository.js';
import { auditAs, iso, lockWriterBudget, mayReceive, newId, people, withinWriteBudget } from './feedback-service.js';
import type { ActionView, Retrospective } from './feedback-schemas.js';

/** The open actions one partner's users may have recorded at once. */
export const MAX_OPEN_ACTIONS = 200;
/** The actions one partner's users may record in 24 hours. */
export const ACTIONS_PER_DAY = 20;
/** The most actions a list of the tracker holds: every partner's open actions, and more. */
const LISTED_ACTIONS = 5000;

/** A retrospective is of a month (YYYY-MM) or of a stage (proof_of_concept, field_test, rollout). */
export const retroPeriod = z
  .string()
  .max(20)
  .refine((s) => isMonth(s) || (stages as readonly string[]).includes(s), {
    message: `expected a month (YYYY-MM) or a stage (${stages.join(', ')})`,
  });

function actionView(r: ActionRow, today: string): ActionView {
  return {
    id: r.id,
    source: r.source,
    kpi: r.kpi,
    description: r.description,
    owner: { partner: r.owner_partner, name: r.owner_name, email: r.owner_email },
    due: r.due,
    state: r.state,
    overdue: r.state === 'open' && r.due < today,
    doneAt: r.done_at ? iso(r.done_at) : null,
    doneBy: r.done_by,
  };
}

const todayOf = (room: Room) => localToday(room.clock.now(), room.agreement().agreement.partnership.timezone);

/** Who an action's owner is: a person of the partnership by e-mail or by name, else the name alone. */
/**
 * The people an action may name, as every reader of it may know them: those of the shared KPIs
 * (and of the KPI an incident's action is about, whose readers alone see that action) — never a
 * person known to the room only through a need-to-know KPI.
 */
function knownTo(agreement: Agreement, kpi: string | null): Agreement {
  return shareableAgreement(agreement, (k) => k.disclosure !== 'need_to_know' || k.id === kpi);
}

function ownerOf(agreement: Agreement, owner: string): Pick<ActionRow, 'owner_partner' | 'owner_name' | 'owner_email'> {
  const known = people(agreement);
  const byEmail = known.get(owner.toLowerCase());
  if (byEmail) return { owner_partner: byEmail.partnerId, owner_name: byEmail.name, owner_email: owner.toLowerCase() };
  for (const [email, p] of known)
    if (p.name.toLowerCase() === owner.toLowerCase())
      return { owner_partner: p.partnerId, owner_name: p.name, owner_email: email };
  return { owner_partner: null, owner_name: owner, owner_email: null };
}

/**
 * Copies the actions of incident fact sheets into the tracker, once each (`act_<incident>_<n>`):
 * they are followed up like a retrospective's decisions.
 */
export async function syncIncidentActions(room: Room): Promise<void> {
  const agreement = room.agreement().agreement;
  const rows = await listIncidentsWithUntrackedActions(room.control.db);
  if (!rows.length) return;
  const now = room.clock.now();
  const wanted: ActionRow[] = [];
  for (const inc of rows) {
    const sheet = (typeof inc.fact_sheet === 'string' ? JSON.parse(inc.fact_sheet) : inc.fact_sheet) as {
      actions?: { description: string; owner: string; due: string }[];
    } | null;
    (sheet?.actions ?? []).forEach((a, i) =>
      wanted.push({
        id: `act_${inc.id}_${i}`,
        source: `incident:${inc.id}`,
        kpi: inc.kpi,
        description: a.description,
        ...ownerOf(knownTo(agreement, inc.kpi), a.owner),
        due: a.due,
        state: 'open',
        done_at: null,
        done_by: null,
        notified_at: null,
        created_at: now,
        created_partner: null,
      }),
    );
  }
  if (!wanted.length) return;
  await inTransaction(room.control.db, async (tx) => {
    for (const w of wanted) await createAction(tx, w);
  });
}

/** Whether the caller may see an action: a retrospective's, every reader; an incident's, the KPI's readers. */
function visibleAction(room: Room, p: Principal, r: ActionRow): boolean {
  if (r.kpi === null) return true;
  const kpi = room.agreement().agreement.kpis.find((k) => k.id === r.kpi);
  return kpi !== undefined && canSee(p, kpi);
}

export async function readRetrospective(room: Room, p: Principal, period: string): Promise<Retrospective> {
  const items = await listRetroItems(room.control.db, period);
  const actions = await listActions(room.control.db, { source: `retrospective:${period}`, limit: LISTED_ACTIONS });
  const today = todayOf(room);
  const item = (r: RetroItemRow) => ({
    id: r.id,
    text: r.text,
    author: { partner: r.author_partner, name: r.author_name },
    createdAt: iso(r.created_at),
  });
  return {
    period,
    strengthened: items.filter((i) => i.kind === 'strengthened').map(item),
    weakened: items.filter((i) => i.kind === 'weakened').map(item),
    actions: actions.filter((a) => visibleAction(room, p, a)).map((a) => actionView(a, today)),
  };
}

export async function addRetroItem(
  room: Room,
  p: Principal,
  period: string,
  input: { kind: 'strengthened' | 'weakened'; text: string },
): Promise<void> {
  const now = room.clock.now();
  const row: RetroItemRow = {
    id: newId('rti'),
    period,
    kind: input.kind,
    text: input.text,
    author_partner: p.partnerId,
    author_name: p.name,
    created_at: now,
  };
  await inTransaction(room.control.db, async (tx) => {
    // A red team's analyst added 3,000 items of 1,000 characters to one month.
    await withinWriteBudget(tx, p, 'retro_items', now);
    await createRetroItem(tx, row);
    await auditAs(tx, p, 'retrospective.item', row.id, { period, kind: row.kind }, now);
  });
}

export async function addRetroAction(
  room: Room,
  p: Principal,
  period: string,
  input: { description: string; owner: string; due: string },
): Promise<ActionView> {
  // Only the people the caller may know of: a need-to-know KPI's readers are not named to others.
  // A retrospective's action is read by every partner: its owner is someone all of them may know of
  // (so a need-to-know reader's address is confirmed to no one, whoever names it).
  const owner = ownerOf(knownTo(room.agreement().agreement, null), input.owner);
  // A decision's owner must be someone the room can reach and the partners know.
  if (owner.owner_email === null || !input.owner.includes('@'))
    throw badRequest(
      `${input.owner.slice(0, 100)} is not a person of this partnership (steering, contacts, owners)`,
      'body.owner',
    );
  // Due on or after the month it was decided in: a decision is not due before it was taken
  // (a red team's actions due in 2000 sorted first and pushed every other out of the lists).
  if (isMonth(period) && input.due < `${period}-01`)
    throw badRequest(`body.due: ${input.due} is before the retrospective's month, ${period}`, 'body.due');
  const now = room.clock.now();
  const row: ActionRow = {
    id: newId('act'),
    source: `retrospective:${period}`,
    kpi: null,
    description: input.description,
    ...owner,
    due: input.due,
    state: 'open',
    done_at: null,
    done_by: null,
    notified_at: null,
    created_at: now,
    created_partner: p.partnerId,
  };
  await inTransaction(room.control.db, async (tx) => {
    // Counted and recorded by one of the partner's requests at a time (lockBudget).
    if (p.partnerId !== null) await lockWriterBudget(tx, 'actions', p);
    // A partner keeps at most MAX_OPEN_ACTIONS open: one partner's flood of actions cannot push
    // the others' out of the tracker (its lists hold LISTED_ACTIONS).
    if (p.partnerId !== null && (await countActionsOf(tx, p.partnerId, { open: true })) >= MAX_OPEN_ACTIONS)
      throw conflict(
        `partner ${p.partnerId} has ${MAX_OPEN_ACTIONS} actions open: mark some done before recording more`,
      );
    // And at most ACTIONS_PER_DAY recorded a day, done ones too: each overdue action mails its
    // owner, who may be another partner's person (a red team's 200 actions due in 2000 sent 200
    // e-mails to globex's ops at the next evaluation, and again once globex closed them).
    if (
      p.partnerId !== null &&
      (await countActionsOf(tx, p.partnerId, { since: new Date(now.getTime() - 86_400_000) })) >= ACTIONS_PER_DAY
    )
      throw new Problem(
        429,
        'Too Many Requests',
        `partner ${p.partnerId} recorded ${ACTIONS_PER_DAY} actions in the last 24 hours, the most the room takes; record more tomorrow`,
        {},
        { 'retry-after': '3600' },
      );
    await createAction(tx, row);
    await auditAs(tx, p, 'action.created', row.id, { period, due: row.due }, now);
  });
  return actionView(row, todayOf(room));
}

export async function listTrackedActions(
  room: Room,
  p: Principal,
  filter: 'open' | 'done' | 'overdue' | undefined,
): Promise<ActionView[]> {
  await syncIncidentActions(room);
  const today = todayOf(room);
  const rows = await listActions(room.control.db, {
    state: filter === 'overdue' ? 'open' : filter,
    limit: LISTED_ACTIONS,
  });
  return rows
    .filter((r) => visibleAction(room, p, r))
    .map((r) => actionView(r, today))
    .filter((a) => filter !== 'overdue' || a.overdue);
}

/** Its owner, the steering committee or a partner admin marks an action done. */
export async function completeAction(room: Room, p: Principal, id: string): Promise<ActionView> {
  const row = await findAction(room.control.db, id);
  if (!row || !visibleAction(room, p, row)) throw notFound(`no action ${JSON.stringify(id.slice(0, 60))} for you`);
  // The owner is the token's name at the owner's partner (a token's name is chosen by its partner's
  // admin: another partner's token named like the owner is not the owner), as for KPI owners.
  const isOwner =
    row.owner_email !== null &&
    row.owner_email === p.name.toLowerCase() &&
    (row.owner_partner === null || row.owner_partner === p.partnerId);
  // A partner admin closes its own partner's actions (and the room's unowned ones), not another's.
  const ownAdmin = p.role === 'admin' && (row.owner_partner === null || row.owner_partner === p.partnerId);
  if (!isOwner && p.role !== 'steering' && !ownAdmin)
    throw forbidden("only the action's owner, the steering committee or its partner's admin may mark it done");
  const now = room.clock.now();
  const done = await inTransaction(room.control.db, async (tx) => {
    const r = await markActionDone(tx, id, p.name, now);
    if (r) await auditAs(tx, p, 'action.done', id, { ...(row.kpi ? { kpi: row.kpi } : {}), source: row.source }, now);
    return r;
  });
  return actionView(done ?? row, todayOf(room));
}

/**
 * Tells each overdue action's owner once (a watcher of the alert engine's scheduled evaluation).
 * An incident's action on a need-to-know KPI goes only to an owner who may read that KPI.
 */
export async function noticeOverdueActions(room: Room): Promise<number> {
  await syncIncidentActions(room);
  const agreement = room.agreement().agreement;
  const now = room.clock.now();
  let sent = 0;
  for (const a of await listOverdueUnnotified(room.control.db, todayOf(room))) {
    const kpi = a.kpi ? agreement.kpis.find((k) => k.id === a.kpi) : undefined;
    // An incident's action goes only to an owner who may read its KPI (none once the KPI is gone).
    const may = a.kpi === null || (kpi !== undefined && mayReceive(agreement, kpi, a.owner_email!));
    sent += await inTransaction(room.control.db, async (tx) => {
      if (!(await claimOverdueNotice(tx, a.id, now)) || !may) return 0;
      const text = `The action "${a.description}" (${a.source}) was due on ${a.due} and is not done yet.`;
      return enqueueMessages(tx, room, {
        payload: {
          type: documentEventSchema.enum['action.overdue'],
          timestamp: now.toISOString(),
          data: {
            id: a.id,
            digest: a.id,
            kpis: a.kpi ? [a.kpi] : [],
            snapshot: room.duck.snapshots.latest,
            subject: `[Parity] Overdue: ${a.description.slice(0, 80)}`,
            text: `${text}\n`,
            html: `<p>${escapeHtml(text)}</p>`,
          },
        },
        about: { action_id: a.id },
        recipients: [{ partnerId: a.owner_partner, name: a.owner_name, email: a.owner_email! }],
        now,
      });
    });
  }
  return sent;
}

/**
 * The actions a month's review shows: those still open that fell due by the month's end, and those
 * done in the month — retrospectives' and the incidents' of the shared KPIs (the review goes to
 * every partner).
 */
export async function reviewActions(
  room: Room,
  month: { lastDay: string; from: Date; to: Date },
  shared: ReadonlySet<string>,
): Promise<ActionView[]> {
  await syncIncidentActions(room);
  const rows = await listActions(room.control.db, { limit: LISTED_ACTIONS });
  return rows
    .filter((r) => r.kpi === null || shared.has(r.kpi))
    .filter((r) => {
      if (r.state === 'open') return r.due <= month.lastDay;
      const done = new Date(r.done_at as unknown as string);
      return done >= month.from && done < month.to;
    })
    .map((r) => actionView(r, todayOf(room)));
}
