import type { Agreement, AgreementKpi, Band } from './api.js';
import { i18n, t } from './i18n.js';

// How the dashboard writes a KPI's figures: rates as percentages with the precision their band
// needs, units and titles in the reader's language (the agreement's translations), period labels
// that name the grain, and a change with its direction judged against the band.

type KpiLike = { id: string; measure: string; unit: string; title: string };

/**
 * Decimals that tell the band's bounds apart: at least `base`, at most `base + 1` (a computed
 * control band's bounds have many digits; a figure does not need them all).
 */
function decimalsFor(values: (number | null | undefined)[], base: number): number {
  let d = base;
  for (const v of values) {
    if (v === null || v === undefined) continue;
    const s = String(Number(v.toPrecision(6)));
    d = Math.max(d, s.includes('.') ? s.split('.')[1]!.length : 0);
  }
  return Math.min(d, base + 1);
}

const isRate = (k: { measure: string }) => k.measure === 'rate';

/** A figure as the reader reads it: a rate as a percentage; others with the band's precision. */
export function formatValue(k: { measure: string }, v: number | null | undefined, band?: Band | null): string {
  if (v === null || v === undefined) return '—';
  if (isRate(k)) {
    const pct = (b: number | null | undefined) => (b === null || b === undefined ? null : b * 100);
    return `${i18n.number(v * 100, decimalsFor([pct(band?.lower), pct(band?.upper)], 1))} %`;
  }
  const base = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return i18n.number(v, decimalsFor([band?.lower, band?.upper], base));
}

/** The unit beside a figure: none for a rate (the % says it), else the translated unit. */
export function unitOf(agreement: Agreement | undefined, k: KpiLike): string {
  if (isRate(k)) return '';
  return kpiDef(agreement, k.id)?.translations?.[i18n.lang]?.unit ?? k.unit;
}

export function kpiDef(agreement: Agreement | undefined, id: string): AgreementKpi | undefined {
  return agreement?.agreement.kpis.find((x) => x.id === id);
}

/** A KPI's title in the reader's language (the agreement's translation, else as written). */
export function titleOf(agreement: Agreement | undefined, k: { id: string; title: string }): string {
  return kpiDef(agreement, k.id)?.translations?.[i18n.lang]?.title ?? k.title;
}

/** A dimension's name in the reader's language (else the word capitalised). */
export function dimensionName(agreement: Agreement | undefined, kpi: string, dim: string): string {
  return (
    kpiDef(agreement, kpi)?.translations?.[i18n.lang]?.dimensions?.[dim] ?? dim.charAt(0).toUpperCase() + dim.slice(1)
  );
}

/** A partner's name for its id (scopes, series groups); `combined` in the reader's language. */
export function partnerName(agreement: Agreement | undefined, id: string | null): string {
  if (id === null || id === 'combined') return t('combined');
  return agreement?.agreement.partners.find((p) => p.id === id)?.name ?? id;
}

/** The band as text: "≥ 2 % · ≤ 4 %". */
export function bandText(k: { measure: string }, band: Band | null | undefined): string {
  if (!band) return t('noBand');
  return [
    band.lower !== null ? `≥ ${formatValue(k, band.lower, band)}` : '',
    band.upper !== null ? `≤ ${formatValue(k, band.upper, band)}` : '',
  ]
    .filter(Boolean)
    .join(' · ');
}

/** A period by its grain: "30 Nov 2026", "week of 16 Nov 2026", "November 2026". */
export function periodLabel(period: string | null | undefined, grain: string): string {
  if (!period) return '—';
  const d = new Date(`${period}T00:00:00Z`);
  const locale = i18n.lang === 'de' ? 'de-DE' : 'en-GB';
  if (grain === 'month')
    return new Intl.DateTimeFormat(locale, { month: 'long', year: 'numeric', timeZone: 'UTC' }).format(d);
  if (grain === 'week') return `${t('weekOf')} ${i18n.date(period)}`;
  return i18n.date(period);
}

/**
 * The change from the period before, in percent of it, and whether it is good: towards the band
 * (or, inside it, away from the bound that is nearer), bad away from it; neutral without a band.
 */
export function changeOf(
  k: { measure: string },
  scope: { change: number | null; previous: { value: number | null } | null; band: Band | null },
): { text: string; tone: 'good' | 'bad' | 'neutral' } | null {
  if (scope.change === null) return null;
  const prev = scope.previous?.value ?? null;
  const sign = scope.change > 0 ? '+' : scope.change < 0 ? '−' : '±';
  const abs = Math.abs(scope.change);
  const text = isRate(k)
    ? `${sign}${i18n.number(abs * 100, 1)} ${t('pctPoints')}`
    : prev
      ? `${sign}${i18n.number((abs / Math.abs(prev)) * 100, 1)} %`
      : `${sign}${i18n.number(abs, 2)}`;
  const b = scope.band;
  let tone: 'good' | 'bad' | 'neutral' = 'neutral';
  if (b && scope.change !== 0) {
    const up = scope.change > 0;
    if (b.upper !== null && b.lower === null) tone = up ? 'bad' : 'good';
    else if (b.lower !== null && b.upper === null) tone = up ? 'good' : 'bad';
    else if (b.lower !== null && b.upper !== null && prev !== null) {
      const mid = (b.lower + b.upper) / 2;
      tone = up === prev < mid ? 'good' : 'bad';
    }
  }
  return { text, tone };
}
