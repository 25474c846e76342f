import { generateDemoPoints, type DemoPoint } from '../fixtures/demo-generator.js';
import { createToken, countTokens, type Role } from '../services/governance/token-repository.js';
import type { BatchLander } from '../services/ingest/batch-lander.js';
import { createLander } from '../services/ingest/ingest-routes.js';
import { addAnnotation, addComment, people } from '../services/feedback/feedback-service.js';
import { addRetroAction, addRetroItem, completeAction } from '../services/feedback/retrospectives.js';
import { maintenanceWindows, windowAt } from '../services/platform/maintenance.js';
import type { Room } from '../services/platform/room.js';
import { acknowledgeDrill, escalateDueDrills, startDrill } from '../services/alerts/drills.js';
import { recordDecision } from '../services/steering/steering-service.js';
import { createInvitation } from '../services/governance/invitations.js';
import { decide, propose, proposedAgreement } from '../services/governance/proposal-service.js';
import { diffAgreements } from '../services/governance/agreement-diff.js';
import type { Agreement } from '../services/platform/agreement-schema.js';

export interface DemoToken {
  partner: string | null;
  role: Role;
  name: string;
  token: string;
}

/** Creates the demo's tokens once (a room with any token is left alone); they are shown once. */
export async function createDemoTokens(room: Room): Promise<DemoToken[]> {
  if ((await countTokens(room.control.db)) > 0) return [];
  const out: DemoToken[] = [];
  const now = room.clock.now();
  for (const p of room.agreement().agreement.partners) {
    // Owners sign in under the e-mail the agreement names them by: that is what makes them the
    // named owner who may acknowledge and resolve their KPIs' incidents.
    const owners = [
      ...new Set(room.agreement().agreement.kpis.flatMap((k) => (k.owners[p.id] ? [k.owners[p.id]!.email] : []))),
    ];
    const wanted: [Role, string][] = [
      ['ingest', `${p.id} ingest (demo)`],
      ['analyst', `${p.id} analyst (demo)`],
      ['admin', `${p.id} admin (demo)`],
      ...owners.map((e): [Role, string] => ['owner', e]),
    ];
    for (const [role, name] of wanted) {
      const { token, id } = await createToken(room.control.db, { partnerId: p.id, role, name }, now);
      await room.audit({
        actor: 'system',
        partnerId: p.id,
        action: 'token.created',
        target: id,
        details: { role, name },
      });
      out.push({ partner: p.id, role, name, token });
    }
  }
  const first = room.agreement().agreement.partners[0]!.id;
  const steering = await createToken(
    room.control.db,
    { partnerId: first, role: 'steering', name: 'steering committee (demo)' },
    now,
  );
  out.push({ partner: first, role: 'steering', name: 'steering committee (demo)', token: steering.token });
  const operator = await createToken(
    room.control.db,
    { partnerId: null, role: 'operator', name: 'room operator (demo)' },
    now,
  );
  out.push({ partner: null, role: 'operator', name: 'room operator (demo)', token: operator.token });
  return out;
}

const DAY = 86_400_000;
const HOUR = 3_600_000;

/**
 * When a partner's nightly delivery of day `day` (a UTC midnight) reaches the room: the next
 * night, acme at 02:00 UTC and the others at 03:30; globex is late on the 9th and the 23rd (its
 * job runs a day and a half behind); a delivery due inside one of the partner's maintenance
 * windows comes half an hour after it ends. Never after `now`. This is what the service levels'
 * feed attainment of the demo's reviews measures.
 */
export function demoDeliveryTime(room: Room, partner: string, day: Date, now: Date): Date {
  const index = room.agreement().agreement.partners.findIndex((p) => p.id === partner);
  let at = day.getTime() + DAY + (index === 0 ? 2 : 3.5) * HOUR;
  if (partner === 'globex' && [9, 23].includes(day.getUTCDate())) at += 30 * HOUR;
  const windows = maintenanceWindows(room.agreement().agreement, partner);
  for (let inside = windowAt(windows, new Date(at)); inside; inside = windowAt(windows, new Date(at)))
    at = inside.to.getTime() + HOUR / 2;
  return new Date(Math.min(at, now.getTime()));
}

