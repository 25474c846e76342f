import { randomBytes } from 'node:crypto';
import { inTransaction, jsonColumn, type ControlTx, type ProposalRow } from '../platform/control-db.js';
import { requirePartnerAdmin } from './auth.js';
import { badRequest, conflict, forbidden, notFound, Problem } from '../platform/errors.js';
import type { ControlDb } from '../platform/control-db.js';
import type { Room } from '../platform/room.js';
import type { AgreementVersion } from '../platform/agreement-schema.js';
import {
  createAgreementVersion,
  findAgreementDocument,
  findAgreementOf,
  findLatestAgreementVersion,
  listAgreementVersions,
  upsertPartners,
} from './agreement-repository.js';
import { diffAgreements, type AgreementChange } from './agreement-diff.js';
import type { ProposalView } from './governance-schemas.js';
import {
  agreementDigest,
  asNewAgreement,
  parseAgreementText,
  privilegedNames,
  validateAgreement,
  type Agreement,
} from '../platform/agreement-schema.js';
import { appendAuditIn } from './audit-repository.js';
import { addedFamilies, droppedFamilies } from '../query/disclosure.js';
import type { VersionChange } from '../platform/duck-store.js';
import { compileProtectedDays } from '../query/aggregate-compiler.js';
import { ROOM_PARTNER } from './retention.js';
import {
  createProposal,
  createProposalDecision,
  expireOpenProposals,
  findOpenProposal,
  findProposalRejectedSince,
  findProposalById,
  findProposalForUpdate,
  listProposalDecisions,
  listRecentProposals,
  lockProposals,
  updateProposal,
} from './proposal-repository.js';
import { listUnrevokedTokensNamed, revokeTokensOfPartnersOtherThan, type Principal } from './token-repository.js';

export const DEFAULT_PROPOSAL_DAYS = 14;
/** How long a partner whose proposal was rejected waits before proposing again. */
export const PROPOSAL_PAUSE_MS = 24 * 3_600_000;

/** A proposal as the API shows it (its shape is the response schema's). */
export type { ProposalView };

const newId = () => `prp_${randomBytes(9).toString('base64url')}`;
const iso = (d: Date | string) => new Date(d).toISOString();

/** The proposed document from a request body: an agreement object, or its YAML/JSON text. */
export function proposedAgreement(document: unknown): Agreement {
  const r = asNewAgreement(typeof document === 'string' ? parseAgreementText(document) : validateAgreement(document));
  if (r.ok) return r.agreement;
  const first = r.problems[0]!;
  const field =
    first.path.startsWith('line ') || first.path === '(file)' || first.path === '(root)'
      ? 'body.document'
      : `body.document.${first.path}`;
  throw badRequest(
    `${field}: ${first.message}${r.problems.length > 1 ? ` (and ${r.problems.length - 1} more problem${r.problems.length > 2 ? 's' : ''})` : ''}`,
    field,
    r.problems.map((p) => ({ field: `body.document.${p.path}`, message: p.message })),
  );
}

/** Open proposals whose time ran out become expired (lazily, on every read or change). */
async function expireOld(tx: ControlTx, now: Date): Promise<void> {
  const expired = await expireOpenProposals(tx, now);
  for (const e of expired)
    await appendAuditIn(
      tx,
      { actor: 'system', partnerId: null, action: 'agreement.proposal.expired', target: e.id },
      now,
    );
}

