import { sql } from 'kysely';
import type {
  ControlDb,
  ControlTx,
  NewProposal,
  NewProposalDecision,
  ProposalDecisionRow,
  ProposalRow,
  ProposalUpdate,
} from '../platform/control-db.js';

// One advisory lock lets one of two concurrent proposals in (the one-open index would refuse the other with a 500).
const PROPOSAL_LOCK = 7_417_002;

/** Takes the proposals' advisory lock until the transaction ends. */
export async function lockProposals(tx: ControlTx): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${PROPOSAL_LOCK})`.execute(tx);
}

/** Open proposals whose time ran out become expired; the ids expired now. */
export async function expireOpenProposals(db: ControlDb, now: Date): Promise<{ id: string }[]> {
  return db
    .updateTable('agreement_proposals')
    .set({ state: 'expired', decided_at: now })
    .where('state', '=', 'open')
    .where('expires_at', '<=', now)
    .returning('id')
    .execute();
}

/** The newest proposals first. */
export async function listRecentProposals(db: ControlDb, limit: number): Promise<ProposalRow[]> {
  return db.selectFrom('agreement_proposals').selectAll().orderBy('created_at', 'desc').limit(limit).execute();
}

export async function findProposalById(db: ControlDb, id: string): Promise<ProposalRow | undefined> {
  return db.selectFrom('agreement_proposals').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A proposal under a row lock for the rest of the transaction (decisions on it queue behind each other). */
export async function findProposalForUpdate(tx: ControlTx, id: string): Promise<ProposalRow | undefined> {
  return tx.selectFrom('agreement_proposals').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** The open proposal, if any (at most one is open at a time). */
export async function findOpenProposal(db: ControlDb): Promise<{ id: string } | undefined> {
  return db.selectFrom('agreement_proposals').select('id').where('state', '=', 'open').executeTakeFirst();
}

/** A partner's latest proposal another partner rejected since `since`, if any. */
export async function findProposalRejectedSince(
  db: ControlDb,
  partner: string,
  since: Date,
): Promise<{ id: string; decided_at: Date | null } | undefined> {
  return db
    .selectFrom('agreement_proposals')
    .select(['id', 'decided_at'])
    .where('proposer_partner', '=', partner)
    .where('state', '=', 'rejected')
    .where('decided_at', '>=', since)
    .orderBy('decided_at', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function createProposal(db: ControlDb, row: NewProposal): Promise<void> {
  await db.insertInto('agreement_proposals').values(row).execute();
}

export async function updateProposal(db: ControlDb, id: string, set: ProposalUpdate): Promise<void> {
  await db.updateTable('agreement_proposals').set(set).where('id', '=', id).execute();
}

export async function createProposalDecision(db: ControlDb, row: NewProposalDecision): Promise<void> {
  await db.insertInto('proposal_decisions').values(row).execute();
}

/** A proposal's decisions in the order they were taken. */
export async function listProposalDecisions(db: ControlDb, proposalId: string): Promise<ProposalDecisionRow[]> {
  return db
    .selectFrom('proposal_decisions')
    .selectAll()
    .where('proposal_id', '=', proposalId)
    .orderBy('decided_at')
    .execute();
}
