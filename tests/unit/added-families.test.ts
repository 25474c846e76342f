// The cell families a new agreement version adds (docs/privacy.md §3, agreement changes): what
// DuckStore.adoptAgreement withholds over the points that landed before it.
import { describe, expect, it } from 'vitest';
import { loadAgreementFile, type Agreement } from '../../services/platform/agreement-schema.js';
import { addedFamilies, droppedFamilies } from '../../services/query/disclosure.js';
import { diffAgreements } from '../../services/governance/agreement-diff.js';

const r = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!r.ok) throw new Error('demo agreement invalid');
const demo = r.agreement;
/** The demo with one KPI edited. */
const editing = (id: string, edit: (k: Agreement['kpis'][number]) => void): Agreement => {
  const copy = structuredClone(demo);
  edit(copy.kpis.find((k) => k.id === id)!);
  return copy;
};

describe('the families a version adds', () => {
  it('none when nothing a reader can read changes (another title, band, k)', () => {
    const other = editing('lead_time', (k) => {
      k.title = 'Lead time (hours)';
      k.minGroupSize = 9;
    });
    expect(addedFamilies(demo, other)).toEqual([]);
    expect(addedFamilies(demo, demo)).toEqual([]);
  });
  it('a grain added: its combined family, which every breakdown of the grain holds', () => {
    // lead_time agrees days, weeks and months (checked, so the case cannot go empty).
    expect(demo.kpis.find((k) => k.id === 'lead_time')!.grains).toEqual(['day', 'week', 'month']);
    const weeks = editing('lead_time', (k) => (k.grains = ['week']));
    expect(addedFamilies(weeks, demo)).toEqual([
      { kpi: 'lead_time', grain: 'day', key: null },
      { kpi: 'lead_time', grain: 'month', key: null },
    ]);
    // Removing one adds nothing.
    expect(addedFamilies(demo, weeks)).toEqual([]);
    // Weeks and months after weeks alone: months are new (a week and a month do not nest).
    const months = editing('lead_time', (k) => (k.grains = ['week', 'month']));
    expect(addedFamilies(weeks, months)).toEqual([{ kpi: 'lead_time', grain: 'month', key: null }]);
    // Where days were agreed, a week or month is a sum of day cells: withheld only where those
    // days were withheld for a version themselves (the store knows which).
    const days = editing('lead_time', (k) => (k.grains = ['day']));
    expect(addedFamilies(days, demo)).toEqual([
      { kpi: 'lead_time', grain: 'week', key: null, viaDays: true },
      { kpi: 'lead_time', grain: 'week', key: 'region', viaDays: true },
      { kpi: 'lead_time', grain: 'month', key: null, viaDays: true },
      { kpi: 'lead_time', grain: 'month', key: 'region', viaDays: true },
    ]);
  });
  it('a dimension added back: its family at every grain the KPI had', () => {
    const lead = demo.kpis.find((k) => k.id === 'lead_time')!;
    const flat = editing('lead_time', (k) => (k.dimensions = {}));
    expect(addedFamilies(flat, demo)).toEqual(lead.grains.map((grain) => ({ kpi: 'lead_time', grain, key: 'region' })));
  });
  it('a KPI added back: every grain of it', () => {
    const without = structuredClone(demo);
    without.kpis = without.kpis.filter((k) => k.id !== 'error_rate');
    const rate = demo.kpis.find((k) => k.id === 'error_rate')!;
    expect(addedFamilies(without, demo)).toEqual(rate.grains.map((grain) => ({ kpi: 'error_rate', grain, key: null })));
  });
});

describe('the families a version drops (their protected points stay withheld)', () => {
  const dropped = (prev: Agreement, next: Agreement) => droppedFamilies(prev, next).map((d) => d.kpi.id);
  it('a grain, a dimension or the week∩month slices dropped; nothing when only added or kept', () => {
    const weeks = editing('lead_time', (k) => (k.grains = ['week']));
    expect(dropped(demo, weeks)).toEqual(['lead_time']);
    expect(dropped(weeks, demo)).toEqual([]);
    expect(dropped(demo, demo)).toEqual([]);
    const noRegion = editing('error_rate', (k) => (k.dimensions = {}));
    expect(dropped(demo, noRegion)).toEqual(['error_rate']);
    // customer_value agrees weeks and months without days: their slices are judged; days added
    // make the slices sums of days (judged as days), so the slice family goes.
    expect(demo.kpis.find((k) => k.id === 'customer_value')!.grains).toEqual(['week', 'month']);
    const withDays = editing('customer_value', (k) => (k.grains = ['day', 'week', 'month']));
    expect(dropped(demo, withDays)).toEqual(['customer_value']);
    // A KPI removed: nobody reads it any more; nothing to withhold.
    expect(dropped(demo, { ...demo, kpis: demo.kpis.filter((k) => k.id !== 'lead_time') })).toEqual([]);
  });
  it('judged under the rules of the version before', () => {
    const tighter = editing('lead_time', (k) => {
      k.grains = ['week'];
      k.minGroupSize = 9;
    });
    const [d] = droppedFamilies(demo, tighter);
    expect(d?.kpi.grains).toEqual(['day', 'week', 'month']);
    expect(d?.rules.minGroupSize).toBe(5);
  });
});

describe('a measure changed', () => {
  it('counts as every family added: the same points read another way', () => {
    const p90 = editing('lead_time', (k) => (k.measure = 'p90'));
    expect(addedFamilies(demo, p90)).toEqual([
      { kpi: 'lead_time', grain: 'day', key: null },
      { kpi: 'lead_time', grain: 'week', key: null },
      { kpi: 'lead_time', grain: 'month', key: null },
    ]);
    // Nothing else moved: the other KPIs add nothing.
    expect(addedFamilies(demo, p90).every((f) => f.kpi === 'lead_time')).toBe(true);
  });
});

describe('what the proposal says of a measure changed', () => {
  it('flags it before anyone co-signs: the same points read another way, earlier periods withheld', () => {
    const p90 = editing('lead_time', (k) => (k.measure = 'p90'));
    const changes = diffAgreements(demo, p90).filter((c) => c.path === 'kpis.lead_time.measure');
    expect(changes).toHaveLength(1);
    expect(changes[0]!.loosensPrivacy).toBe(true);
    expect(JSON.stringify(changes[0])).toMatch(/read another way.*stay withheld/);
  });
});