async function view(tx: ControlTx, row: ProposalRow, now: Date): Promise<ProposalView> {
  const base = await findAgreementDocument(tx, row.base_version);
  const current = validateAgreement(jsonColumn<unknown>(base));
  const agreement = validateAgreement(jsonColumn<unknown>(row.document));
  if (!current.ok || !agreement.ok) throw new Error(`proposal ${row.id} or its base version no longer validates`);
  const decisions = await listProposalDecisions(tx, row.id);
  const required = requiredPartners(current.agreement);
  const approved = new Set(decisions.filter((d) => d.decision === 'approve').map((d) => d.partner_id));
  const before = privilegedNames(current.agreement);
  const newly = [...privilegedNames(agreement.agreement)].filter((n) => !before.has(n));
  const widens = newly.length ? await listUnrevokedTokensNamed(tx, newly) : [];
  return {
    id: row.id,
    state: row.state as ProposalView['state'],
    baseVersion: Number(row.base_version),
    resultVersion: row.result_version === null ? null : Number(row.result_version),
    reason: row.reason,
    proposedBy: { tokenId: row.proposed_by, partner: row.proposer_partner },
    createdAt: iso(row.created_at),
    expiresAt: iso(row.expires_at),
    decidedAt: row.decided_at ? iso(row.decided_at) : null,
    digest: row.digest,
    loosensPrivacy: row.loosens_privacy,
    changes: jsonColumn<unknown>(row.changes) as AgreementChange[],
    requiredPartners: required,
    decisions: decisions.map((d) => ({
      partner: d.partner_id,
      decision: d.decision,
      tokenId: d.token_id,
      at: iso(d.decided_at),
      note: d.note,
    })),
    waitingFor: row.state === 'open' ? required.filter((p) => !approved.has(p)) : [],
    agreement: agreement.agreement,
    widensTokens: widens
      .filter((w) => !w.expires_at || new Date(w.expires_at) > now)
      .map((w) => ({ id: w.id, partner: w.partner_id, role: w.role, name: w.name })),
  };
}

/**
 * The parties to a change are the partners of the version it changes: each must approve, a
 * partner being removed included. A partner being added joins with the new version (its
 * tokens are issued by the host once it exists).
 */
function requiredPartners(current: Agreement): string[] {
  return current.partners.map((p) => p.id).sort();
}

export async function listProposals(room: Room): Promise<ProposalView[]> {
  return inTransaction(room.control.db, async (tx) => {
    await expireOld(tx, room.clock.now());
    const rows = await listRecentProposals(tx, 100);
    const out: ProposalView[] = [];
    for (const r of rows) out.push(await view(tx, r, room.clock.now()));
    return out;
  });
}

export async function getProposal(room: Room, id: string): Promise<ProposalView> {
  return inTransaction(room.control.db, async (tx) => {
    await expireOld(tx, room.clock.now());
    const row = await findProposalById(tx, id);
    if (!row) throw notFound(`no proposal ${JSON.stringify(id.slice(0, 40))}`);
    return view(tx, row, room.clock.now());
  });
}

/** A partner admin proposes a new agreement document; the proposer's own partner approves by proposing. */
export async function propose(
  room: Room,
  p: Principal,
  input: { document: unknown; reason: string; expiresInDays?: number | undefined },
): Promise<ProposalView> {
  const partner = requirePartnerAdmin(p, 'propose, approve or reject an agreement change');
  const agreement = proposedAgreement(input.document);
  const now = room.clock.now();
  const active = room.agreement();
  if (!active.agreement.partners.some((x) => x.id === partner))
    throw forbidden(`partner ${partner} is not a party to the agreement in force`);
  const changes = diffAgreements(active.agreement, agreement);
  if (changes.length === 0)
    throw badRequest(
      `body.document: it is the agreement in force (version ${active.version}); nothing to change`,
      'body.document',
    );
  if (agreement.partnership.id !== active.agreement.partnership.id)
    throw badRequest(
      `body.document.partnership.id: a proposal changes partnership ${active.agreement.partnership.id}; it cannot start another`,
      'body.document.partnership.id',
    );
  const id = newId();
  const digest = agreementDigest(agreement);
  const expiresAt = new Date(now.getTime() + (input.expiresInDays ?? DEFAULT_PROPOSAL_DAYS) * 86_400_000);
  const result = await inTransaction(room.control.db, async (tx) => {
    await expireOld(tx, now);
    const open = await findOpenProposal(tx);
    if (open) throw conflict(`proposal ${open.id} is still open: approve, reject or let it expire first`);
    // Two proposals at once: the one-open index lets one in; the other is told, not given a 500.
    await lockProposals(tx);
    const raced = await findOpenProposal(tx);
    if (raced) throw conflict(`proposal ${raced.id} is still open: approve, reject or let it expire first`);
    // One proposal is open at a time: a partner whose proposal was rejected waits a day before
    // the next, so the others get their turn (a red team's admin re-proposed the moment each was
    // rejected, and globex never got one in).
    const closed = await findProposalRejectedSince(tx, partner, new Date(now.getTime() - PROPOSAL_PAUSE_MS));
    if (closed) {
      const at = new Date(closed.decided_at ?? now);
      throw new Problem(
        409,
        'Conflict',
        `partner ${partner}'s proposal ${closed.id} was rejected at ${at.toISOString()}; it may propose again from ${new Date(at.getTime() + PROPOSAL_PAUSE_MS).toISOString()}, the others meanwhile`,
        {},
        { 'retry-after': String(Math.max(1, Math.ceil((at.getTime() + PROPOSAL_PAUSE_MS - now.getTime()) / 1000))) },
      );
    }
    const loosens = changes.some((c) => c.loosensPrivacy);
    await createProposal(tx, {
      id,
      base_version: active.version,
      document: JSON.stringify(agreement),
      digest,
      reason: input.reason,
      changes: JSON.stringify(changes),
      loosens_privacy: loosens,
      proposed_by: p.tokenId,
      proposer_partner: partner,
      created_at: now,
      expires_at: expiresAt,
      state: 'open',
    });
    await createProposalDecision(tx, {
      proposal_id: id,
      partner_id: partner,
      decision: 'approve',
      token_id: p.tokenId,
      decided_at: now,
      note: 'proposed',
    });
    await appendAuditIn(
      tx,
      {
        actor: p.tokenId,
        partnerId: partner,
        action: 'agreement.proposed',
        target: id,
        details: {
          baseVersion: active.version,
          digest,
          changes: changes.length,
          loosensPrivacy: loosens,
          expiresAt: expiresAt.toISOString(),
        },
      },
      now,
    );
    return view(tx, (await findProposalById(tx, id))!, now);
  });
  return result;
}

