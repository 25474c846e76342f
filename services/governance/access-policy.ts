import { privilegedNames, type Agreement, type Kpi } from '../platform/agreement-schema.js';
import { forbidden, notFound, unauthorized } from '../platform/errors.js';
import type { Principal } from './token-repository.js';

// The access policy: who may read which KPI. Every surface that shows a KPI, its figures or
// anything naming it (series, summaries, incidents, audit, reports, notifications) asks here.

const readRoles = new Set(['analyst', 'owner', 'steering', 'admin']);

/** Whether the caller may see a KPI at all (tiers); unseen KPIs are answered as unknown. */
export function canSee(p: Principal | null, kpi: Kpi): boolean {
  if (!p) return kpi.disclosure === 'public' && kpi.published;
  if (!readRoles.has(p.role)) return false;
  if (kpi.disclosure === 'need_to_know')
    return p.role === 'steering' || kpi.needToKnow.some((e) => sameEmail(e, p.name)) || isNamedOwner(p, kpi);
  return true;
}

/** E-mail addresses name people whatever their case. */
const sameEmail = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The caller is the KPI's root-cause owner for their partner (the token's name is the owner's e-mail). */
export function isNamedOwner(p: Principal, kpi: Kpi): boolean {
  const owner = p.partnerId === null ? undefined : kpi.owners[p.partnerId];
  return owner !== undefined && sameEmail(owner.email, p.name);
}

/** 403 for roles that never read aggregates (ingest, operator); the caller otherwise. */
export function assertReader(p: Principal | null): void {
  if (p && !readRoles.has(p.role)) throw forbidden(`the ${p.role} role cannot read aggregates`);
}

/** The KPI if the caller may see it; otherwise 401 without a token, 404 with one (unknown and hidden look alike). */
export function findVisibleKpi(agreement: Agreement, p: Principal | null, id: string): Kpi {
  const kpi = agreement.kpis.find((k) => k.id === id);
  if (!kpi || !canSee(p, kpi)) {
    if (!p) throw unauthorized();
    throw notFound(`no KPI ${JSON.stringify(id.slice(0, 60))} for you`);
  }
  return kpi;
}

/**
 * Whether a name grants more than the role would: a steering member, a person named on a
 * need-to-know KPI, or a KPI's root-cause owner (owners read their KPI whatever its tier) —
 * except a partner's own owners, on an owner token of that partner. A partner admin may not hand
 * out such a name (a token, an invitation): the room's host does.
 */
export function grantsMoreThanRole(a: Agreement, partner: string, role: string, name: string): boolean {
  const others =
    role === 'owner'
      ? {
          ...a,
          kpis: a.kpis.map((k) => ({
            ...k,
            owners: Object.fromEntries(Object.entries(k.owners).filter(([p]) => p !== partner)),
          })),
        }
      : a;
  return privilegedNames(others).has(name.toLowerCase());
}
