import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  agreementJsonSchema,
  effectiveMinGroupSize,
  loadAgreementFile,
  parseAgreementText,
  validateAgreement,
  durationMs,
} from '../../services/platform/agreement-schema.js';

const demoText = readFileSync('fixtures/demo-agreement.yaml', 'utf8');
const demo = () => YAML.parse(demoText) as Record<string, any>;

describe('agreement schema', () => {
  it('accepts the demo agreement: two partners, the five KPIs', () => {
    const r = loadAgreementFile('fixtures/demo-agreement.yaml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.agreement.partners.map((p) => p.id)).toEqual(['acme', 'globex']);
    expect(r.agreement.kpis.map((k) => [k.id, k.measure])).toEqual([
      ['customer_value', 'avg'],
      ['lead_time', 'p50'],
      ['error_rate', 'rate'],
      ['compliance', 'rate'],
      ['team_satisfaction', 'avg'],
    ]);
    const team = r.agreement.kpis.find((k) => k.id === 'team_satisfaction')!;
    expect(effectiveMinGroupSize(r.agreement, team)).toBeGreaterThanOrEqual(5);
  });

  it('reads JSON as well as YAML', () => {
    const r = parseAgreementText(JSON.stringify(demo()));
    expect(r.ok).toBe(true);
  });

  it('names every problem with its path', () => {
    const doc = demo();
    doc['kpis'][2].band = { upper: 'high' };
    doc['kpis'][0].measure = 'median';
    delete doc['partnership'].timezone;
    doc['kpis'][1].owners.initech = { name: 'X', email: 'x@initech.example' };
    const r = validateAgreement(doc);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const lines = r.problems.map((p) => `${p.path}: ${p.message}`);
    expect(lines).toContain('kpis[2].band.upper: expected number, received string');
    expect(lines.some((l) => l.startsWith('kpis[0].measure: '))).toBe(true);
    expect(lines.some((l) => l.startsWith('partnership.timezone: '))).toBe(true);
  });

  it('refuses cross-reference mistakes', () => {
    const doc = demo();
    doc['kpis'][1].owners.initech = { name: 'X', email: 'x@initech.example' };
    doc['kpis'][1].evaluate.grain = 'month';
    doc['kpis'][1].grains = ['day', 'week'];
    doc['kpis'][3].id = 'lead_time';
    doc['kpis'][0].dimensions = { subject: ['a'] };
    const r = validateAgreement(doc);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'kpis[1].owners.initech',
        'kpis[1].evaluate.grain',
        'kpis[3].id',
        'kpis[0].dimensions.subject',
      ]),
    );
  });

  it('refuses a combined KPI with two partners unless the agreement states consent', () => {
    const doc = demo();
    doc['kpis'][0].breakdown = 'combined';
    const r = validateAgreement(doc);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.problems[0]).toMatchObject({
        path: 'kpis[0].breakdown',
        message: expect.stringContaining('twoPartyConsent'),
      });
    doc['twoPartyConsent'] = true;
    expect(validateAgreement(doc).ok).toBe(true);
    delete doc['twoPartyConsent'];
    doc['partners'].push({ id: 'initech', name: 'Initech' });
    expect(validateAgreement(doc).ok).toBe(true);
  });

  it('the strictest minGroupSize wins', () => {
    const doc = demo();
    doc['partners'][1].minGroupSize = 11;
    const r = validateAgreement(doc);
    expect(r.ok).toBe(true);
    if (r.ok) expect(effectiveMinGroupSize(r.agreement, r.agreement.kpis[0]!)).toBe(11);
  });

  it('reports YAML syntax errors with their line', () => {
    const r = parseAgreementText('partnership: { id: x\nkpis: [');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.path).toMatch(/^line \d+, column \d+$/);
  });

  it('parses ISO durations', () => {
    expect(durationMs('PT6H')).toBe(6 * 3_600_000);
    expect(durationMs('P2D')).toBe(2 * 86_400_000);
    expect(durationMs('P1W')).toBe(7 * 86_400_000);
    expect(() => durationMs('6h')).toThrow();
  });

  it('the committed agreement.schema.json is the one the zod schema exports (npm run schema)', () => {
    const committed = JSON.parse(readFileSync('agreement.schema.json', 'utf8'));
    expect(committed).toEqual(agreementJsonSchema());
    expect(Object.keys(committed.properties)).toEqual(expect.arrayContaining(['partnership', 'partners', 'kpis']));
  });
});
