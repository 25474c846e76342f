import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { inTransaction, type InvitationRow } from '../platform/control-db.js';
import { badRequest, forbidden, notFound, Problem } from '../platform/errors.js';
import type { Room } from '../platform/room.js';
import { appendAuditIn } from './audit-repository.js';
import { requirePartnerAdmin } from './auth.js';
import {
  createInvitationRow,
  findInvitation,
  findInvitationByCodeForUpdate,
  listPartnerInvitations,
  markInvitationUsed,
  withdrawInvitation,
} from './invitation-repository.js';
import { createPersonToken, findPersonToken, hashToken, revokeToken, type Principal } from './token-repository.js';
import { grantsMoreThanRole } from './access-policy.js';
import { endSessionsOfToken } from './session-repository.js';

// Invitations, for rooms (or partners) without an identity provider: a partner admin invites an
// e-mail with a role; the link's one-time code signs the person in once, before it expires. The
// code is shown once, to the admin; only its SHA-256 is kept.

export const invitationInputSchema = z.strictObject({
  email: z.email().max(254).describe("the person's e-mail: their name in the room"),
  role: z.enum(['analyst', 'owner', 'admin']).describe('steering members are invited by the host'),
  expiresInHours: z.number().int().min(1).max(168).default(72).describe('how long the link works (1–168 h)'),
});
export type InvitationInput = Omit<z.infer<typeof invitationInputSchema>, 'role'> & {
  role: 'analyst' | 'owner' | 'admin' | 'steering';
};

/** Marks an invitation the room's host made (the demo, the host's tooling): its names are the host's to give. */
const HOST = 'host:';

export const invitationSchema = z.object({
  id: z.string(),
  partner: z.string(),
  email: z.string(),
  role: z.enum(['analyst', 'owner', 'admin', 'steering']),
  createdBy: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
  state: z.enum(['pending', 'used', 'expired', 'revoked']),
  usedAt: z.string().nullable(),
});
export type InvitationView = z.infer<typeof invitationSchema>;
export const issuedInvitationSchema = invitationSchema.extend({
  link: z.string().describe('the one-time sign-in link: shown once, send it to the person'),
});

const iso = (v: unknown) => new Date(v as string).toISOString();

function view(r: InvitationRow, now: Date): InvitationView {
  return {
    id: r.id,
    partner: r.partner_id,
    email: r.email,
    role: r.role,
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
    expiresAt: iso(r.expires_at),
    state: r.used_at
      ? 'used'
      : r.revoked_at
        ? 'revoked'
        : new Date(r.expires_at as unknown as string) <= now
          ? 'expired'
          : 'pending',
    usedAt: r.used_at ? iso(r.used_at) : null,
  };
}

/** A partner admin invites a person of its own partner. */
export async function createInvitation(
  room: Room,
  p: Principal,
  input: InvitationInput,
  origin: string,
  opts: { asHost?: boolean; domains?: readonly string[] | undefined } = {},
): Promise<InvitationView & { link: string }> {
  const partner = requirePartnerAdmin(p, 'invite people');
  const agreement = room.agreement().agreement;
  const email = input.email.toLowerCase();
  if (opts.asHost) {
    // Steering reads every KPI: only a member the agreement names is invited as one.
    if (input.role === 'steering' && !agreement.steering.some((s) => s.email.toLowerCase() === email))
      throw badRequest(`${input.email} is not a steering member the agreement names`, 'body.role');
  } else {
    // What a partner admin may not issue as a token, it may not hand out as a link either: a name
    // that reads more than its role (a steering member, a need-to-know reader, another partner's
    // owner) is the host's to give.
    if (input.role === 'steering') throw badRequest('steering members are invited by the host', 'body.role');
    if (grantsMoreThanRole(agreement, partner, input.role, email))
      throw forbidden(
        `${input.email} reads more than the ${input.role} role (steering, need-to-know or another partner's owner): the room's host invites them`,
        'body.email',
      );
    // A partner with an identity provider: its people have its domains.
    const domain = email.slice(email.lastIndexOf('@') + 1);
    if (opts.domains && !opts.domains.includes(domain))
      throw badRequest(`${domain} is not a domain of ${partner} (its identity provider's)`, 'body.email');
  }
  const now = room.clock.now();
  const code = `inv_${randomBytes(32).toString('base64url')}`;
  const row: InvitationRow = {
    id: `ivt_${randomBytes(9).toString('base64url')}`,
    code_hash: hashToken(code),
    partner_id: partner,
    email,
    role: input.role,
    created_by: opts.asHost ? `${HOST}${p.name}` : p.name,
    created_at: now,
    expires_at: new Date(now.getTime() + input.expiresInHours * 3_600_000),
    used_at: null,
    revoked_at: null,
    token_id: null,
  };
  await inTransaction(room.control.db, async (tx) => {
    await createInvitationRow(tx, row);
    await appendAuditIn(
      tx,
      {
        actor: p.tokenId,
        partnerId: partner,
        action: 'invitation.created',
        target: row.id,
        details: { role: row.role, expiresAt: row.expires_at.toISOString() },
      },
      now,
    );
  });
  return { ...view(row, now), link: `${origin}/#invite=${code}` };
}

