import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  agreementJsonSchema,
  effectiveMinGroupSize,
  nestingTooDeep,
  loadAgreementFile,
  asNewAgreement,
  parseAgreementText,
  validateAgreement,
  durationMs,
} from '../../services/platform/agreement-schema.js';
import { disclosureRules } from '../../services/query/disclosure.js';

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

  it('refuses a dominance rule no cell could meet, or one on a KPI that is not a sum, naming the KPI and field', () => {
    const doc = demo();
    const kpi = doc['kpis'][0];
    kpi.dominance = 80; // the demo's first KPI is an average
    let r = validateAgreement(doc);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.problems).toEqual([
        { path: 'kpis[0].dominance', message: expect.stringMatching(/^customer_value: .*share of a sum.*avg/) },
      ]);
    kpi.measure = 'sum';
    delete kpi.range;
    kpi.dominance = 40; // two partners: one of them always holds at least half
    r = validateAgreement(doc);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.problems).toEqual([
        { path: 'kpis[0].dominance', message: expect.stringMatching(/^customer_value: with 2 partners .* 50 %/) },
      ]);
    for (const bad of [0, 100, -5, 'eighty'])
      expect(validateAgreement({ ...doc, kpis: [{ ...kpi, dominance: bad }] }).ok, String(bad)).toBe(false);
    kpi.dominance = 50;
    r = validateAgreement(doc);
    expect(r.ok).toBe(true);
    if (r.ok) expect(disclosureRules(r.agreement, r.agreement.kpis[0]!).dominance).toBe(0.5);
    doc['partners'].push({ id: 'initech', name: 'Initech' }, { id: 'umbrella', name: 'Umbrella' });
    kpi.dominance = 25; // four partners: a quarter each can pass
    expect(validateAgreement(doc).ok).toBe(true);
  });

  it('the strictest minGroupSize wins', () => {
    const doc = demo();
    doc['partners'][1].minGroupSize = 11;
    const r = validateAgreement(doc);
    expect(r.ok).toBe(true);
    if (r.ok) expect(effectiveMinGroupSize(r.agreement, r.agreement.kpis[0]!)).toBe(11);
  });

  it("refuses a key given twice in one mapping, naming its line, without the parser's quadratic check", () => {
    const r = parseAgreementText(`${demoText}\npartnership: { id: again }\n`);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.problems[0]!.path).toMatch(/^line \d+, column 1$/);
      expect(r.problems[0]!.message).toContain('"partnership" is given twice');
    }
    const nested = parseAgreementText('partnership:\n  id: a\n  id: b\n');
    expect(nested.ok).toBe(false);
    if (!nested.ok) expect(nested.problems[0]).toMatchObject({ path: 'line 3, column 3' });
    // 60,000 distinct keys: read in one pass (the parser's own check took 33 s), then refused by the schema.
    const many = parseAgreementText(Array.from({ length: 60_000 }, (_, i) => `k${i}: v`).join('\n'));
    expect(many.ok).toBe(false);
  });

  it('reports YAML syntax errors with their line', () => {
    const r = parseAgreementText('partnership: { id: x\nkpis: [');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.path).toMatch(/^line \d+, column \d+$/);
  });

  it('refuses flow collections nested past 64 levels before the YAML parser sees them, wherever they start', () => {
    // The demo agreement, in YAML and as one line of JSON, nests a few levels: both read.
    expect(nestingTooDeep(demoText)).toBeUndefined();
    expect(nestingTooDeep(JSON.stringify(demo()))).toBeUndefined();
    const deep = (open: string, n: number) => open.repeat(n);
    for (const [text, line, col] of [
      [deep('[', 1_048_576), 1, 65],
      [deep('{', 1_048_576), 1, 65],
      [deep('[{', 500_000), 1, 65],
      [`partnership: { id: x }\nkpis:\n  - ${deep('[', 100)}`, 3, 69],
      [`# a comment [[[\nkpis: ${deep('{a: ', 70)}`, 2, 6 + 64 * 4 + 1],
    ] as const) {
      // Refused by the scan, not by the parser (which took 9 s over a mebibyte of `[`).
      const r = parseAgreementText(text);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.problems).toEqual([
          { path: `line ${line}, column ${col}`, message: expect.stringContaining('deeper than 64 levels') },
        ]);
      }
    }
    // 64 levels are the parser's to judge; brackets in quoted scalars and comments are text.
    expect(nestingTooDeep(deep('[', 64) + deep(']', 64))).toBeUndefined();
    expect(nestingTooDeep(deep('[', 65))).toEqual({ line: 1, col: 65, what: 'flow' });
    for (const text of [
      `title: "${deep('[', 100)}"`,
      `title: '${deep('{', 100)} it''s ${deep('[', 100)}'`,
      `title: "a \\" ${deep('[', 100)}"`,
      `kpis: [${deep('"[",', 100)} x]`,
      `a: 1 # ${deep('[', 100)}\nb: 2`,
      `- '${deep('[', 100)}'\n- "${deep('{', 100)}"`,
    ])
      expect(nestingTooDeep(text), text.slice(0, 30)).toBeUndefined();
    // A quote where no quoted scalar may begin, or one not closed on its line, hides nothing
    // (the review's bypasses: each let a mebibyte of brackets through to the parser).
    for (const text of [
      `- x:'\n- ${deep('[', 100)}`,
      `- b-'\n- ${deep('{', 100)}`,
      `x: a,"\n- ${deep('[', 100)}`,
      `x: b '\n- ${deep('[', 100)}'`,
      `[x '${deep('[', 100)}']`,
      `[a - '${deep('[', 100)}']`,
      // A quoted scalar after a tag or an anchor is one the parser reads: its `]` closes nothing.
      deep('[!!str "]", ', 100),
      deep('[&a "}", ', 100),
      deep("[!t ']', ", 100),
    ])
      expect(nestingTooDeep(text)?.what, JSON.stringify(text.slice(0, 12))).toBe('flow');
    // A bracket in a plain scalar leaves the flow depth above 0: block indicators still count.
    expect(nestingTooDeep(`a: v[\nb:\n${deep('- ', 100)}x`)).toEqual({ line: 3, col: 33, what: 'block' });
    expect(nestingTooDeep(`a: [\n${' '.repeat(40)}b]`)?.what).toBe('block');
    // Block nesting: indentation and leading `- ` / `? ` indicators, 32 at most on a line.
    expect(nestingTooDeep(`${deep('- ', 20000)}x`)).toEqual({ line: 1, col: 33, what: 'block' });
    expect(nestingTooDeep(`${deep('? ', 40)}x`)?.what).toBe('block');
    expect(nestingTooDeep(`a:\n${' '.repeat(40)}b: 1`)).toEqual({ line: 2, col: 33, what: 'block' });
    expect(nestingTooDeep(`${deep('- ', 16)}x\n${' '.repeat(30)}y`)).toBeUndefined();
    const r = parseAgreementText(`${deep('- ', 100000)}x`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.message).toContain('indented or nested deeper than 32 levels');
    // An apostrophe inside a plain scalar opens no quote: the brackets after it still count.
    expect(nestingTooDeep(`title: the partner's view\nx: ${deep('[', 70)}`)).toEqual({
      line: 2,
      col: 68,
      what: 'flow',
    });
  });

  it('refuses a new agreement naming a duration past 100 years, wherever it stands, naming the path; a stored one stays readable', () => {
    const doc = demo();
    doc['kpis'][1].freshness.grace = 'P999999999999Y';
    doc['kpis'][0].freshness.every = 'P36501D';
    doc['kpis'][2].escalation.ackWithin = 'PT876001H';
    doc['retention'] = 'P101Y';
    doc['serviceLevels'].incidents.critical.resolve = 'P101Y';
    // The schema reads stored versions too: one accepted before this bound still reads.
    expect(validateAgreement(doc).ok).toBe(true);
    const r = asNewAgreement(validateAgreement(doc));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => `${p.path}: ${p.message}`).sort()).toEqual(
      [
        'kpis[1].freshness.grace',
        'kpis[0].freshness.every',
        'kpis[2].escalation.ackWithin',
        'retention',
        'serviceLevels.incidents.critical.resolve',
      ]
        .map((path) => `${path}: expected a duration of at most 100 years`)
        .sort(),
    );
    // 100 years is allowed.
    const ok = demo();
    ok['retention'] = 'P100Y';
    expect(asNewAgreement(validateAgreement(ok)).ok).toBe(true);
    // Dates stay between 2000 and 2100 in every version.
    const late = demo();
    late['goals'][0].due = '2101-01-01';
    const d = validateAgreement(late);
    expect(d.ok ? [] : d.problems.map((p) => `${p.path}: ${p.message}`)).toContain(
      'goals[0].due: expected a date between 2000 and 2100',
    );
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

