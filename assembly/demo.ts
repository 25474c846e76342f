import { generateDemoPoints } from '../fixtures/demo-generator.js';
import { createToken, countTokens, type Role } from '../services/governance/token-repository.js';
import type { BatchLander } from '../services/ingest/batch-lander.js';
import type { Room } from '../services/platform/room.js';

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

/**
 * Lands two years of generated points per partner, once: a room that already holds a batch
 * keeps its data. Points go through the same lander as HTTP ingest (checked, pseudonymised).
 */
export async function seedDemoPoints(
  room: Room,
  lander: BatchLander,
  opts: {
    seed?: number;
    to?: Date;
    /** The first instant (default: two years before `to`); the browser tests seed less. */
    from?: Date;
    onProgress?: (partner: string, points: number) => void;
  } = {},
): Promise<number> {
  if (room.duck.snapshots.latest > 0) return 0;
  const to = opts.to ?? startOfUtcDay(room.clock.now());
  let total = 0;
  for (const p of room.agreement().agreement.partners) {
    let n = 0;
    const agreement = room.agreement().agreement;
    async function* body(): AsyncGenerator<Buffer> {
      let lines: string[] = [];
      for (const point of generateDemoPoints(agreement, p.id, {
        seed: opts.seed ?? 42,
        to,
        ...(opts.from ? { from: opts.from } : {}),
      })) {
        lines.push(JSON.stringify(point));
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
    }
    total += await landDemoBatch(room, lander, p.id, body(), `demo-seed-${p.id}`);
  }
  return total + (await landLateCorrection(room, lander, to));
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
