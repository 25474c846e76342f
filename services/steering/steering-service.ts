import { randomBytes } from 'node:crypto';
import { findIncidentById } from '../alerts/incident-repository.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import { findLatestAgreementVersion } from '../governance/agreement-repository.js';
import { canSee } from '../governance/access-policy.js';
import type { Principal } from '../governance/token-repository.js';
import { localToday } from '../platform/calendar.js';
import { inTransaction, jsonColumn, type DecisionRow } from '../platform/control-db.js';
import { badRequest, conflict, forbidden, notFound } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { chairAt } from '../platform/steering-chair.js';
import { appendDecision, findDecision, findSuperseding, listDecisions } from './decision-repository.js';
import type { Committee, DecisionInput, DecisionView } from './steering-schemas.js';

/** The committee as the agreement names it, with the chair of today. */
export function committee(room: Room): Committee {
  const a = room.agreement().agreement;
  const term = chairAt(a, room.clock.now());
  const person = (email: string) => {
    const m = a.steering.find((s) => s.email.toLowerCase() === email.toLowerCase());
    return { name: m?.name ?? email, email: m?.email ?? email };
  };
  return {
    members: a.steering.map((s) => ({ name: s.name, email: s.email, chair: s.email === term.email })),
    chair: term,
    rotation: a.chair
      ? {
          every: a.chair.every,
          from: a.chair.from,
          order: (a.chair.order ?? a.steering.map((s) => s.email)).map(person),
        }
      : null,
  };
}

const list = <T>(v: unknown) => jsonColumn<T[]>(v) ?? [];

/** Whether the caller may see a record: not one concerning a KPI they may not read. */
function visible(room: Room, p: Principal, r: DecisionRow): boolean {
  const kpis = room.agreement().agreement.kpis;
  return list<string>(r.kpis).every((id) => {
    const k = kpis.find((x) => x.id === id);
    // A KPI since removed from the agreement: only the committee keeps seeing the record.
    return k ? canSee(p, k) : p.role === 'steering';
  });
}

function view(room: Room, r: DecisionRow, supersededBy: string | null): DecisionView {
  const steering = room.agreement().agreement.steering;
  return {
    id: r.id,
    number: r.number,
    title: r.title,
    context: r.context,
    options: list<string>(r.options),
    decision: r.decision,
    decisionMakers: list<string>(r.decision_makers).map((e) => ({
      name: steering.find((s) => s.email.toLowerCase() === e)?.name ?? e,
      email: e,
    })),
    date: r.decided_on,
    consequences: r.consequences,
    incidents: list<string>(r.incidents),
    agreementVersions: list<number>(r.agreement_versions),
    supersedes: r.supersedes,
    supersededBy,
    recordedBy: r.recorded_by,
    recordedAt: new Date(r.created_at as unknown as string).toISOString(),
  };
}

/** The KPIs a record concerns (its audit entries name them, so the log hides them alike). */
export const decisionKpis = (r: DecisionRow) => list<string>(r.kpis);

/**
 * The records the caller may see, newest first, with the KPIs they concern. (A log holds a few
 * records a month: all are read and filtered, so hidden ones never shorten a reader's page.)
 */
/**
 * The records the caller may see, newest first, each numbered among them (D-1 is the first the
 * caller may see): a room-wide number would show by its gaps that records the caller may not see
 * exist, and when. (A log holds a few records a month: all are read and filtered.)
 */
async function visibleDecisions(room: Room, p: Principal): Promise<DecisionRow[]> {
  const rows = (await listDecisions(room.control.db, 100_000)).filter((r) => visible(room, p, r));
  return rows.map((r, i) => ({ ...r, number: rows.length - i }));
}

export async function listDecisionViews(
  room: Room,
  p: Principal,
  limit: number,
): Promise<{ decisions: DecisionView[]; kpis: string[] }> {
  const rows = (await visibleDecisions(room, p)).slice(0, limit);
  const by = await findSuperseding(
    room.control.db,
    rows.map((r) => r.id),
  );
  return {
    decisions: rows.map((r) => view(room, r, by.get(r.id) ?? null)),
    kpis: [...new Set(rows.flatMap(decisionKpis))].sort(),
  };
}

