import type { Agreement, MaintenanceWindow } from './agreement-schema.js';

/** A maintenance window as instants. */
export interface Window {
  from: Date;
  to: Date;
  partners: readonly string[] | null;
  reason: string;
}

const asWindow = (w: MaintenanceWindow): Window => ({
  from: new Date(w.from),
  to: new Date(w.to),
  partners: w.partners ?? null,
  reason: w.reason,
});

/**
 * The agreed maintenance windows that concern `partner` (a window naming no partners concerns
 * every one), in time order. With `partner` null (a combined figure, every partner's data), every
 * window: any partner's maintenance holds up a joint figure.
 */
export function maintenanceWindows(agreement: Pick<Agreement, 'serviceLevels'>, partner: string | null): Window[] {
  return (agreement.serviceLevels?.maintenanceWindows ?? [])
    .map(asWindow)
    .filter((w) => partner === null || w.partners === null || w.partners.includes(partner))
    .sort((a, b) => a.from.getTime() - b.from.getTime());
}

/** The window `at` lies in (from inclusive, to exclusive), if any. */
export function windowAt(windows: readonly Window[], at: Date): Window | undefined {
  const t = at.getTime();
  return windows.find((w) => w.from.getTime() <= t && t < w.to.getTime());
}

/**
 * When something `ms` long from `start` falls due, the clock stopped inside the windows: time in a
 * maintenance window does not count towards a feed's allowance or an acknowledgement's deadline,
 * so nothing falls due inside a window, and a window does not eat the time allowed after it.
 */
export function dueAfter(windows: readonly Window[], start: Date, ms: number): Date {
  let cursor = start.getTime();
  let remaining = ms;
  for (const w of windows) {
    const from = w.from.getTime();
    const to = w.to.getTime();
    if (to <= cursor) continue;
    if (from > cursor + remaining) break;
    remaining -= Math.max(0, from - cursor);
    cursor = to;
  }
  return new Date(cursor + remaining);
}