/**
 * Lands two years of generated points per partner, once: a room that already holds a batch
 * keeps its data. Points go through the same lander as HTTP ingest (checked, pseudonymised). The
 * history before the last `deliveryDays` days comes as one batch per partner; each of those days
 * comes as its own nightly batch, received when {@link demoDeliveryTime} says, so the feeds'
 * punctuality (service levels) has a history to measure.
 */
export async function seedDemoPoints(
  room: Room,
  opts: {
    seed?: number;
    to?: Date;
    /** The first instant (default: two years before `to`); the browser tests seed less. */
    from?: Date;
    /** The days before `to` delivered night by night (default 61: the last closed month and the open one). */
    deliveryDays?: number;
    /**
     * An agreement document the partners co-sign once the history has landed, before the first
     * night (the demo: the file's agreement over {@link demoFirstVersion}); nothing if it is the
     * agreement in force.
     */
    amend?: unknown;
    onProgress?: (partner: string, points: number) => void;
  } = {},
): Promise<number> {
  if (room.duck.snapshots.latest > 0) return 0;
  const now = room.clock.now();
  const to = opts.to ?? startOfUtcDay(now);
  const cutoff = new Date(to.getTime() - (opts.deliveryDays ?? 61) * DAY);
  // The demo's deliveries are received when their night came, not when the demo starts.
  let receivedAt = now;
  const lander = createLander(room, { now: () => receivedAt });
  let total = 0;
  try {
    /** One partner's generated points, read in order: a batch takes the points before its end. */
    const feeds = room.agreement().agreement.partners.map((p) => {
      let n = 0;
      const points = generateDemoPoints(room.agreement().agreement, p.id, {
        seed: opts.seed ?? 42,
        to,
        ...(opts.from ? { from: opts.from } : {}),
      });
      let pending: IteratorResult<DemoPoint> = points.next();
      return {
        partner: p.id,
        /** The points before `until`, in NDJSON chunks of 5,000 lines. */
        async *body(until: number): AsyncGenerator<Buffer> {
          let lines: string[] = [];
          for (; !pending.done && Date.parse(pending.value.at) < until; pending = points.next()) {
            lines.push(JSON.stringify(pending.value));
            if (lines.length === 5000) {
              n += lines.length;
              opts.onProgress?.(p.id, n);
              yield Buffer.from(lines.join('\n') + '\n');
              lines = [];
            }
          }
          n += lines.length;
          opts.onProgress?.(p.id, n);
          if (lines.length) yield Buffer.from(lines.join('\n') + '\n');
        },
        hasBefore: (until: number) => !pending.done && Date.parse(pending.value.at) < until,
      };
    });
    for (const f of feeds)
      if (f.hasBefore(cutoff.getTime())) {
        receivedAt = new Date(Math.min(cutoff.getTime(), now.getTime()));
        total += await landDemoBatch(room, lander, f.partner, f.body(cutoff.getTime()), `demo-seed-${f.partner}`);
      }
    if (opts.amend !== undefined) await coSignDemoVersion(room, opts.amend, cutoff);
    // The nights as they reach the room: each partner's in day order (a job running behind
    // delivers its days in turn), the partners' interleaved by arrival, as in a real partnership
    // (not one partner's nights after the other's). The release step's guard on quantiles
    // (docs/privacy.md §2.3) holds a partner's second move in a row of a median until the other
    // partner's data there changes; landed one partner after the other, it held all of the
    // second partner's nights.
    const next = feeds.map(() => cutoff.getTime());
    for (;;) {
      let pick = -1;
      let at = Infinity;
      feeds.forEach((f, i) => {
        const day = next[i]!;
        if (day >= to.getTime()) return;
        const when = demoDeliveryTime(room, f.partner, new Date(day), now).getTime();
        if (when < at) [pick, at] = [i, when];
      });
      if (pick < 0) break;
      const f = feeds[pick]!;
      const day = next[pick]!;
      next[pick] = day + DAY;
      if (!f.hasBefore(day + DAY)) continue;
      receivedAt = new Date(at);
      const key = `demo-seed-${f.partner}-${new Date(day).toISOString().slice(0, 10)}`;
      total += await landDemoBatch(room, lander, f.partner, f.body(day + DAY), key);
    }
    receivedAt = now;
    return total + (await landLateCorrection(room, lander, to));
  } finally {
    await lander.close();
  }
}