export async function readDecision(
  room: Room,
  p: Principal,
  id: string,
): Promise<{ decision: DecisionView; kpis: string[] }> {
  const r = (await visibleDecisions(room, p)).find((x) => x.id === id);
  if (!r) throw notFound(`no decision ${JSON.stringify(id.slice(0, 60))} for you`);
  const by = await findSuperseding(room.control.db, [r.id]);
  return { decision: view(room, r, by.get(r.id) ?? null), kpis: decisionKpis(r) };
}

/**
 * A steering member records a decision: its makers are members, its date not in the future, its
 * incidents and agreement versions exist. It is never changed afterwards, only superseded.
 */
export async function recordDecision(room: Room, p: Principal, input: DecisionInput): Promise<DecisionView> {
  if (p.role !== 'steering') throw forbidden('only the steering committee records decisions');
  const agreement = room.agreement().agreement;
  const members = new Set(agreement.steering.map((s) => s.email.toLowerCase()));
  const makers = [...new Set(input.decisionMakers.map((e) => e.toLowerCase()))];
  input.decisionMakers.forEach((e, i) => {
    if (!members.has(e.toLowerCase()))
      throw badRequest(`${e} is not a member of the steering committee`, `body.decisionMakers.${i}`);
  });
  const now = room.clock.now();
  if (input.date > localToday(now, agreement.partnership.timezone))
    throw badRequest('a decision is recorded once taken: its date is not in the future', 'body.date');
  const kpis = new Set<string>();
  for (const [i, id] of input.incidents.entries()) {
    const inc = await findIncidentById(room.control.db, id);
    if (!inc) throw badRequest(`no incident ${id}`, `body.incidents.${i}`);
    kpis.add(inc.kpi);
  }
  const latest = await findLatestAgreementVersion(room.control.db);
  input.agreementVersions.forEach((v, i) => {
    if (v > latest)
      throw badRequest(`no agreement version ${v} (the latest is ${latest})`, `body.agreementVersions.${i}`);
  });
  if (input.supersedes) {
    const old = await findDecision(room.control.db, input.supersedes);
    if (!old) throw badRequest(`no decision ${input.supersedes}`, 'body.supersedes');
    // A successor is seen by exactly the readers of its predecessor: one that concerned more KPIs
    // would be hidden from some who see the predecessor marked superseded — by what, they could
    // not read, but that it exists they could. Such a decision is a record of its own.
    const before = new Set(list<string>(old.kpis));
    const added = [...kpis].filter((k) => !before.has(k));
    if (added.length)
      throw badRequest(
        `a successor concerns what its predecessor did: ${added.join(', ')} is new (record it as a decision of its own)`,
        'body.incidents',
      );
    for (const k of before) kpis.add(k);
    if ((await findSuperseding(room.control.db, [old.id])).size)
      throw conflict(`decision ${old.id} is superseded already: supersede the record that replaced it`);
  }
  const row: Omit<DecisionRow, 'number'> = {
    id: `dec_${randomBytes(12).toString('base64url')}`,
    title: input.title,
    context: input.context,
    options: input.options,
    decision: input.decision,
    decision_makers: makers,
    decided_on: input.date,
    consequences: input.consequences,
    incidents: input.incidents,
    agreement_versions: input.agreementVersions,
    kpis: [...kpis].sort(),
    supersedes: input.supersedes ?? null,
    recorded_by: p.name,
    created_at: now,
  };
  let number: number;
  try {
    number = await inTransaction(room.control.db, async (tx) => {
      const n = await appendDecision(tx, row);
      await appendAuditIn(
        tx,
        {
          actor: p.tokenId,
          partnerId: p.partnerId,
          action: 'decision.recorded',
          target: row.id,
          details: { kpis: row.kpis, supersedes: row.supersedes },
        },
        now,
      );
      return n;
    });
  } catch (err) {
    // Two records superseding the same one at once: the unique index lets one through.
    if (/decisions_supersedes_key|unique/i.test(String((err as Error).message)))
      throw conflict(`decision ${input.supersedes ?? ''} was superseded meanwhile`);
    throw err;
  }
  return view(room, { ...row, number }, null);
}
