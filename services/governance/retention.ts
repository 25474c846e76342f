import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Room } from '../platform/room.js';
import { localToday } from '../platform/calendar.js';
import { durationParts } from '../platform/agreement-schema.js';

/** The pseudo-partner of the room's own changes to the points (a retention run). */
export const ROOM_PARTNER = '(room)';

export interface RetentionResult {
  /** Points on local days before this one are deleted. */
  before: string | null;
  deleted: number;
  perKpi: Record<string, number>;
  snapshot: number | null;
}

/**
 * The first local day still kept: today minus the retention, counted on the calendar (P3Y from
 * 2026-11-23 is 2023-11-23); a time part (PT36H) counts in whole days, rounded up.
 */
export function retentionHorizon(today: string, retention: string): string {
  const p = durationParts(retention);
  const days = p.weeks * 7 + p.days + Math.ceil((p.hours * 3600 + p.minutes * 60 + p.seconds) / 86_400);
  const [y, mo, d] = today.split('-').map(Number) as [number, number, number];
  // Months first, clamped to the month's end (2026-03-31 minus P1M is 2026-02-28), then days.
  const first = new Date(Date.UTC(y - p.years, mo - 1 - p.months, 1));
  const lastDay = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate();
  return new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), Math.min(d, lastDay) - days))
    .toISOString()
    .slice(0, 10);
}

/**
 * Deletes the points older than the agreement's `retention`, whole local days at a time (so a
 * run deletes something at most once a day). The deletion is a snapshot of its own, like a
 * batch: caches and rollups of the KPIs it touched move on, and its count is an audit entry.
 * Results as of an earlier snapshot can no longer be reproduced from deleted points, so such
 * a `?snapshot=` is refused (resolveRange). The store deletes (DuckStore.retirePoints): it waits
 * for the batches landing now and their release steps, and holds ingest (every writer slot) while
 * it deletes.
 */
export async function runRetention(room: Room, log?: Pick<Logger, 'info'>): Promise<RetentionResult> {
  const a = room.agreement().agreement;
  if (!a.retention) return { before: null, deleted: 0, perKpi: {}, snapshot: null };
  const now = room.clock.now();
  const before = retentionHorizon(localToday(now, a.partnership.timezone), a.retention);
  const retired = await room.duck.retirePoints(before, {
    id: `retention-${randomUUID()}`,
    partner: ROOM_PARTNER,
    at: now,
    agreementVersion: room.agreement().version,
  });
  if (!retired) return { before, deleted: 0, perKpi: {}, snapshot: null };
  const { deleted, perKpi, snapshot } = retired;
  await room.audit({
    actor: 'system',
    partnerId: null,
    action: 'retention.deleted',
    // No counts: the total minus one's own deleted points is the others' volume (docs/privacy.md §3).
    details: { kpis: Object.keys(perKpi).sort(), before, retention: a.retention, snapshot },
  });
  log?.info(`retention: deleted points on local days before ${before} (snapshot ${snapshot})`);
  return { before, deleted, perKpi, snapshot };
}

/** Runs retention at start and then every `everyMs`; the function it returns stops it (waiting for a run). */
export function scheduleRetention(
  room: Room,
  everyMs: number,
  log: Pick<Logger, 'info' | 'error'>,
): () => Promise<void> {
  if (everyMs <= 0) return () => Promise.resolve();
  let running: Promise<unknown> = Promise.resolve();
  let stopped = false;
  let busy = false;
  const tick = () => {
    if (stopped || busy) return;
    busy = true;
    running = runRetention(room, log)
      .catch((err: unknown) => log.error({ err }, 'retention run failed; it is retried at the next interval'))
      .finally(() => (busy = false));
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  setImmediate(tick);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}
