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
 * a `?snapshot=` is refused (resolveRange). It waits for the batches landing now and holds
 * ingest (every writer slot) while it deletes.
 */
export async function runRetention(room: Room, log?: Pick<Logger, 'info'>): Promise<RetentionResult> {
  const a = room.agreement().agreement;
  if (!a.retention) return { before: null, deleted: 0, perKpi: {}, snapshot: null };
  const now = room.clock.now();
  const before = retentionHorizon(localToday(now, a.partnership.timezone), a.retention);
  const duck = room.duck;
  // Every writer slot first: no batch is landing, so no earlier snapshot is pending when the
  // deletion takes its number, and readers at the watermark never see the deletion early.
  const slots: (() => void)[] = [];
  const conn = await duck.connect();
  let snapshot: number | undefined;
  let open = false;
  try {
    for (let i = 0; i < duck.slots.size; i++) slots.push(await duck.slots.acquire());
    await conn.run('BEGIN TRANSACTION');
    open = true;
    // Counted inside the transaction: what it counts is what its DELETE removes.
    const counts = (
      await conn.runAndReadAll(
        `SELECT kpi, count(*)::BIGINT AS n, min(local_day)::VARCHAR AS lo, max(local_day)::VARCHAR AS hi FROM points WHERE local_day < $1::DATE GROUP BY kpi ORDER BY kpi`,
        [before],
      )
    ).getRowObjectsJson();
    if (counts.length === 0) {
      await conn.run('ROLLBACK');
      open = false;
      return { before, deleted: 0, perKpi: {}, snapshot: null };
    }
    snapshot = duck.snapshots.reserve();
    const deleted = Number(
      (await conn.runAndReadAll('DELETE FROM points WHERE local_day < $1::DATE', [before])).rowsChanged,
    );
    const perKpi = Object.fromEntries(counts.map((c) => [String(c['kpi']), Number(c['n'])]));
    const kpis = Object.keys(perKpi);
    await conn.run(
      `INSERT INTO batches (id, snapshot, partner, idempotency_key, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at, kpis)
       VALUES ($1, $2, $3, NULL, '', 'retention', 0, 0, '', $4, $5, $6::TIMESTAMPTZ, $6::TIMESTAMPTZ, string_split($7, ','))`,
      [
        `retention-${randomUUID()}`,
        snapshot,
        ROOM_PARTNER,
        JSON.stringify({ deleted, before }),
        room.agreement().version,
        now.toISOString(),
        kpis.join(','),
      ],
    );
    await conn.run(`INSERT OR REPLACE INTO room_settings VALUES ('retired_before_snapshot', $1)`, [String(snapshot)]);
    // The rollups recompute these days once the snapshot is visible (rollups.ts reads and clears them).
    for (const c of counts) {
      const key = `rollup_removed:${String(c['kpi'])}`;
      const prev = (
        await conn.runAndReadAll('SELECT value FROM room_settings WHERE key = $1', [key])
      ).getRowObjectsJson()[0];
      const p = prev ? (JSON.parse(String(prev['value'])) as { lo: string }) : undefined;
      await conn.run('INSERT OR REPLACE INTO room_settings VALUES ($1, $2)', [
        key,
        JSON.stringify({ lo: p && p.lo < String(c['lo']) ? p.lo : String(c['lo']), hi: String(c['hi']), snapshot }),
      ]);
    }
    await conn.run('COMMIT');
    open = false;
    duck.retiredBefore = snapshot;
    duck.landed({ snapshot, partner: ROOM_PARTNER, kpis, receivedAt: now, landedAt: now });
    await room.audit({
      actor: 'system',
      partnerId: null,
      action: 'retention.deleted',
      details: { deleted, perKpi, before, retention: a.retention, snapshot },
    });
    log?.info(`retention: deleted ${deleted} points on local days before ${before} (snapshot ${snapshot})`);
    return { before, deleted, perKpi, snapshot };
  } catch (err) {
    if (open) {
      await conn.run('ROLLBACK').catch(() => undefined);
      if (snapshot !== undefined) duck.snapshots.abort(snapshot);
    }
    throw err;
  } finally {
    for (const release of slots) release();
    duck.release(conn);
  }
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
