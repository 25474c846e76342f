/**
 * An independent oracle for GET /v1/kpis/{kpi}/series: plain TypeScript, no product code.
 * Local dates come from Intl (the platform's tz database), ISO weeks and months from local
 * date arithmetic, quantiles from a sort and linear interpolation (numpy 'linear').
 */
import { createHash } from 'node:crypto';

export type Grain = 'day' | 'week' | 'month';
export type Measure = 'avg' | 'sum' | 'count' | 'rate' | 'p50' | 'p90' | 'p95' | 'distinct';

/** A point as the oracle sees it: who sent it, when (epoch ms), and at which snapshot it landed. */
export interface OraclePoint {
  partner: string;
  kpi: string;
  atMs: number;
  value: number;
  subject: string;
  dims?: Record<string, string>;
  snapshot: number;
}

export interface OracleQuery {
  kpi: string;
  measure: Measure;
  grain: Grain;
  from: string;
  to: string;
  /** 'none', 'partner' or a dimension key. */
  by: string;
  snapshot: number;
  minGroupSize: number;
  timezone: string;
}

export interface OracleCell {
  period: string;
  group: string | null;
  value: number | null;
  n: number | null;
  state: 'ok' | 'suppressed';
  reason?: string;
}

/** mulberry32: a small, seeded, deterministic PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The local calendar date (YYYY-MM-DD) of an instant in a time zone. */
export function localDate(ms: number, timezone: string): string {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone: timezone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timezone, f);
  }
  const parts = f.formatToParts(new Date(ms));
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  return `${get('year')}-${get('month')}-${get('day')}`;
}

/** The first local day of the period a local date falls in (ISO weeks start on Monday). */
export function periodStart(date: string, grain: Grain): string {
  if (grain === 'day') return date;
  if (grain === 'month') return `${date.slice(0, 8)}01`;
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  // Pure calendar arithmetic on a date (UTC noon, so no zone can shift it).
  const noon = new Date(Date.UTC(y, m - 1, d, 12));
  const sinceMonday = (noon.getUTCDay() + 6) % 7;
  return new Date(noon.getTime() - sinceMonday * 86_400_000).toISOString().slice(0, 10);
}

/** numpy 'linear' / DuckDB quantile_cont over a sorted copy. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo]!;
  const b = s[hi]!;
  return lo === hi ? a : a + (b - a) * (pos - lo);
}

export function measureOf(measure: Measure, pts: readonly OraclePoint[]): number {
  const values = pts.map((p) => p.value);
  const sum = () => values.reduce((a, b) => a + b, 0);
  switch (measure) {
    case 'avg':
    case 'rate':
      return sum() / values.length;
    case 'sum':
      return sum();
    case 'count':
      return values.length;
    case 'distinct':
      return subjectsOf(pts).size;
    case 'p50':
      return quantile(values, 0.5);
    case 'p90':
      return quantile(values, 0.9);
    case 'p95':
      return quantile(values, 0.95);
  }
}

/** Distinct subjects: the same raw subject at two partners is two subjects. */
function subjectsOf(pts: readonly OraclePoint[]): Set<string> {
  return new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`));
}

const round12 = (v: number) => Number(v.toPrecision(12));

export const COMPLEMENTARY = 'complementary';

/** The cells the API must serve for a query, computed from the points alone. */
export function expectedCells(points: readonly OraclePoint[], q: OracleQuery): OracleCell[] {
  const first = periodStart(q.from, q.grain);
  const last = periodStart(q.to, q.grain);
  const cells = new Map<string, { period: string; group: string | null; pts: OraclePoint[] }>();
  for (const p of points) {
    if (p.kpi !== q.kpi || p.snapshot > q.snapshot) continue;
    const period = periodStart(localDate(p.atMs, q.timezone), q.grain);
    if (period < first || period > last) continue;
    const group = q.by === 'none' ? null : q.by === 'partner' ? p.partner : (p.dims?.[q.by] ?? null);
    const key = `${period}|${group === null ? '\u0000' : `=${group}`}`;
    let c = cells.get(key);
    if (!c) cells.set(key, (c = { period, group, pts: [] }));
    c.pts.push(p);
  }
  const cmp = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? -1 : b === null ? 1 : a < b ? -1 : 1);
  const raw = [...cells.values()]
    .sort((a, b) => (a.period < b.period ? -1 : a.period > b.period ? 1 : cmp(a.group, b.group)))
    .map((c) => ({
      period: c.period,
      group: c.group,
      value: round12(measureOf(q.measure, c.pts)),
      n: subjectsOf(c.pts).size,
    }));
  const out: OracleCell[] = raw.map((c) =>
    c.n < q.minGroupSize
      ? {
          period: c.period,
          group: c.group,
          value: null,
          n: null,
          state: 'suppressed',
          reason: `fewer than ${q.minGroupSize} distinct subjects`,
        }
      : { period: c.period, group: c.group, value: c.value, n: c.n, state: 'ok' },
  );
  if (q.by !== 'none') {
    const periods = [...new Set(raw.map((c) => c.period))];
    for (const period of periods) {
      const idx = raw.map((c, i) => (c.period === period ? i : -1)).filter((i) => i >= 0);
      const hidden = idx.filter((i) => out[i]!.state === 'suppressed');
      const visible = idx.filter((i) => out[i]!.state === 'ok');
      if (hidden.length !== 1 || visible.length === 0) continue;
      let victim = visible[0]!;
      for (const i of visible) if (raw[i]!.n < raw[victim]!.n) victim = i;
      out[victim] = {
        period,
        group: raw[victim]!.group,
        value: null,
        n: null,
        state: 'suppressed',
        reason: COMPLEMENTARY,
      };
    }
  }
  return out;
}

/** What is compared: reasons only by kind (small cell vs complementary), everything else exactly. */
export function normaliseCells(cells: readonly OracleCell[]): OracleCell[] {
  return cells.map((c) => {
    const base: OracleCell = { period: c.period, group: c.group, value: c.value, n: c.n, state: c.state };
    if (c.state === 'suppressed')
      base.reason =
        typeof c.reason === 'string' && c.reason.startsWith(COMPLEMENTARY)
          ? COMPLEMENTARY
          : typeof c.reason === 'string' && c.reason.length > 0
            ? 'small'
            : `bad reason ${JSON.stringify(c.reason)}`;
    else if (c.reason !== undefined) base.reason = `unexpected reason ${JSON.stringify(c.reason)}`;
    return base;
  });
}

/** Canonical JSON: object keys sorted by code unit, no whitespace, undefined members dropped. */
export function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v)).join(',')}]`;
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined);
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** An instant written with a given UTC offset in minutes: 2026-03-29T03:30:00.000+02:00. */
export function isoWithOffset(ms: number, offsetMin: number): string {
  if (offsetMin === 0) return new Date(ms).toISOString();
  const local = new Date(ms + offsetMin * 60_000).toISOString().slice(0, 23);
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}
