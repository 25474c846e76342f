import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import type { Principal } from '../governance/token-repository.js';
import { inTransaction, type ControlTx, type IncidentRow, type IncidentUpdate } from '../platform/control-db.js';
import { forbidden, notFound, Problem } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { assertReader, canSee, isNamedOwner } from '../governance/access-policy.js';
import { resolvedNotifications } from './alert-engine.js';
import { factSheet, responsiblePartners, type FactSheet, type Resolution } from './fact-sheet.js';
import { findIncidentById, listIncidentRows, updateIncidentInStates } from './incident-repository.js';

export const incidentStates = ['open', 'notified', 'acknowledged', 'resolved'] as const;

export interface IncidentFilter {
  state?: (typeof incidentStates)[number] | 'active' | undefined;
  kpi?: string | undefined;
  scope?: string | undefined;
  kind?: 'breach' | 'stale' | undefined;
  from?: string | undefined;
  to?: string | undefined;
  limit: number;
}

export function sheetOf(agreement: Agreement, row: IncidentRow): FactSheet {
  return factSheet(
    row,
    agreement.kpis.find((k) => k.id === row.kpi),
  );
}

/** Incidents of the KPIs the caller may see, newest first. */
export async function listIncidents(room: Room, p: Principal, f: IncidentFilter): Promise<FactSheet[]> {
  assertReader(p);
  const agreement = room.agreement().agreement;
  const visible = agreement.kpis.filter((k) => canSee(p, k)).map((k) => k.id);
  if (visible.length === 0) return [];
  const rows = await listIncidentRows(room.control.db, {
    kpis: visible,
    state: f.state,
    kpi: f.kpi,
    scope: f.scope,
    kind: f.kind,
    openedFrom: f.from ? new Date(`${f.from}T00:00:00Z`) : undefined,
    openedBefore: f.to ? new Date(Date.parse(`${f.to}T00:00:00Z`) + 86_400_000) : undefined,
    limit: f.limit,
  });
  return rows.map((r) => sheetOf(agreement, r));
}

/** One incident the caller may see; an unknown and a hidden one both answer 404. */
export async function findIncident(room: Room, p: Principal, id: string): Promise<{ row: IncidentRow; kpi: Kpi }> {
  assertReader(p);
  const row = await findIncidentById(room.control.db, id);
  const kpi = row && room.agreement().agreement.kpis.find((k) => k.id === row.kpi);
  if (!row || !kpi || !canSee(p, kpi)) throw notFound(`no incident ${JSON.stringify(id.slice(0, 40))} for you`);
  return { row, kpi };
}

/** Steering, or the root-cause owner named on the KPI for a partner that answers for this scope. */
function assertMayAct(p: Principal, kpi: Kpi, row: IncidentRow): void {
  if (p.role === 'steering') return;
  if (p.role === 'owner' && isNamedOwner(p, kpi) && responsiblePartners(kpi, row.scope).includes(p.partnerId!)) return;
  throw forbidden(
    `only ${
      responsiblePartners(kpi, row.scope)
        .map((x) => kpi.owners[x]!.name)
        .join(' or ') || 'the named owner'
    } (as owner) or the steering committee may do this`,
  );
}

/**
 * One owner action on an incident: the caller may act, the row is in one of `from`, and the
 * change, its audit entry and any notifications land in one transaction (or a 409 says why not).
 */
async function transition(
  room: Room,
  p: Principal,
  id: string,
  t: {
    from: IncidentRow['state'][];
    set: (now: Date) => IncidentUpdate;
    action: string;
    details: Record<string, unknown>;
    after?: (tx: ControlTx, kpi: Kpi, updated: IncidentRow, now: Date) => Promise<unknown>;
  },
): Promise<FactSheet> {
  const { row, kpi } = await findIncident(room, p, id);
  assertMayAct(p, kpi, row);
  const now = room.clock.now();
  const updated = await inTransaction(room.control.db, async (tx) => {
    const r = await updateIncidentInStates(tx, id, t.from, { ...t.set(now), updated_at: now });
    if (!r) return undefined;
    await appendAuditIn(
      tx,
      {
        actor: p.tokenId,
        partnerId: p.partnerId,
        action: t.action,
        target: id,
        details: { kpi: row.kpi, scope: row.scope, role: p.role, ...t.details },
      },
      now,
    );
    await t.after?.(tx, kpi, r, now);
    return r;
  });
  if (!updated) throw new Problem(409, 'Conflict', `the incident is already ${row.state}`, { field: 'id' });
  return sheetOf(room.agreement().agreement, updated);
}

export async function acknowledgeIncident(
  room: Room,
  p: Principal,
  id: string,
  note: string | undefined,
): Promise<FactSheet> {
  return transition(room, p, id, {
    from: ['open', 'notified'],
    set: (now) => ({ state: 'acknowledged', acknowledged_at: now, acknowledged_by: p.name }),
    action: 'incident.acknowledged',
    details: { note: note ? 'given' : 'none' },
  });
}

export async function resolveIncident(
  room: Room,
  p: Principal,
  id: string,
  resolution: Resolution,
  kick: () => void,
): Promise<FactSheet> {
  const sheet = await transition(room, p, id, {
    from: ['open', 'notified', 'acknowledged'],
    set: (now) => ({
      state: 'resolved',
      resolved_at: now,
      resolved_by: p.name,
      resolution: 'owner',
      fact_sheet: JSON.stringify(resolution),
    }),
    action: 'incident.resolved',
    details: { resolution: 'owner', cause: resolution.cause, actions: resolution.actions.length },
    after: (tx, kpi, updated, now) => resolvedNotifications(tx, room, kpi, updated, now),
  });
  kick();
  return sheet;
}
