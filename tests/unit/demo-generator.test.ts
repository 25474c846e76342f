import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, it, expect } from 'vitest';
import { demoPointCount, generateDemoPoints, type DemoOptions, type DemoPoint } from '../../fixtures/demo-generator.js';
import { loadAgreementFile, type Agreement, type Kpi } from '../../services/platform/agreement-schema.js';

const loaded = loadAgreementFile(fileURLToPath(new URL('../../fixtures/demo-agreement.yaml', import.meta.url)));
if (!loaded.ok) throw new Error(`demo agreement invalid: ${JSON.stringify(loaded.problems)}`);
const agreement = loaded.agreement;
const partners = agreement.partners.map((p) => p.id);

const points = (partner: string, opts?: DemoOptions, a: Agreement = agreement): DemoPoint[] => [
  ...generateDemoPoints(a, partner, opts),
];
const digest = (pts: DemoPoint[]) => createHash('sha256').update(JSON.stringify(pts)).digest('hex');
const utc = (iso: string) => new Date(`${iso}T00:00:00Z`);
const only = (...ids: string[]): Agreement => ({
  ...agreement,
  kpis: agreement.kpis.filter((k) => ids.includes(k.id)),
});

/** Monday of the ISO week, as YYYY-MM-DD (UTC: business hours never cross midnight in Europe/Berlin). */
function isoWeek(at: string): string {
  const d = new Date(at);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - ((d.getUTCDay() + 6) % 7)))
    .toISOString()
    .slice(0, 10);
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const list = m.get(key(x));
    if (list) list.push(x);
    else m.set(key(x), [x]);
  }
  return m;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

// Starts mid-day (partial first day), spans the October DST change and globex's December incident.
const window = { from: new Date('2025-10-20T10:30:00Z'), to: utc('2026-01-12') };
const windowPoints = new Map(partners.map((p) => [p, points(p, window)]));