/**
 * The demo's first version: the file's agreement without lead time by the day. The partners
 * agreed days later ({@link coSignDemoVersion}), so the dashboard shows what an agreement change
 * does to what was served before it: every day before the change stays withheld (reason
 * `version`; docs/privacy.md §3), since a day set against its week, which readers kept from the
 * first version, could give one partner's single order.
 */
export function demoFirstVersion(a: Agreement): Agreement {
  return {
    ...a,
    kpis: a.kpis.map((k) =>
      k.id === 'lead_time' && k.grains.length > 1 ? { ...k, grains: k.grains.filter((g) => g !== 'day') } : k,
    ),
  };
}

/** Where the demo's history begins: two years (730 days) before today's UTC midnight. */
export function demoHistoryStart(now: Date): Date {
  return new Date(startOfUtcDay(now).getTime() - 730 * DAY);
}

/**
 * The version the demo's partners co-sign when the nightly deliveries begin: the first partner's
 * admin proposes it a week before, the second approves it an hour after the history landed. It
 * comes into force as a snapshot of its own (DuckStore.adoptAgreement), between the history and
 * the first night.
 */
async function coSignDemoVersion(room: Room, document: unknown, cutoff: Date): Promise<void> {
  const active = room.agreement();
  if (diffAgreements(active.agreement, proposedAgreement(document)).length === 0) return;
  const [first, second] = active.agreement.partners;
  if (!first || !second) return;
  const at = (d: Date): Room => ({ ...room, clock: { now: () => d } });
  const admin = (partnerId: string) => ({
    tokenId: 'system',
    partnerId,
    role: 'admin' as const,
    name: `${partnerId} admin (demo)`,
  });
  const proposal = await propose(at(new Date(cutoff.getTime() - 7 * DAY)), admin(first.id), {
    document,
    reason: "Planners want lead time by the day: next week's slots are planned from last week's days.",
  });
  await decide(at(new Date(cutoff.getTime() + HOUR)), admin(second.id), proposal.id, 'approve', 'Agreed.', {
    error: (obj, msg) => console.error(msg, obj),
  });
  if (room.agreement().version === active.version)
    throw new Error(`the demo's version ${active.version + 1} did not come into force (see the error above)`);
}

/** One NDJSON batch of the demo through the lander, with its audit entry; the points accepted. */
async function landDemoBatch(
  room: Room,
  lander: BatchLander,
  partnerId: string,
  body: AsyncIterable<Buffer>,
  idempotencyKey: string,
): Promise<number> {
  const { receipt } = await lander.land({
    partnerId,
    kind: 'ndjson',
    contentType: 'application/x-ndjson',
    body,
    idempotencyKey,
    partial: false,
  });
  await room.audit({
    actor: 'system',
    partnerId,
    action: 'ingest.landed',
    target: receipt.batchId,
    details: { snapshot: receipt.snapshot, contentType: 'application/x-ndjson', demo: true },
  });
  return receipt.accepted;
}

/**
 * The demo's late correction: the second partner resends two orders of a closed working day
 * (the Wednesday of the week before last). Their change is below the agreement's threshold, so
 * that day's lead time, its week and its month stay at their earlier values — held, with the
 * snapshot they are from (docs/privacy.md §3) — until more of that day arrives: the dashboard
 * shows what one late point does (nothing).
 */