export async function listInvitations(room: Room, p: Principal): Promise<InvitationView[]> {
  const partner = requirePartnerAdmin(p, 'see invitations');
  const rows = await listPartnerInvitations(room.control.db, partner, 500);
  const now = room.clock.now();
  return rows.map((r) => view(r, now));
}

export async function revokeInvitation(room: Room, p: Principal, id: string): Promise<InvitationView> {
  const partner = requirePartnerAdmin(p, 'revoke invitations');
  const now = room.clock.now();
  const row = await inTransaction(room.control.db, async (tx) => {
    const r = await withdrawInvitation(tx, id, partner, now);
    if (r)
      await appendAuditIn(tx, { actor: p.tokenId, partnerId: partner, action: 'invitation.revoked', target: id }, now);
    return r;
  });
  if (!row) {
    const r = await findInvitation(room.control.db, id);
    if (!r || r.partner_id !== partner) throw notFound(`no invitation ${JSON.stringify(id.slice(0, 40))} of yours`);
    throw new Problem(409, 'Conflict', `invitation ${id} is ${view(r, now).state} already`);
  }
  return view(row, now);
}

/**
 * Signs a person in with an invitation's code, once: a sign-in token of the invited role at the
 * partner (the session hangs on it), the invitation marked used in the same transaction.
 */
export async function acceptInvitation(
  room: Room,
  code: string,
): Promise<{ tokenId: string; partnerId: string; role: 'analyst' | 'owner' | 'admin' | 'steering'; name: string }> {
  const now = room.clock.now();
  const gone = (why: string) => new Problem(410, 'Gone', why, { field: 'body.code' });
  return inTransaction(room.control.db, async (tx) => {
    const r = await findInvitationByCodeForUpdate(tx, hashToken(code));
    if (!r) throw new Problem(401, 'Unauthorized', 'this invitation link is unknown', { field: 'body.code' });
    const state = view(r, now).state;
    if (state === 'used') throw gone('this invitation link was used already: ask your partner admin for a new one');
    if (state === 'expired') throw gone('this invitation link has expired: ask your partner admin for a new one');
    if (state === 'revoked') throw gone('this invitation was withdrawn by your partner admin');
    // The agreement may have changed since: a name that now reads more than the role needs the host.
    if (!r.created_by.startsWith(HOST) && grantsMoreThanRole(room.agreement().agreement, r.partner_id, r.role, r.email))
      throw gone('this invitation no longer holds: the person now reads more than its role; ask the host');
    // One sign-in per person and partner: a new invitation replaces the last one's.
    const before = await findPersonToken(tx, r.partner_id, r.email, 'invitation');
    if (before) {
      await revokeToken(tx, before.id, now);
      await endSessionsOfToken(tx, before.id);
    }
    const tokenId = await createPersonToken(
      tx,
      { partnerId: r.partner_id, role: r.role, name: r.email, origin: 'invitation', createdBy: r.created_by },
      now,
    );
    await markInvitationUsed(tx, r.id, tokenId, now);
    await appendAuditIn(
      tx,
      {
        actor: tokenId,
        partnerId: r.partner_id,
        action: 'invitation.accepted',
        target: r.id,
        details: { role: r.role },
      },
      now,
    );
    return { tokenId, partnerId: r.partner_id, role: r.role, name: r.email };
  });
}
