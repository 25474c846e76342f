import { LitElement, html, css, nothing } from 'lit';
import embed, { type Result } from 'vega-embed';
import type { TopLevelSpec } from 'vega-lite';
import { api, seriesParams, type AgreementKpi, type Band, type FactSheet, type KpiSummary, type KpisResult, type Series } from '../api.js';
import { i18n, t } from '../i18n.js';
import { shared } from './styles.js';

interface BreachEntry {
  kpi: string;
  group: string | null;
  period: string;
  value: number | null;
  band: Band;
}

/**
 * A KPI's series as a Vega-Lite chart: the tolerance band as a shaded area, a line per partner
 * or combined (as the agreement discloses), breaches marked, suppressed periods as gaps with a
 * tooltip saying why, incidents and resolved fact sheets as annotations. Attributes: kpi, grain,
 * by (none|partner|<dimension>), from, to. Embeddable: `<parity-kpi-chart kpi="lead_time">`.
 */
export class ParityKpiChart extends LitElement {
  static override properties = { kpi: { type: String }, token: { type: String }, grain: { type: String }, by: { type: String }, from: { type: String }, to: { type: String }, error: { state: true } };
  declare kpi: string;
  /** A read token, for a page on another origin (PARITY_EMBED_ORIGINS); on the room's pages the session is used. */
  declare token: string | undefined;
  declare grain: string | undefined;
  declare by: string | undefined;
  declare from: string | undefined;
  declare to: string | undefined;
  declare error: string | undefined;
  /** The KPI's summary and definition when the page already holds them (the dashboard); embedded, the chart fetches them. */
  declare summary: KpiSummary | undefined;
  declare definition: AgreementKpi | undefined;
  /** The last series drawn and the Vega view (tests and embedding pages read them). */
  series: Series | undefined;
  view: Result['view'] | undefined;
  breaches: BreachEntry[] = [];
  #off?: () => void;

