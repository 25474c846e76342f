import { createHash, randomBytes } from 'node:crypto';
import { documentEventSchema } from '../alerts/alert-schemas.js';
import { findIncidentById } from '../alerts/incident-repository.js';
import { enqueueMessages, type Recipient } from '../alerts/outbox.js';
import { canSee, findVisibleKpi } from '../governance/access-policy.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import { requireRole } from '../governance/auth.js';
import { findProposalById } from '../governance/proposal-repository.js';
import type { Principal } from '../governance/token-repository.js';
import { mayReadNeedToKnow, shareableAgreement, type Agreement, type Kpi } from '../platform/agreement-schema.js';
import {
  inTransaction,
  lockBudget,
  type AnnotationRow,
  type CommentRow,
  type ControlTx,
} from '../platform/control-db.js';
import { badRequest, conflict, forbidden, notFound, Problem } from '../platform/errors.js';
import { escapeHtml } from '../platform/html.js';
import type { Room } from '../platform/room.js';
import {
  createAnnotation,
  countMentionsSince,
  countWrittenSince,
  createComment,
  findAnnotation,
  listComments,
  updateAnnotation,
} from './feedback-repository.js';
import type { Annotation, Comment, ThreadKind } from './feedback-schemas.js';

export const iso = (v: unknown) => new Date(v as string).toISOString();
export const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`;

export function annotationView(r: AnnotationRow): Annotation {
  return {
    id: r.id,
    kpi: r.kpi,
    scope: r.scope,
    from: r.period_from,
    to: r.period_to,
    text: r.text,
    author: { partner: r.author_partner, name: r.author_name },
    version: r.version,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export function commentView(r: CommentRow): Comment {
  return {
    id: r.id,
    text: r.text,
    author: { partner: r.author_partner, name: r.author_name },
    mentions: (typeof r.mentions === 'string' ? JSON.parse(r.mentions) : r.mentions) as string[],
    createdAt: iso(r.created_at),
  };
}

/** The caller's audit entry, in the transaction of the change it records (a KPI named in `details` keeps it from non-readers). */
export function auditAs(
  tx: ControlTx,
  p: Principal,
  action: string,
  target: string,
  details: Record<string, unknown>,
  at: Date,
): Promise<number> {
  return appendAuditIn(tx, { actor: p.tokenId, partnerId: p.partnerId, action, target, details }, at);
}

/** `combined`, or a partner's id where the KPI is broken down per partner. */
function checkScope(agreement: Agreement, kpi: Kpi, scope: string): void {
  if (scope === 'combined') return;
  if (!agreement.partners.some((p) => p.id === scope))
    throw badRequest(`expected combined or a partner id; ${scope.slice(0, 63)} is neither`, 'body.scope');
  if (kpi.breakdown !== 'per_partner')
    throw badRequest(`${kpi.id} is agreed combined only: it has no partner's own series`, 'body.scope');
}

/** Only the author (same partner, same name) edits an annotation. */
const isAuthor = (p: Principal, r: { author_partner: string | null; author_name: string }) =>
  p.partnerId === r.author_partner && p.name.toLowerCase() === r.author_name.toLowerCase();

export async function addAnnotation(
  room: Room,
  p: Principal,
  kpiId: string,
  input: { scope: string; from: string; to?: string | undefined; text: string },
): Promise<Annotation> {
  const agreement = room.agreement().agreement;
  const kpi = findVisibleKpi(agreement, p, kpiId);
  checkScope(agreement, kpi, input.scope);
  const now = room.clock.now();
  const row: AnnotationRow = {
    id: newId('ann'),
    kpi: kpi.id,
    scope: input.scope,
    period_from: input.from,
    period_to: input.to ?? input.from,
    text: input.text,
    author_partner: p.partnerId,
    author_name: p.name,
    version: 1,
    created_at: now,
    updated_at: now,
  };
  await inTransaction(room.control.db, async (tx) => {
    // A red team's analyst wrote 1,000 notes spanning a century and buried every other partner's.
    await withinWriteBudget(tx, p, 'annotations', now);
    await createAnnotation(tx, row);
    // The KPI named: the audit log shows the entry only to those who may read it.
    const details = { kpi: kpi.id, scope: row.scope, from: row.period_from, to: row.period_to };
    await auditAs(tx, p, 'annotation.created', row.id, details, now);
  });
  return annotationView(row);
}