async function landLateCorrection(room: Room, lander: BatchLander, to: Date): Promise<number> {
  const agreement = room.agreement().agreement;
  const partner = agreement.partners[1] ?? agreement.partners[0]!;
  if (!agreement.kpis.some((k) => k.id === 'lead_time')) return 0;
  // The Wednesday of the week before last: a closed working day with both partners' orders.
  const back = 8 + ((new Date(to.getTime() - 8 * 86_400_000).getUTCDay() + 4) % 7);
  const day = new Date(to.getTime() - back * 86_400_000).toISOString().slice(0, 10);
  const points = [31.5, 44].map((value, i) => ({
    kpi: 'lead_time',
    at: `${day}T10:0${i}:00Z`,
    value,
    subject: `${partner.id.toUpperCase()}-ORD-LATE-${i + 1}`,
    dims: { region: 'north' },
  }));
  const body = (async function* () {
    yield Buffer.from(points.map((p) => JSON.stringify(p)).join('\n') + '\n');
  })();
  return landDemoBatch(room, lander, partner.id, body, `demo-late-${partner.id}`);
}

function startOfUtcDay(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}

/**
 * The demo's conversation (issue #15): two notes on the charts — globex's strike in October on its
 * lead time, acme's address check going live on its error rate — and a thread on the lead-time goal
 * in which acme asks globex (a mention: kept in the outbox without SMTP) and globex answers; and
 * October's retrospective, with one action done and one still open (overdue).
 */
export async function seedDemoFeedback(room: Room): Promise<void> {
  const a = room.agreement().agreement;
  // Only on the demo agreement (or one as rich): every KPI, goal and person the conversation names.
  const known = people(a);
  const ready =
    ['acme', 'globex'].every((id) => a.partners.some((p) => p.id === id)) &&
    ['lead_time', 'error_rate'].every((id) =>
      a.kpis.some((k) => k.id === id && k.breakdown === 'per_partner' && k.disclosure !== 'need_to_know'),
    ) &&
    a.goals.some((g) => g.id === 'faster_delivery') &&
    ['ana@acme.example', 'gus@globex.example', 'chair@example.org'].every((e) => known.has(e));
  if (!ready) return;
  const as = (partnerId: string, name: string) => ({ tokenId: 'system', partnerId, role: 'analyst' as const, name });
  const gus = as('globex', 'gus@globex.example');
  const ana = as('acme', 'ana@acme.example');
  await addAnnotation(room, gus, 'lead_time', {
    scope: 'globex',
    from: '2026-10-12',
    to: '2026-10-16',
    text: 'Strike at our north hub: deliveries from the north waited for the weekend shift.',
  });
  await addAnnotation(room, ana, 'error_rate', {
    scope: 'acme',
    from: '2026-10-05',
    text: 'Address validation at checkout went live (see the goal on failed deliveries).',
  });
  await addComment(
    room,
    ana,
    'goal',
    'faster_delivery',
    'We missed the October milestone by two hours. Our Saturday shift in the south ends in December: @gus@globex.example could Globex cover it?',
  );
  await addComment(
    room,
    gus,
    'goal',
    'faster_delivery',
    'Yes, from 5 December; we will show it in the November review.',
  );
  await addRetroItem(room, ana, '2026-10', {
    kind: 'strengthened',
    text: 'Globex told us about the strike on day one, with its own numbers in the room.',
  });
  await addRetroItem(room, gus, '2026-10', {
    kind: 'weakened',
    text: "Globex's nightly feed was late twice: Acme's planners waited on it.",
  });
  const done = await addRetroAction(room, ana, '2026-10', {
    description: 'Share a strike and outage plan between both hubs',
    owner: 'ana@acme.example',
    due: '2026-11-06',
  });
  await completeAction(
    room,
    { tokenId: 'system', partnerId: null, role: 'steering', name: 'chair@example.org' },
    done.id,
  );
  await addRetroAction(room, gus, '2026-10', {
    description: "Move Globex's nightly export an hour earlier and alert on a late run",
    owner: 'gus@globex.example',
    due: '2026-11-20',
  });
}

/**
 * The demo committee's record (issue #15): a decision superseded by a later one, and a drill on
 * Globex's lead time run through the real chain two weeks ago — nobody acknowledged within its
 * 30 minutes, so it went to the committee, and Gus acknowledged eleven minutes later. Each step
 * runs the services at its own time (the room's clock, seen from that moment).
 */