  static override styles = [
    shared,
    css`
      :host { display: block; min-width: 0; }
      .chart { width: 100%; min-height: 260px; }
      .legend { font-size: 0.85em; display: flex; flex-wrap: wrap; gap: 1em; margin-top: 0.3em; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.#off = i18n.onChange(() => void this.draw());
  }
  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#off?.();
    this.view?.finalize();
  }

  override updated(changed: Map<string, unknown>): void {
    if (['kpi', 'grain', 'by', 'from', 'to'].some((k) => changed.has(k))) void this.draw();
  }

  async draw(): Promise<void> {
    if (!this.kpi) return;
    try {
      const id = encodeURIComponent(this.kpi);
      const [series, summary, breaches, incidents, def] = await Promise.all([
        api.get<Series>(`/v1/kpis/${id}/series?${seriesParams(this)}`, this.token),
        this.summary ?? api.get<KpisResult>('/v1/kpis', this.token).then((r) => r.kpis.find((k) => k.id === this.kpi)),
        api.get<{ breaches: BreachEntry[] }>(`/v1/breaches?kpi=${id}${this.from ? `&from=${this.from}` : ''}${this.to ? `&to=${this.to}` : ''}`, this.token),
        api.get<{ incidents: FactSheet[] }>(`/v1/incidents?kpi=${id}&limit=100`, this.token),
        this.definition ?? api.get<{ agreement: { kpis: AgreementKpi[] } }>('/v1/agreement', this.token).then((r) => r.agreement.kpis.find((k) => k.id === this.kpi)),
      ]);
      this.series = series;
      const sameGrain = summary?.grain === series.grain;
      // The band belongs to the evaluation grain; per partner only a static band is the same for every scope.
      const combinedBand = summary?.scopes.find((s) => s.group === null)?.band ?? null;
      const band = sameGrain && (series.by === null || (series.by === 'partner' && combinedBand?.method === 'static')) ? combinedBand : null;
      const wantGroup = (g: string | null) => (series.by === 'partner' ? g !== null : g === null);
      this.breaches = sameGrain && (series.by === null || series.by === 'partner') ? breaches.breaches.filter((b) => wantGroup(b.group)) : [];
      this.error = undefined;
      await this.updateComplete;
      const el = this.renderRoot.querySelector<HTMLElement>('.chart')!;
      this.view?.finalize();
      const result = await embed(el, this.spec(series, band, def, incidents.incidents), { actions: false, renderer: 'svg', tooltip: true });
      this.view = result.view;
      this.dispatchEvent(new CustomEvent('parity-chart-drawn', { bubbles: true, composed: true }));
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  spec(series: Series, band: Band | null, def: AgreementKpi | undefined, incidents: FactSheet[]): TopLevelSpec {
    const label = (g: string | null) => g ?? t('combined');
    const cells = series.cells.map((c) => ({ period: c.period, group: label(c.group), value: c.value, n: c.n, state: c.state, reason: c.reason ?? '' }));
    const values = cells.map((c) => c.value).filter((v): v is number => v !== null);
    const lo = band?.lower ?? def?.range?.[0] ?? Math.min(...values, 0);
    const hi = band?.upper ?? def?.range?.[1] ?? Math.max(...values, 1);
    const periods = [...new Set(cells.map((c) => c.period))].sort();
    const bandRows = band ? periods.map((period) => ({ period, lower: lo, upper: hi })) : [];
    const suppressed = cells.filter((c) => c.state === 'suppressed').map((c) => ({ period: c.period, group: c.group, reason: `${t('withheld')}: ${c.reason}` }));
    const breachRows = this.breaches.map((b) => ({ period: b.period, group: label(b.group), value: b.value ?? hi, withheld: b.value === null }));
    const annotations = incidents
      .filter((i) => i.period && i.grain === series.grain && periods.includes(i.period))
      .map((i) => ({ period: i.period, text: `${t('incidents')}: ${i.scope} — ${t(`incident.${i.state}` as 'incident.open')}${i.cause ? ` — ${i.cause}: ${i.narrative}` : ''}` }));
    const x = { field: 'period', type: 'temporal' as const, title: t('period'), axis: { format: series.grain === 'month' ? '%b %Y' : '%d %b %y' } };
    return {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      description: `${t('chartLabel')}: ${series.kpi} (${series.unit})`,
      width: 'container',
      height: 260,
      datasets: { cells, band: bandRows, suppressed, breaches: breachRows, incidents: annotations },
      layer: [
        { data: { name: 'band' }, mark: { type: 'area', color: '#2e9e4f', opacity: 0.14, aria: false }, encoding: { x, y: { field: 'lower', type: 'quantitative', title: series.unit }, y2: { field: 'upper' } } },
        { data: { name: 'suppressed' }, mark: { type: 'rule', color: '#8c959f', strokeDash: [4, 3], aria: false }, encoding: { x, tooltip: [{ field: 'period', type: 'temporal', title: t('period') }, { field: 'group', title: t('group') }, { field: 'reason', title: t('reason') }] } },
        { data: { name: 'incidents' }, mark: { type: 'rule', color: '#7a4b00', strokeWidth: 2, aria: false }, encoding: { x, tooltip: [{ field: 'text', title: t('incidents') }] } },
        {
          data: { name: 'cells' },
          mark: { type: 'line', point: true, invalid: 'break-paths-show-domains', description: series.kpi },
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative', title: series.unit, scale: { zero: false } },
            color: { field: 'group', type: 'nominal', title: t('group') },
            tooltip: [{ field: 'period', type: 'temporal', title: t('period') }, { field: 'group', title: t('group') }, { field: 'value', type: 'quantitative', title: t('value'), format: ',.4~f' }, { field: 'n', title: t('subjects') }, { field: 'reason', title: t('reason') }],
          },
        },
        { data: { name: 'breaches' }, mark: { type: 'point', shape: 'triangle-up', filled: true, size: 140, color: '#a1120a', description: t('state.breach') }, encoding: { x, y: { field: 'value', type: 'quantitative' }, tooltip: [{ field: 'period', type: 'temporal', title: t('period') }, { field: 'group', title: t('group') }, { field: 'value', title: t('value') }] } },
      ],
      config: { locale: { number: i18n.lang === 'de' ? { decimal: ',', thousands: '.', grouping: [3], currency: ['', ' €'] } : { decimal: '.', thousands: ',', grouping: [3], currency: ['£', ''] } } },
    } as TopLevelSpec;
  }

  override render() {
    return html`
      ${this.error ? html`<p role="alert">${this.error}</p>` : nothing}
      <!-- The band, gaps and annotations are drawn for the eye; the legend and the table carry them as text. -->
      <div class="chart" role="img" aria-label="${t('chartLabel')}: ${this.kpi}"></div>
      <div class="legend muted">
        <span><span aria-hidden="true" style="color:#2e9e4f">▮</span> ${t('band')}</span>
        <span><span aria-hidden="true" style="color:#a1120a">▲</span> ${t('state.breach')}</span>
        <span><span aria-hidden="true" style="color:#8c959f">┆</span> ${t('state.suppressed')}</span>
        <span><span aria-hidden="true" style="color:#7a4b00">│</span> ${t('incidents')}</span>
      </div>
    `;
  }
}

customElements.define('parity-kpi-chart', ParityKpiChart);