/** An admin approves or rejects for their own partner; the last approval activates the new version. */
export async function decide(
  room: Room,
  p: Principal,
  id: string,
  decision: 'approve' | 'reject',
  note: string | undefined,
  log?: { error(obj: unknown, msg: string): void; warn?(msg: string): void },
): Promise<ProposalView> {
  const partner = requirePartnerAdmin(p, 'propose, approve or reject an agreement change');
  const now = room.clock.now();
  let activated: AgreementVersion | undefined;
  const result = await inTransaction(room.control.db, async (tx) => {
    await expireOld(tx, now);
    const row = await findProposalForUpdate(tx, id);
    if (!row) throw notFound(`no proposal ${JSON.stringify(id.slice(0, 40))}`);
    if (row.state === 'expired') throw conflict(`proposal ${id} expired at ${iso(row.expires_at)}; propose it again`);
    if (row.state !== 'open') throw conflict(`proposal ${id} is ${row.state}; it takes no more decisions`);
    const current = await view(tx, row, now);
    if (!current.requiredPartners.includes(partner))
      throw forbidden(`partner ${partner} is not a party to this proposal`);
    const mine = current.decisions.find((d) => d.partner === partner);
    if (mine) throw conflict(`partner ${partner} already decided (${mine.decision}) on ${mine.at}`);
    await createProposalDecision(tx, {
      proposal_id: id,
      partner_id: partner,
      decision,
      token_id: p.tokenId,
      decided_at: now,
      note: note ?? null,
    });
    await appendAuditIn(
      tx,
      {
        actor: p.tokenId,
        partnerId: partner,
        action: decision === 'approve' ? 'agreement.approved' : 'agreement.rejected',
        target: id,
        details: { baseVersion: current.baseVersion },
      },
      now,
    );
    if (decision === 'reject') {
      await updateProposal(tx, id, { state: 'rejected', decided_at: now });
    } else if (current.waitingFor.length === 1 && current.waitingFor[0] === partner) {
      const latest = await findLatestAgreementVersion(tx);
      if (latest !== current.baseVersion) {
        await updateProposal(tx, id, { state: 'superseded', decided_at: now });
        await appendAuditIn(
          tx,
          {
            actor: 'system',
            partnerId: null,
            action: 'agreement.proposal.superseded',
            target: id,
            details: { baseVersion: current.baseVersion, latestVersion: latest },
          },
          now,
        );
      } else {
        const version = current.baseVersion + 1;
        await createAgreementVersion(tx, {
          version,
          document: JSON.stringify(current.agreement),
          digest: current.digest,
          source: `proposal ${id}`,
          created_at: now,
          activated_at: now,
          proposal_id: id,
        });
        await upsertPartners(tx, current.agreement.partners, now);
        // A partner the new version drops loses its access with it: every token of it is revoked.
        const kept = current.agreement.partners.map((pt) => pt.id);
        const dropped = await revokeTokensOfPartnersOtherThan(tx, kept, now);
        for (const d of dropped)
          await appendAuditIn(
            tx,
            {
              actor: 'system',
              partnerId: d.partner_id,
              action: 'token.revoked',
              target: d.id,
              details: { reason: `partner left the agreement with version ${current.baseVersion + 1}` },
            },
            now,
          );
        await updateProposal(tx, id, { state: 'active', decided_at: now, result_version: version });
        await appendAuditIn(
          tx,
          {
            actor: 'system',
            partnerId: null,
            action: 'agreement.activated',
            target: `v${version}`,
            details: { proposal: id, digest: current.digest, approvedBy: current.requiredPartners },
          },
          now,
        );
        activated = { version, agreement: current.agreement, digest: current.digest, activatedAt: now };
      }
    }
    return view(tx, (await findProposalById(tx, id))!, now);
  });
  if (activated) await applyAgreement(room, activated, log);
  return result;
}