export async function seedDemoSteering(room: Room): Promise<void> {
  const a = room.agreement().agreement;
  const lead = a.kpis.find((k) => k.id === 'lead_time');
  const members = ['chair@example.org', 'deputy@example.org'];
  if (
    !lead?.owners['globex'] ||
    lead.breakdown !== 'per_partner' ||
    !members.every((e) => a.steering.some((s) => s.email === e))
  )
    return;
  const at = (d: Date): Room => ({ ...room, clock: { now: () => d } });
  const chair = { tokenId: 'system', partnerId: null, role: 'steering' as const, name: 'chair@example.org' };
  const today = startOfUtcDay(room.clock.now());
  const daysAgo = (n: number, h = 9, m = 0) => new Date(today.getTime() - n * DAY + (h * 60 + m) * 60_000);
  const day = (d: Date) => d.toISOString().slice(0, 10);

  const first = await recordDecision(at(daysAgo(24, 16)), chair, {
    title: 'Feeds are checked by hand every Monday',
    context: "Globex's nightly feed arrived late twice in October; Acme's planners waited on it.",
    options: ['Check every feed by hand each Monday', 'Alert on a late run automatically', 'Do nothing'],
    decision: 'Each partner checks its feeds by hand every Monday morning and reports in the room.',
    decisionMakers: members,
    date: day(daysAgo(24)),
    consequences: 'Ten minutes a week for each partner; a late feed may go unnoticed for up to a week.',
    incidents: [],
    agreementVersions: [room.agreement().version],
  });
  await recordDecision(at(daysAgo(10, 16)), chair, {
    title: 'A late feed raises an alert the same night',
    context: 'The Monday checks found one late run a week after it happened (decision D-1).',
    options: ['Keep the Monday checks', 'Alert on a late run the same night'],
    decision: "Each partner's export alerts its own on-call engineer when it runs late; the Monday check ends.",
    decisionMakers: members,
    date: day(daysAgo(10)),
    consequences: 'Late runs are fixed the same night; the Monday check is no longer needed.',
    incidents: [],
    agreementVersions: [room.agreement().version],
    supersedes: first.id,
  });

  const started = daysAgo(14, 10);
  const drill = await startDrill(at(started), chair, { kpi: 'lead_time', scope: 'globex', ackWithin: 'PT30M' });
  await escalateDueDrills(at(new Date(started.getTime() + 31 * 60_000)));
  await acknowledgeDrill(
    at(new Date(started.getTime() + 42 * 60_000)),
    { tokenId: 'system', partnerId: 'globex', role: 'owner', name: lead.owners['globex'].email },
    drill.id,
  );
}

/**
 * One-time sign-in links for the demo's people, new at every start (valid 24 h): an analyst and
 * an admin of each partner, each partner's first KPI owner, and the committee's first member. A
 * link signs its person in once, as an invitation from their partner's admin would.
 */
export async function createDemoInvitations(
  room: Room,
): Promise<{ partner: string; role: string; email: string; path: string }[]> {
  const a = room.agreement().agreement;
  const out: { partner: string; role: string; email: string; path: string }[] = [];
  for (const p of a.partners) {
    const admin = { tokenId: 'system', partnerId: p.id, role: 'admin' as const, name: `${p.id} admin (demo)` };
    const owner = a.kpis.map((k) => k.owners[p.id]?.email).find((e) => e !== undefined);
    const domain = owner?.split('@')[1] ?? `${p.id}.example`;
    const people: ['analyst' | 'owner' | 'admin' | 'steering', string][] = [
      ['analyst', `analyst@${domain}`],
      ...(owner ? [['owner', owner] as ['owner', string]] : []),
      ['admin', `admin@${domain}`],
    ];
    if (p.id === a.partners[0]!.id) people.push(['steering', a.steering[0]!.email]);
    for (const [role, email] of people) {
      // The demo is the room's host: it invites its committee's chair and the named owners itself.
      const inv = await createInvitation(room, admin, { email, role, expiresInHours: 24 }, '', { asHost: true });
      out.push({ partner: p.id, role, email, path: inv.link });
    }
  }
  return out;
}