/** An annotation the caller may see (its KPI visible), or 404. */
export async function visibleAnnotation(room: Room, p: Principal, id: string): Promise<AnnotationRow> {
  const row = await findAnnotation(room.control.db, id);
  const kpi = row && room.agreement().agreement.kpis.find((k) => k.id === row.kpi);
  if (!row || !kpi || !canSee(p, kpi)) throw notFound(`no annotation ${JSON.stringify(id.slice(0, 60))} for you`);
  return row;
}

export async function editAnnotation(
  room: Room,
  p: Principal,
  id: string,
  patch: { scope?: string | undefined; from?: string | undefined; to?: string | undefined; text?: string | undefined },
): Promise<Annotation> {
  const row = await visibleAnnotation(room, p, id);
  if (!isAuthor(p, row)) throw forbidden('only its author may edit an annotation');
  const agreement = room.agreement().agreement;
  const kpi = agreement.kpis.find((k) => k.id === row.kpi)!;
  const next = {
    scope: patch.scope ?? row.scope,
    period_from: patch.from ?? row.period_from,
    period_to: patch.to ?? (patch.from && patch.from > row.period_to ? patch.from : row.period_to),
    text: patch.text ?? row.text,
  };
  if (patch.scope) checkScope(agreement, kpi, patch.scope);
  if (next.period_to < next.period_from) throw badRequest('to must not be before from', 'body.to');
  const now = room.clock.now();
  const updated = await inTransaction(room.control.db, async (tx) => {
    const r = await updateAnnotation(tx, id, row.version, { ...next, updated_at: now });
    if (!r) return undefined;
    await auditAs(tx, p, 'annotation.edited', id, { kpi: row.kpi, version: r.version }, now);
    return r;
  });
  if (!updated) throw conflict('the annotation changed meanwhile; read it again');
  return annotationView(updated);
}

/** What a thread is on, for the caller: the KPIs it concerns (who may read it) and a title for e-mails. */
interface ThreadTarget {
  kpis: Kpi[];
  title: string;
  /** Only the steering committee may be mentioned (a proposal is read by admins and steering). */
  steeringOnly: boolean;
}

export async function threadTarget(room: Room, p: Principal, kind: ThreadKind, id: string): Promise<ThreadTarget> {
  const agreement = room.agreement().agreement;
  const hidden = () => notFound(`no ${kind} ${JSON.stringify(id.slice(0, 60))} for you`);
  const kpiOf = (kpiId: string) => {
    const k = agreement.kpis.find((x) => x.id === kpiId);
    if (!k || !canSee(p, k)) throw hidden();
    return k;
  };
  switch (kind) {
    case 'incident': {
      const inc = await findIncidentById(room.control.db, id);
      if (!inc) throw hidden();
      const k = kpiOf(inc.kpi);
      return { kpis: [k], title: `incident ${inc.id} (${k.title}, ${inc.scope})`, steeringOnly: false };
    }
    case 'annotation': {
      const a = await visibleAnnotation(room, p, id);
      const k = kpiOf(a.kpi);
      return { kpis: [k], title: `a note on ${k.title} (${a.period_from} to ${a.period_to})`, steeringOnly: false };
    }
    case 'goal': {
      const g = agreement.goals.find((x) => x.id === id);
      if (!g) throw hidden();
      const k = kpiOf(g.kpi);
      return { kpis: [k], title: `the goal ${g.title}`, steeringOnly: false };
    }
    case 'proposal': {
      requireRole(p, 'admin', 'steering', 'operator');
      const prop = await findProposalById(room.control.db, id);
      if (!prop) throw hidden();
      return { kpis: [], title: `the agreement proposal ${prop.id}`, steeringOnly: true };
    }
  }
}