describe('generateDemoPoints', () => {
  it('is deterministic for a seed and differs for another seed', () => {
    const opts = { from: utc('2025-11-01'), to: utc('2025-12-01') };
    const a = digest(points('acme', opts));
    expect(digest(points('acme', opts))).toBe(a);
    expect(digest(points('acme', { ...opts, seed: 42 }))).toBe(a);
    expect(digest(points('acme', { ...opts, seed: 43 }))).not.toBe(a);
    expect(digest(points('globex', opts))).not.toBe(a);
  });

  it('gives a sub-range exactly the points of a longer range that fall inside it', () => {
    const from = new Date('2025-12-03T12:00:00Z');
    const to = utc('2025-12-10');
    const inner = points('globex', { from, to });
    const outer = windowPoints.get('globex')!.filter((p) => p.at >= from.toISOString() && p.at < to.toISOString());
    expect(inner.length).toBeGreaterThan(0);
    expect(digest(inner)).toBe(digest(outer));
  });

  it("does not change a KPI's points when other KPIs are added or removed", () => {
    const alone = points('acme', window, only('error_rate'));
    expect(digest(alone)).toBe(digest(windowPoints.get('acme')!.filter((p) => p.kpi === 'error_rate')));
  });

  it('yields only valid points, in time order, for every KPI of every partner', () => {
    const kpis = new Map(agreement.kpis.map((k) => [k.id, k]));
    const from = window.from.getTime();
    const to = window.to.getTime();
    for (const partner of partners) {
      // Collected rather than expect()ed per point: ~90k points would make the test slow.
      const problems: string[] = [];
      const seen = new Set<string>();
      let prev = '';
      for (const p of windowPoints.get(partner)!) {
        const bad = (why: string) => problems.push(`${why}: ${JSON.stringify(p)}`);
        const kpi = kpis.get(p.kpi);
        if (!kpi) {
          bad('unknown KPI');
          continue;
        }
        seen.add(p.kpi);
        if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(p.at)) bad('at not ISO with Z');
        const ms = Date.parse(p.at);
        if (!(ms >= from && ms < to)) bad('at outside [from, to)');
        if (p.at < prev) bad('out of time order');
        prev = p.at;
        const [lo, hi] = kpi.range ?? [-Infinity, Infinity];
        if (!Number.isFinite(p.value) || p.value < lo || p.value > hi) bad('value outside range');
        if (kpi.measure === 'rate' && p.value !== 0 && p.value !== 1) bad('rate value not 0/1');
        if (!p.subject.startsWith(`${partner.toUpperCase()}-`)) bad('subject not partner-scoped');
        const problem = dimsProblem(kpi, p);
        if (problem) bad(problem);
      }
      expect(problems.slice(0, 5)).toEqual([]);
      expect([...seen].sort()).toEqual(agreement.kpis.map((k) => k.id).sort());
    }
  });

  it('keeps points in local business hours (08:00–18:00 Europe/Berlin) across DST', () => {
    const hour = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: 'numeric', hourCycle: 'h23' });
    for (const p of windowPoints.get('acme')!.filter((_, i) => i % 97 === 0)) {
      const h = Number(hour.format(new Date(p.at)));
      expect(h).toBeGreaterThanOrEqual(8);
      expect(h).toBeLessThan(18);
    }
  });

  it('gives orders and deliveries unique subjects, customers, employees and controls from pools', () => {
    for (const partner of partners) {
      const pts = windowPoints.get(partner)!;
      const prefix = partner.toUpperCase();
      const subjects = (kpi: string) => pts.filter((p) => p.kpi === kpi).map((p) => p.subject);
      const orders = subjects('lead_time');
      expect(new Set(orders).size).toBe(orders.length);
      expect(orders.every((s) => new RegExp(`^${prefix}-ORD-\\d{6,}$`).test(s))).toBe(true);
      const deliveries = subjects('error_rate');
      expect(new Set(deliveries).size).toBe(deliveries.length);
      expect(deliveries.every((s) => new RegExp(`^${prefix}-DLV-\\d{6,}$`).test(s))).toBe(true);
      const customers = subjects('customer_value');
      expect(customers.every((s) => new RegExp(`^${prefix}-CUST-\\d{5}$`).test(s))).toBe(true);
      expect(new Set(customers).size).toBeLessThan(customers.length);
      const employees = new Set(subjects('team_satisfaction'));
      expect([...employees].every((s) => new RegExp(`^${prefix}-EMP-\\d{3}$`).test(s))).toBe(true);
      expect(employees.size).toBeLessThanOrEqual(16);
      const controls = new Set(subjects('compliance'));
      expect([...controls].every((s) => new RegExp(`^${prefix}-CTL-\\d{2}$`).test(s))).toBe(true);
      expect(controls.size).toBe(12);
    }
  });

  it('keeps a customer in one region', () => {
    const regions = new Map<string, string>();
    for (const p of windowPoints.get('acme')!.filter((x) => x.kpi === 'customer_value')) {
      const r = p.dims?.['region'];
      expect(r).toBeDefined();
      expect(regions.get(p.subject) ?? r).toBe(r);
      regions.set(p.subject, r!);
    }
  });

  it('has realistic levels', () => {
    for (const partner of partners) {
      const pts = windowPoints.get(partner)!;
      const values = (kpi: string) => pts.filter((p) => p.kpi === kpi).map((p) => p.value);
      const days = (window.to.getTime() - window.from.getTime()) / 86_400_000;
      expect(values('lead_time').length / days).toBeGreaterThan(110);
      expect(values('lead_time').length / days).toBeLessThan(190);
      expect(values('lead_time').every((v) => Math.round(v * 10) / 10 === v)).toBe(true);
      expect(median(values('lead_time'))).toBeGreaterThan(25);
      expect(median(values('lead_time'))).toBeLessThan(50);
      expect(mean(values('error_rate'))).toBeGreaterThan(0.015);
      expect(mean(values('error_rate'))).toBeLessThan(0.05);
      expect(mean(values('customer_value'))).toBeGreaterThan(7.3);
      expect(mean(values('customer_value'))).toBeLessThan(8.7);
      expect(values('customer_value').every(Number.isInteger)).toBe(true);
      expect(mean(values('compliance'))).toBeGreaterThan(0.94);
      expect(mean(values('team_satisfaction'))).toBeGreaterThan(3.5);
      expect(mean(values('team_satisfaction'))).toBeLessThan(4.3);
      expect(values('team_satisfaction').every(Number.isInteger)).toBe(true);
      const north =
        pts.filter((p) => p.kpi === 'lead_time' && p.dims?.['region'] === 'north').length / values('lead_time').length;
      expect(north).toBeGreaterThan(0.55);
      expect(north).toBeLessThan(0.65);
    }
  });

  it('weekdays carry more orders than weekends', () => {
    const byDay = groupBy(
      windowPoints.get('acme')!.filter((p) => p.kpi === 'lead_time'),
      (p) => p.at.slice(0, 10),
    );
    const weekday = (d: string) => new Date(`${d}T00:00:00Z`).getUTCDay() % 6 !== 0;
    const avg = (pred: (d: string) => boolean) => mean([...byDay].filter(([d]) => pred(d)).map(([, v]) => v.length));
    expect(avg(weekday)).toBeGreaterThan(2 * avg((d) => !weekday(d)));
  });

  it('has a globex lead-time week whose median breaches the 72 h band', () => {
    const weeks = groupBy(
      windowPoints.get('globex')!.filter((p) => p.kpi === 'lead_time'),
      (p) => isoWeek(p.at),
    );
    const medians = [...weeks].map(([w, pts]) => [w, median(pts.map((p) => p.value))] as const);
    const breaches = medians.filter(([, m]) => m > 72);
    expect(breaches.length).toBeGreaterThanOrEqual(1);
    expect(breaches.length).toBeLessThan(medians.length / 2);
  });

  it('has team-satisfaction weeks under the minimum group size of 8, but mostly not', () => {
    const team = only('team_satisfaction');
    for (const partner of partners) {
      const weeks = groupBy(points(partner, {}, team), (p) => isoWeek(p.at));
      const sizes = [...weeks.values()].map((pts) => new Set(pts.map((p) => p.subject)).size);
      expect(sizes.length).toBeGreaterThanOrEqual(100);
      if (partner === 'globex') expect(sizes.some((n) => n < 8)).toBe(true);
      expect(sizes.filter((n) => n >= 8).length).toBeGreaterThan(sizes.length / 2);
      for (const pts of weeks.values()) {
        expect(new Set(pts.map((p) => p.subject)).size).toBe(pts.length);
        expect(pts.every((p) => new Date(p.at).getUTCDay() === 1)).toBe(true);
      }
    }
  });

  it('scales the high-volume KPIs only', () => {
    const opts = { from: utc('2026-02-02'), to: utc('2026-03-02') };
    const count = (pts: DemoPoint[], kpi: string) => pts.filter((p) => p.kpi === kpi).length;
    const full = points('acme', opts);
    const tenth = points('acme', { ...opts, scale: 0.1 });
    for (const kpi of ['lead_time', 'error_rate', 'customer_value']) {
      expect(count(tenth, kpi) / count(full, kpi)).toBeGreaterThan(0.08);
      expect(count(tenth, kpi) / count(full, kpi)).toBeLessThan(0.12);
      expect(new Set(tenth.filter((p) => p.kpi === kpi).map((p) => p.at.slice(0, 10))).size).toBe(28);
    }
    expect(count(tenth, 'compliance')).toBe(count(full, 'compliance'));
    expect(count(tenth, 'team_satisfaction')).toBe(count(full, 'team_satisfaction'));
  });

  it('falls back to a generic generator for KPIs it does not know', () => {
    const base = agreement.kpis[0]!;
    const extra: Kpi[] = [
      {
        ...base,
        id: 'parcel_weight',
        subject: 'parcel',
        measure: 'p90',
        unit: 'kg',
        range: [0, 70],
        dimensions: { channel: ['web', 'store', 'phone'] },
        band: { method: 'static', upper: 30 },
      },
      {
        ...base,
        id: 'on_time',
        subject: 'delivery',
        measure: 'rate',
        unit: 'share',
        range: [0, 1],
        grains: ['week', 'month'],
        dimensions: {},
        band: { method: 'static', lower: 0.9 },
      },
      { ...base, id: 'lead_time', measure: 'rate', range: [0, 1], dimensions: {} },
    ];
    const a: Agreement = { ...agreement, kpis: [...agreement.kpis.filter((k) => k.id !== 'lead_time'), ...extra] };
    const opts = { from: utc('2026-02-02'), to: utc('2026-02-16') };
    const pts = points('globex', opts, a);
    for (const k of extra) {
      const own = pts.filter((p) => p.kpi === k.id);
      expect(own.length, k.id).toBeGreaterThan(0);
      for (const p of own) {
        expect(p.value).toBeGreaterThanOrEqual(k.range![0]);
        expect(p.value).toBeLessThanOrEqual(k.range![1]);
        if (k.measure === 'rate') expect([0, 1]).toContain(p.value);
        expect(dimsProblem(k, p)).toBeUndefined();
      }
    }
    expect(new Set(pts.filter((p) => p.kpi === 'parcel_weight').map((p) => p.dims?.['channel']))).toEqual(
      new Set(['web', 'store', 'phone']),
    );
    expect(pts.filter((p) => p.kpi === 'parcel_weight')[0]!.subject).toMatch(/^GLOBEX-PARC-\d{5}$/);
    expect(mean(pts.filter((p) => p.kpi === 'on_time').map((p) => p.value))).toBeGreaterThan(0.85);
    const unchanged = (x: DemoPoint[]) => digest(x.filter((p) => p.kpi === 'error_rate'));
    expect(unchanged(pts)).toBe(unchanged(points('globex', opts)));
  });

  it('handles empty ranges and rejects bad input', () => {
    expect(points('acme', { from: utc('2026-01-01'), to: utc('2026-01-01') })).toEqual([]);
    expect(points('acme', { from: new Date('2026-01-05T18:00:00Z'), to: new Date('2026-01-06T05:00:00Z') })).toEqual(
      [],
    );
    expect(() => generateDemoPoints(agreement, 'initech')).toThrow(/not a partner/);
    expect(() => generateDemoPoints(agreement, 'acme', { scale: 0 })).toThrow(RangeError);
    expect(() => generateDemoPoints(agreement, 'acme', { from: new Date('nope') })).toThrow(RangeError);
  });
});

describe('demoPointCount', () => {
  it('matches the number of generated points, also for partial days', () => {
    for (const partner of partners)
      expect(demoPointCount(agreement, partner, window)).toBe(windowPoints.get(partner)!.length);
    const odd = { from: new Date('2026-03-27T13:17:00Z'), to: new Date('2026-03-30T09:05:00Z'), scale: 0.37, seed: 7 };
    expect(demoPointCount(agreement, 'globex', odd)).toBe(points('globex', odd).length);
  });

  it('counts the default two years quickly', () => {
    const n = demoPointCount(agreement, 'acme');
    expect(n).toBeGreaterThan(200_000);
    expect(n).toBeLessThan(300_000);
  });
});

function dimsProblem(kpi: Kpi, p: DemoPoint): string | undefined {
  const allowed = kpi.dimensions;
  if (Object.keys(allowed).length === 0) return p.dims === undefined ? undefined : 'dims on a KPI without dimensions';
  if (!p.dims) return 'dims missing';
  if (Object.keys(p.dims).sort().join() !== Object.keys(allowed).sort().join()) return 'wrong dimension keys';
  for (const [key, value] of Object.entries(p.dims))
    if (!allowed[key]?.includes(value)) return `${key}=${value} not allowed`;
  return undefined;
}
