import type { Agreement } from './agreement-schema.js';
import { addPeriods, daysBetween, localToday, shiftDays } from './calendar.js';

export interface ChairTerm {
  name: string;
  email: string;
  /** The first day of the term (partnership time zone); null when the chair does not rotate. */
  since: string | null;
  /** The first day of the next chair's term; null when the chair does not rotate. */
  until: string | null;
  next: { name: string; email: string } | null;
}

/**
 * Who chairs the steering committee on `now`: the agreement's rotation (a term of weeks, months or
 * years from `from`, in `order`), else its first member. Before the first term, the first in order.
 */
export function chairAt(a: Pick<Agreement, 'steering' | 'chair' | 'partnership'>, now: Date): ChairTerm {
  const member = (email: string) => {
    const m = a.steering.find((s) => s.email.toLowerCase() === email.toLowerCase());
    return { name: m?.name ?? email, email: m?.email ?? email };
  };
  if (!a.chair) return { ...member(a.steering[0]!.email), since: null, until: null, next: null };
  const order = a.chair.order ?? a.steering.map((s) => s.email);
  const n = Number(a.chair.every.slice(1, -1));
  const unit = a.chair.every.slice(-1) as 'W' | 'M' | 'Y';
  const from = a.chair.from;
  const today = localToday(now, a.partnership.timezone);
  // Whole terms elapsed since `from` (negative before it: the first term has not begun).
  let k: number;
  if (unit === 'W') k = Math.floor(daysBetween(from, today) / (7 * n));
  else {
    const months = n * (unit === 'Y' ? 12 : 1);
    const [fy, fm, fd] = from.split('-').map(Number) as [number, number, number];
    const [ty, tm, td] = today.split('-').map(Number) as [number, number, number];
    const elapsed = ty * 12 + tm - (fy * 12 + fm) - (td < fd ? 1 : 0);
    k = Math.floor(elapsed / months);
  }
  const termStart = (i: number) =>
    unit === 'W' ? shiftDays(from, i * 7 * n) : addPeriods(from, 'month', i * n * (unit === 'Y' ? 12 : 1));
  const at = (j: number) => member(order[j % order.length]!);
  // Before `from` the first in order chairs already, through the first term.
  if (k < 0) return { ...at(0), since: null, until: termStart(1), next: order.length > 1 ? at(1) : null };
  return { ...at(k), since: termStart(k), until: termStart(k + 1), next: order.length > 1 ? at(k + 1) : null };
}