/** The people of the partnership by e-mail: steering, contacts, KPI and goal owners, need-to-know readers. */
export function people(agreement: Agreement): Map<string, { name: string; partnerId: string | null }> {
  const out = new Map<string, { name: string; partnerId: string | null }>();
  const add = (email: string, name: string, partnerId: string | null) => {
    if (!out.has(email.toLowerCase())) out.set(email.toLowerCase(), { name, partnerId });
  };
  for (const s of agreement.steering) add(s.email, s.name, null);
  for (const p of agreement.partners) for (const c of p.contacts) add(c.email, c.name, p.id);
  for (const k of agreement.kpis) for (const [pid, o] of Object.entries(k.owners)) add(o.email, o.name, pid);
  for (const g of agreement.goals) for (const [pid, o] of Object.entries(g.owners)) add(o.email, o.name, pid);
  for (const k of agreement.kpis) for (const e of k.needToKnow) add(e, e, null);
  return out;
}

/** Whether a message about `kpi` may go to `email`: anyone of the partnership, for a need-to-know KPI only its readers. */
export function mayReceive(agreement: Agreement, kpi: Kpi, email: string): boolean {
  return kpi.disclosure !== 'need_to_know' || mayReadNeedToKnow(agreement, kpi, email);
}

const MENTION = /(?:^|[^\w@.])@([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)/g;

/**
 * The people a comment mentions: each must be a person of the partnership who may read what the
 * thread is on (a need-to-know KPI's readers only; a proposal's: the steering committee), else 400
 * naming `text` — a mention never sends a thread's words to someone who may not read them.
 */
export function mentionedPeople(agreement: Agreement, text: string, target: ThreadTarget): Recipient[] {
  const known = people(agreement);
  const steering = new Set(agreement.steering.map((s) => s.email.toLowerCase()));
  const out: Recipient[] = [];
  for (const m of text.matchAll(MENTION)) {
    const email = m[1]!.replace(/\.+$/, '');
    const person = known.get(email.toLowerCase());
    if (!person)
      throw badRequest(`@${email} is not a person of this partnership (steering, contacts, owners)`, 'body.text');
    const may = target.steeringOnly
      ? steering.has(email.toLowerCase())
      : target.kpis.every((k) => mayReceive(agreement, k, email));
    if (!may) throw badRequest(`@${email} may not read what this thread is about`, 'body.text');
    if (!out.some((r) => r.email.toLowerCase() === email.toLowerCase()))
      out.push({ partnerId: person.partnerId, name: person.name, email });
  }
  return out;
}

/**
 * The comments, notes or retrospective items one partner's users (or one partnerless person) may
 * write in an hour, each.
 */
export const WRITES_PER_HOUR = 60;

/**
 * The mentions of one person by one author (a partner's users together, or one partnerless
 * person) the room mails in an hour: within the comment budget, one partner could otherwise mail
 * the same person 60 times an hour.
 */
export const MENTIONS_PER_PERSON_HOUR = 10;

/** Whose budgets a write counts against: the partner's users together, or one partnerless person. */
const authorOf = (p: Principal) => (p.partnerId !== null ? { partner: p.partnerId } : { name: p.name });
const authorName = (p: Principal) => (p.partnerId !== null ? `partner ${p.partnerId}` : p.name);

/**
 * Takes, until `tx` ends, the lock of the `kind` budget `p`'s writes count against (lockBudget):
 * its partner's users together, or one partnerless person.
 */
export function lockWriterBudget(tx: ControlTx, kind: string, p: Principal): Promise<void> {
  const author = authorOf(p);
  return lockBudget(tx, `${kind} ${'partner' in author ? `partner:${author.partner}` : `name:${author.name}`}`);
}

/**
 * Refuses (429 with Retry-After, naming `body.text`) a comment mentioning someone its author has
 * mentioned MENTIONS_PER_PERSON_HOUR times in the last hour. Call it under the comment budget's
 * lock (withinWriteBudget), which orders the author's comments.
 */
async function withinMentionBudget(tx: ControlTx, p: Principal, recipients: readonly Recipient[], now: Date) {
  const counts = await countMentionsSince(
    tx,
    authorOf(p),
    recipients.map((r) => r.email),
    new Date(now.getTime() - 3_600_000),
  );
  const over = recipients.find((r) => (counts.get(r.email.toLowerCase()) ?? 0) >= MENTIONS_PER_PERSON_HOUR);
  if (!over) return;
  throw new Problem(
    429,
    'Too Many Requests',
    `${authorName(p)} mentioned ${over.email} ${counts.get(over.email.toLowerCase())} times in the last hour, the most the room mails one person; write without the mention, or later`,
    { field: 'body.text' },
    { 'retry-after': '600' },
  );
}

/**
 * Refuses (429 with Retry-After) a write past the author's hourly budget of its kind: a partner's
 * users together, so that one partner's flood can neither bury the others' notes, items and
 * comments nor mail other people without end. Counted in the write's transaction, under the
 * budget's lock: call it before the transaction takes any other lock (the audit chain's).
 */
export async function withinWriteBudget(
  tx: ControlTx,
  p: Principal,
  table: 'comments' | 'annotations' | 'retro_items',
  now: Date,
): Promise<void> {
  const author = authorOf(p);
  // Counted and written by one request of this author at a time (the count sees what the one
  // before committed).
  await lockWriterBudget(tx, table, p);
  const recent = await countWrittenSince(tx, table, author, new Date(now.getTime() - 3_600_000));
  if (recent < WRITES_PER_HOUR) return;
  const what = { comments: 'comments', annotations: 'notes', retro_items: 'retrospective items' }[table];
  throw new Problem(
    429,
    'Too Many Requests',
    `${authorName(p)} wrote ${recent} ${what} in the last hour, the most the room takes; write again later`,
    {},
    { 'retry-after': '600' },
  );
}

export async function addComment(
  room: Room,
  p: Principal,
  kind: ThreadKind,
  id: string,
  text: string,
): Promise<{ comment: Comment; notified: number }> {
  const target = await threadTarget(room, p, kind, id);
  const agreement = room.agreement().agreement;
  // Only the people the caller may know of: a need-to-know KPI's readers are not named to others.
  const recipients = mentionedPeople(
    shareableAgreement(agreement, (k) => canSee(p, k)),
    text,
    target,
  );
  const now = room.clock.now();
  const row: CommentRow = {
    id: newId('cmt'),
    target_kind: kind,
    target_id: id,
    text,
    author_partner: p.partnerId,
    author_name: p.name,
    mentions: recipients.map((r) => r.email),
    created_at: now,
  };
  const notified = await inTransaction(room.control.db, async (tx) => {
    // A red team's analyst wrote 1,001 comments in 5 s, each mentioning ten people (10,010 e-mails).
    await withinWriteBudget(tx, p, 'comments', now);
    await withinMentionBudget(tx, p, recipients, now);
    await createComment(tx, row);
    await auditAs(
      tx,
      p,
      'comment.created',
      row.id,
      { on: kind, id, kpis: target.kpis.map((k) => k.id), mentions: recipients.length },
      now,
    );
    if (!recipients.length) return 0;
    const subject = `${p.name} mentioned you on ${target.title}`;
    const link = room.config.publicUrl ? `\n\n${room.config.publicUrl}` : '';
    return enqueueMessages(tx, room, {
      payload: {
        type: documentEventSchema.enum['comment.mention'],
        timestamp: now.toISOString(),
        data: {
          id: row.id,
          digest: createHash('sha256').update(text).digest('hex'),
          kpis: target.kpis.map((k) => k.id),
          snapshot: room.duck.snapshots.latest,
          subject,
          text: `${p.name} wrote on ${target.title}:\n\n${text}${link}\n`,
          // The comment is text: escaped, never markup.
          html: `<p>${escapeHtml(p.name)} wrote on ${escapeHtml(target.title)}:</p><blockquote style="white-space:pre-wrap">${escapeHtml(text)}</blockquote>`,
        },
      },
      about: { comment_id: row.id },
      recipients,
      now,
    });
  });
  return { comment: commentView(row), notified };
}

/** A thread's comments, and the KPIs it concerns (its audit entry names them: only their readers see it). */
export async function readThread(
  room: Room,
  p: Principal,
  kind: ThreadKind,
  id: string,
): Promise<{ comments: Comment[]; kpis: string[] }> {
  const target = await threadTarget(room, p, kind, id);
  const comments = (await listComments(room.control.db, kind, id, 1000)).map(commentView);
  return { comments, kpis: target.kpis.map((k) => k.id) };
}
