import { describe, expect, it } from 'vitest';
import { reasonText } from '../../services/query/disclosure.js';
import { reasonCodes } from '../../services/query/query-schemas.js';
import { i18n, type Lang } from '../../web/src/i18n.js';

// The dashboard renders a withheld cell's reason from its stable code, in English or German
// (docs/privacy.md §5): every code the API sends has a text in both, and the texts are whole
// sentences with their placeholders filled.
describe('the dashboard’s reasons for a withheld cell', () => {
  const inLang = <T>(lang: Lang, fn: () => T): T => {
    // i18n.set marks the page's language; a stand-in page for it here.
    (globalThis as { document?: unknown }).document ??= { documentElement: {} };
    const before = i18n.lang;
    i18n.set(lang);
    try {
      return fn();
    } finally {
      i18n.set(before);
    }
  };

  for (const lang of ['en', 'de'] as const)
    it(`${lang}: every reason code has a whole sentence, with k, p and asOf filled in`, () => {
      inLang(lang, () => {
        for (const code of reasonCodes) {
          const text = i18n.reason(
            { reasonCode: code, reason: 'the API’s English', asOf: 17 },
            { minGroupSize: 5, dominance: 60, measure: 'sum' },
          );
          expect(text, code).not.toBe('the API’s English');
          expect(text, code).toMatch(/[.!]$/);
          expect(text, code).not.toMatch(/[{}]/);
        }
      });
    });

  it('the step guard’s sentence is given for medians and percentiles only', () => {
    for (const lang of ['en', 'de'] as const)
      inLang(lang, () => {
        for (const code of ['pending', 'held'] as const) {
          const step = i18n.t('reason.step');
          const cell = { reasonCode: code, asOf: 3 };
          // A sentence of its own, after the one before has ended.
          expect(i18n.reason(cell, { minGroupSize: 4, measure: 'p50' }), `${lang} ${code}`).toContain(`.${step}`);
          expect(i18n.reason(cell, { minGroupSize: 4, measure: 'p95' }), `${lang} ${code}`).toContain(`.${step}`);
          expect(i18n.reason(cell, { minGroupSize: 4, measure: 'avg' }), `${lang} ${code}`).not.toContain(step.trim());
          expect(i18n.reason(cell, { minGroupSize: 4, measure: 'sum' }), `${lang} ${code}`).toMatch(/ 4 .*\.$/);
        }
      });
  });

  it('the dominated part’s wait is given under a dominance rule only, with its share, in the dashboard and the API', () => {
    for (const lang of ['en', 'de'] as const)
      inLang(lang, () => {
        for (const code of ['pending', 'held'] as const) {
          const cell = { reasonCode: code, asOf: 3 };
          const dominant = i18n.t('reason.dominant').trim().split('{p}')[0]!;
          const under = i18n.reason(cell, { minGroupSize: 4, dominance: 60, measure: 'sum' });
          expect(under, `${lang} ${code}`).toContain(`. ${dominant}`);
          expect(under, `${lang} ${code}`).toMatch(/ 60 % /);
          expect(under, `${lang} ${code}`).not.toMatch(/[{}]/);
          expect(
            i18n.reason(cell, { minGroupSize: 4, dominance: null, measure: 'sum' }),
            `${lang} ${code}`,
          ).not.toContain(dominant);
        }
      });
    const rules = (dominance: number | null) => ({
      minGroupSize: 4,
      threePartners: true,
      counts: 'none' as const,
      dominance,
    });
    for (const code of ['pending', 'held'] as const) {
      expect(reasonText(code, rules(0.6))).toMatch(
        /\. A partner whose part of a change is more than 60 % of it waits until that partner sends more for that day/,
      );
      expect(reasonText(code, rules(null))).not.toContain('A partner whose part');
    }
  });
});