/**
 * Puts a newly activated version in force as a snapshot of its own (DuckStore.adoptAgreement):
 * local days follow a new time zone in its transaction, and the room takes the version in the
 * turn that snapshot becomes visible, so no snapshot is ever answered under two versions. The
 * version is already committed: if the store cannot take the snapshot, the room stays on the
 * version before (every answer consistent with its snapshot) and says so; the next start adopts it
 * (openRoom), never undoes it.
 */
export async function applyAgreement(
  room: Room,
  v: AgreementVersion,
  log?: { error(obj: unknown, msg: string): void; warn?(msg: string): void },
): Promise<void> {
  try {
    await room.duck.adoptAgreement(
      { version: v.version, timezone: v.agreement.partnership.timezone },
      { partner: ROOM_PARTNER, at: room.clock.now() },
      () => room.setAgreement(v),
      addedSince(room.control.db, v.agreement, log),
    );
  } catch (err) {
    log?.error(
      { err },
      `version ${v.version} is active, but the room could not take its snapshot; it stays on version ${room.agreement().version} until the next start adopts it`,
    );
  }
}

/**
 * The families `next` adds, and the points the families it drops protected, against the
 * version the store answered under until now, `previous` (read by DuckStore.adoptAgreement in its
 * transaction, so a version still being adopted is the one compared with). A version whose
 * document is gone or no longer validates counts as having had no KPI: everything over earlier
 * points is withheld, and the log says why. A store that never recorded a version (from before
 * versions took snapshots) withholds nothing for it.
 */
export function addedSince(
  db: ControlDb,
  next: Agreement,
  log?: { warn?(msg: string): void },
): (previous: number | undefined) => Promise<VersionChange> {
  return async (previous) => {
    if (previous === undefined) return { added: [] };
    const before = await findAgreementOf(db, previous);
    if (before)
      return {
        added: addedFamilies(before, next),
        // The points the dropped families protected, under the rules of the version before.
        protectedDays: droppedFamilies(before, next).map(({ kpi, rules }) => ({
          kpi: kpi.id,
          ...compileProtectedDays(kpi, rules, next.partnership.timezone),
        })),
      };
    log?.warn?.(
      `agreement version ${previous} cannot be read to compare with the new one: every KPI's periods holding earlier points are withheld`,
    );
    return { added: addedFamilies({ ...next, kpis: [] }, next) };
  };
}

/** The versions kept, newest first. */
export async function listVersions(
  room: Room,
): Promise<{ version: number; digest: string; source: string; activatedAt: string | null; proposal: string | null }[]> {
  const rows = await listAgreementVersions(room.control.db);
  return rows.map((r) => ({
    version: Number(r.version),
    digest: r.digest,
    source: r.source,
    activatedAt: r.activated_at ? iso(r.activated_at) : null,
    proposal: r.proposal_id,
  }));
}