describe('agreement diff', () => {
  it('flags a dominance rule loosened or dropped as loosening privacy, and a stricter one not', async () => {
    const { diffAgreements } = await import('../../services/governance/agreement-diff.js');
    const withDominance = (p: number | undefined) => {
      const doc = demo();
      Object.assign(doc['kpis'][0], { measure: 'sum', dominance: p });
      delete doc['kpis'][0].range;
      if (p === undefined) delete doc['kpis'][0].dominance;
      const r = validateAgreement(doc);
      if (!r.ok) throw new Error(JSON.stringify(r.problems));
      return r.agreement;
    };
    const flagged = (a: number | undefined, b: number | undefined) =>
      diffAgreements(withDominance(a), withDominance(b)).find((c) => c.path.endsWith('dominance'));
    expect(flagged(80, 90)).toMatchObject({ loosensPrivacy: true, text: expect.stringContaining('dominance') });
    expect(flagged(80, undefined)).toMatchObject({ loosensPrivacy: true });
    expect(flagged(80, 70)).toMatchObject({ loosensPrivacy: false });
    expect(flagged(undefined, 70)).toMatchObject({ loosensPrivacy: false });
  });

  it("says of an average or rate per partner that each partner's number of points follows from the figures", async () => {
    const { diffAgreements } = await import('../../services/governance/agreement-diff.js');
    const parse = (doc: Record<string, any>) => {
      const r = validateAgreement(doc);
      if (!r.ok) throw new Error(JSON.stringify(r.problems));
      return r.agreement;
    };
    // Copies of the demo's rate and median, under new ids: two new KPIs.
    const more = demo();
    for (const id of ['error_rate', 'lead_time'])
      more['kpis'].push({ ...structuredClone(more['kpis'].find((k: { id: string }) => k.id === id)), id: `${id}_2` });
    const added = diffAgreements(parse(demo()), parse(more));
    const privacy = (path: string) => added.find((c) => c.path === path)?.privacy;
    expect(privacy('kpis.error_rate_2')).toContain('a new figure is shared; of a rate per partner');
    expect(privacy('kpis.error_rate_2')).toContain("each partner's number of points follows");
    expect(privacy('kpis.lead_time_2')).toBe('a new figure is shared');
    // A breakdown changed to per partner, on an average and on a sum.
    const consent: Record<string, any> = { ...demo(), twoPartyConsent: true };
    for (const k of consent['kpis']) if (k.id === 'customer_value') k.breakdown = 'combined';
    const change = diffAgreements(parse(consent), parse({ ...demo(), twoPartyConsent: true })).find(
      (c) => c.path === 'kpis.customer_value.breakdown',
    );
    expect(change).toMatchObject({
      loosensPrivacy: true,
      privacy: expect.stringContaining('number of points follows'),
    });
  });
});
