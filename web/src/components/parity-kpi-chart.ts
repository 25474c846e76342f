import { LitElement, html, css, nothing } from 'lit';
import embed, { type Result } from 'vega-embed';
import type { TopLevelSpec } from 'vega-lite';
import {
  api,
  seriesParams,
  type AgreementKpi,
  type Annotation,
  type FactSheet,
  type GoalProgress,
  type GoalsResponse,
  type KpiSummary,
  type KpisResult,
  type PeriodBand,
  type Series,
} from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { shared } from './styles.js';

// A KPI's series as a Vega-Lite chart: the tolerance band in force period by period as a shaded area, a line per partner
// or combined (as the agreement discloses), breaches marked, suppressed periods as gaps with a
// tooltip saying why, incidents and resolved fact sheets as rules, the partners' notes as shaded days. Attributes: kpi, grain,
// by (none|partner|<dimension>), from, to. Embeddable: `<parity-kpi-chart kpi="lead_time">`.

/** A KPI's series as a Vega-Lite chart with its band, breaches, gaps and incidents; fires `parity-chart-drawn` after each draw. */
export class ParityKpiChart extends LitElement {
  static override properties = {
    kpi: { type: String },
    token: { type: String },
    grain: { type: String },
    by: { type: String },
    from: { type: String },
    to: { type: String },
    error: { state: true },
    bandGrain: { state: true },
  };
  /** Partners' names by id for the legend and tooltips (the page passes them; embedded: the ids). */
  declare partnerNames: Record<string, string> | undefined;
  /** The grain the band is agreed at, when the chart shows another (no band drawn then: the legend says why). */
  declare bandGrain: string | undefined;
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
  /** The partnership's goals when the page already holds them; embedded, the chart fetches them (none without a token). */
  declare goals: GoalProgress[] | undefined;
  /** The last series drawn and the Vega view (tests and embedding pages read them). */
  series: Series | undefined;
  view: Result['view'] | undefined;
  /** Each closed period's band at the evaluation grain, for the scopes drawn (empty at other grains). */
  bands: PeriodBand[] = [];
  /** The partners' notes on the periods drawn. */
  notes: Annotation[] = [];
  /** A language switch redraws the chart (its labels and number format) as well as the legend. */
  private readonly languageSwitch = new I18nController(this, () => void this.draw());

  static override styles = [
    shared,
    css`
      :host {
        display: block;
        min-width: 0;
      }
      .chart {
        width: 100%;
        min-height: 340px;
      }
      .legend {
        font-size: 0.85em;
        display: flex;
        flex-wrap: wrap;
        gap: 1em;
        margin-top: 0.3em;
      }
    `,
  ];

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.view?.finalize();
  }

  override updated(changed: Map<string, unknown>): void {
    if (['kpi', 'grain', 'by', 'from', 'to'].some((k) => changed.has(k))) void this.draw();
  }

  /** Draws overlap when the controls change quickly: only the latest one may paint. */
  #drawn = 0;

  async draw(): Promise<void> {
    if (!this.kpi) return;
    const mine = ++this.#drawn;
    try {
      const id = encodeURIComponent(this.kpi);
      const range = `${this.from ? `&from=${this.from}` : ''}${this.to ? `&to=${this.to}` : ''}`;
      // Bands (and so breaches) belong to the evaluation grain: each closed period with the band in
      // force then. Asked for beside the series; unused when the chart shows another grain.
      const wantsBands = !this.by || this.by === 'none' || this.by === 'partner';
      const [series, summary, incidents, def, banded, goals, notes] = await Promise.all([
        api.get<Series>(`/v1/kpis/${id}/series?${seriesParams(this)}`, this.token),
        this.summary ?? api.get<KpisResult>('/v1/kpis', this.token).then((r) => r.kpis.find((k) => k.id === this.kpi)),
        api.get<{ incidents: FactSheet[] }>(`/v1/incidents?kpi=${id}&limit=100`, this.token),
        this.definition ??
          api
            .get<{ agreement: { kpis: AgreementKpi[] } }>('/v1/agreement', this.token)
            .then((r) => r.agreement.kpis.find((k) => k.id === this.kpi)),
        wantsBands ? api.get<{ bands: PeriodBand[] }>(`/v1/kpis/${id}/bands?${range.slice(1)}`, this.token) : undefined,
        this.goals ??
          api
            .get<GoalsResponse>('/v1/goals', this.token)
            .then((r) => r.goals)
            .catch(() => [] as GoalProgress[]),
        // The partners' notes on its periods (none for a reader without a token).
        api
          .get<{ annotations: Annotation[] }>(`/v1/kpis/${id}/annotations?${range.slice(1)}`, this.token)
          .then((r) => r.annotations)
          .catch(() => [] as Annotation[]),
      ]);
      const judged = banded && summary?.grain === series.grain ? banded.bands : [];
      this.bandGrain = summary && summary.grain !== series.grain ? summary.grain : undefined;
      const wantGroup = (g: string | null) => (series.by === 'partner' ? g !== null : g === null);
      if (mine !== this.#drawn) return;
      this.series = series;
      this.bands = judged.filter((b) => wantGroup(b.group));
      this.error = undefined;
      await this.updateComplete;
      if (mine !== this.#drawn) return;
      const el = this.renderRoot.querySelector<HTMLElement>('.chart')!;
      this.view?.finalize();
      const ownGoals = goals.filter((g) => g.kpi === series.kpi);
      this.notes = notes;
      const result = await embed(el, this.spec(series, this.bands, def, incidents.incidents, ownGoals, notes), {
        actions: false,
        renderer: 'svg',
        tooltip: true,
      });
      if (mine !== this.#drawn) {
        result.view.finalize();
        return;
      }
      this.view = result.view;
      this.dispatchEvent(new CustomEvent('parity-chart-drawn', { bubbles: true, composed: true }));
    } catch (err) {
      if (mine === this.#drawn) this.error = err instanceof Error ? err.message : String(err);
    }
  }

  spec(
    series: Series,
    bands: PeriodBand[],
    def: AgreementKpi | undefined,
    incidents: FactSheet[],
    goals: GoalProgress[] = [],
    notes: Annotation[] = [],
  ): TopLevelSpec {
    const label = (g: string | null) => (g === null ? t('combined') : (this.partnerNames?.[g] ?? g));
    const cells = series.cells.map((c) => ({
      period: c.period,
      group: label(c.group),
      value: c.value,
      n: c.n,
      state: c.state,
      reason: i18n.reason(c, series),
    }));
    const values = cells.map((c) => c.value).filter((v): v is number => v !== null);
    const limits = bands.flatMap((b) => [b.lower, b.upper]).filter((v): v is number => v !== null);
    const lo = Math.min(...values, ...limits, def?.range?.[0] ?? Infinity, 0);
    const hi = Math.max(...values, ...limits, 1);
    const periods = [...new Set(cells.map((c) => c.period))].sort();
    // Each period's band as a step: open sides reach the edge of the plot.
    // A static band is the same for every scope: drawn once, not once per partner.
    const drawn = bands.filter((b) => b.method !== null && (b.method === 'control' || b.group === bands[0]!.group));
    const bandRows = drawn.map((b) => ({
      period: b.period,
      group: label(b.group),
      lower: b.lower ?? lo,
      upper: b.upper ?? hi,
    }));
    const valueOf = new Map(cells.map((c) => [`${c.period}\u0000${c.group}`, c.value]));
    const breachRows = bands
      .filter((b) => b.outside)
      .map((b) => {
        const v = valueOf.get(`${b.period}\u0000${label(b.group)}`) ?? null;
        return { period: b.period, group: label(b.group), value: v ?? hi, withheld: v === null, signal: b.signal };
      });
    const held = cells.filter((c) => c.state === 'held');
    const suppressed = cells
      .filter((c) => c.state === 'suppressed')
      .map((c) => ({ period: c.period, group: c.group, reason: `${t('withheld')}: ${c.reason}` }));
    const annotations = incidents
      .filter((i) => i.period && i.grain === series.grain && periods.includes(i.period))
      .map((i) => ({
        period: i.period,
        text: `${t('incidents')}: ${i.scope} — ${t(`incident.${i.state}` as 'incident.open')}${i.cause ? ` — ${i.cause}: ${i.narrative}` : ''}`,
      }));
    // Goals of the scopes drawn: their target over time as a step line, each milestone a diamond.
    const drawnGroups = new Set(series.cells.map((c) => c.group));
    const shownGoals = goals.filter((g) => drawnGroups.has(g.scope === 'combined' ? null : g.scope));
    const targets = shownGoals.flatMap((g) =>
      g.targetLine.map((p) => ({
        period: p.date,
        target: p.target,
        goal: `${g.title} (${label(g.scope === 'combined' ? null : g.scope)})`,
      })),
    );
    const milestones = shownGoals.flatMap((g) =>
      g.milestones.map((m) => ({
        period: m.date,
        target: m.target,
        goal: `${g.title} (${label(g.scope === 'combined' ? null : g.scope)})`,
        state: t(`goal.${m.state}` as 'goal.met'),
      })),
    );
    // The partners' notes: each shades the days it covers (to the end of its last day), its text in the tooltip.
    const noteRows = notes.map((a) => ({
      period: a.from,
      end: new Date(Date.parse(`${a.to}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10),
      text: a.text,
      scope: label(a.scope === 'combined' ? null : a.scope),
      author: a.author.name,
    }));
    // What every tooltip starts with: which period, which scope (and the value, where there is one).
    const where = [
      { field: 'period', type: 'temporal' as const, title: t('period') },
      { field: 'group', title: t('group') },
    ];
    const valueTip = { field: 'value', type: 'quantitative' as const, title: t('value'), format: ',.4~f' };
    const x = {
      field: 'period',
      type: 'temporal' as const,
      title: t('period'),
      axis: { format: series.grain === 'month' ? '%b %Y' : '%d %b %y' },
    };
    return {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      description: `${t('chartLabel')}: ${series.kpi} (${series.unit})`,
      width: 'container',
      // Taller on a wide screen; a phone keeps the page short.
      height: this.clientWidth > 0 && this.clientWidth < 560 ? 260 : 340,
      datasets: {
        cells,
        band: bandRows,
        suppressed,
        held,
        breaches: breachRows,
        incidents: annotations,
        targets,
        milestones,
        notes: noteRows,
      },
      layer: [
        {
          data: { name: 'notes' },
          mark: { type: 'rect', color: '#bf8700', opacity: 0.16, description: t('notes'), aria: noteRows.length > 0 },
          encoding: {
            x,
            x2: { field: 'end' },
            tooltip: [
              { field: 'text', title: t('note') },
              { field: 'scope', title: t('group') },
              { field: 'author', title: t('author') },
            ],
          },
        },
        {
          data: { name: 'band' },
          mark: { type: 'area', color: '#2e9e4f', opacity: 0.14, interpolate: 'step-after', aria: false },
          encoding: {
            x,
            y: { field: 'lower', type: 'quantitative', title: series.unit },
            y2: { field: 'upper' },
            detail: { field: 'group' },
          },
        },
        {
          data: { name: 'suppressed' },
          mark: { type: 'rule', color: '#8c959f', strokeDash: [4, 3], aria: false },
          encoding: {
            x,
            tooltip: [...where, { field: 'reason', title: t('reason') }],
          },
        },
        {
          data: { name: 'incidents' },
          mark: { type: 'rule', color: '#7a4b00', strokeWidth: 2, aria: false },
          encoding: { x, tooltip: [{ field: 'text', title: t('incidents') }] },
        },
        {
          data: { name: 'targets' },
          mark: { type: 'line', interpolate: 'step-before', color: '#5a32a3', strokeDash: [6, 3], aria: false },
          encoding: {
            x,
            y: { field: 'target', type: 'quantitative' },
            detail: { field: 'goal' },
          },
        },
        {
          data: { name: 'milestones' },
          mark: {
            type: 'point',
            shape: 'diamond',
            filled: true,
            size: 90,
            color: '#5a32a3',
            description: t('milestone'),
            // An empty symbol group would be an unnamed graphic to a screen reader.
            aria: milestones.length > 0,
          },
          encoding: {
            x,
            y: { field: 'target', type: 'quantitative' },
            tooltip: [
              { field: 'goal', title: t('goal') },
              { field: 'period', type: 'temporal', title: t('milestone') },
              { field: 'target', type: 'quantitative', title: t('target'), format: ',.4~f' },
              { field: 'state', title: t('state') },
            ],
          },
        },
        {
          data: { name: 'cells' },
          mark: { type: 'line', point: true, invalid: 'break-paths-show-domains', description: series.kpi },
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative', title: series.unit, scale: { zero: false } },
            color: { field: 'group', type: 'nominal', title: t('group') },
            tooltip: [
              ...where,
              valueTip,
              { field: 'n', title: t('subjects') },
              { field: 'reason', title: t('reason') },
            ],
          },
        },
        {
          // A held value (docs/privacy.md §3): ringed, its tooltip saying which snapshot it is from.
          data: { name: 'held' },
          mark: {
            type: 'point',
            filled: false,
            size: 160,
            strokeWidth: 2,
            color: '#9a6700',
            description: t('state.held'),
          },
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative' },
            tooltip: [...where, valueTip, { field: 'reason', title: t('reason') }],
          },
        },
        {
          data: { name: 'breaches' },
          mark: {
            type: 'point',
            shape: 'triangle-up',
            filled: true,
            size: 140,
            color: '#a1120a',
            description: t('state.breach'),
          },
          encoding: {
            x,
            y: { field: 'value', type: 'quantitative' },
            tooltip: [...where, { field: 'value', title: t('value') }],
          },
        },
      ],
      // On a phone the legend goes under the plot, so the plot keeps the width.
      config: {
        legend: { orient: this.clientWidth > 0 && this.clientWidth < 560 ? 'bottom' : 'right' },
        axisX: { labelOverlap: true },
        locale: {
          number:
            i18n.lang === 'de'
              ? { decimal: ',', thousands: '.', grouping: [3], currency: ['', ' €'] }
              : { decimal: '.', thousands: ',', grouping: [3], currency: ['£', ''] },
        },
      },
    } as TopLevelSpec;
  }

  override render() {
    return html`
      ${this.error ? html`<p role="alert">${this.error}</p>` : nothing}
      <!-- The band, gaps and annotations are drawn for the eye; the legend and the table carry them as text. -->
      <div class="chart" role="img" aria-label="${t('chartLabel')}: ${this.kpi}"></div>
      <div class="legend muted">
        ${
          this.bandGrain
            ? html`<span data-testid="band-note"
                >${t('bandNotAtGrain').replace('{grain}', t(this.bandGrain as 'week'))}</span
              >`
            : html`<span><span aria-hidden="true" style="color:#2e9e4f">▮</span> ${t('band')}</span>`
        }
        <span><span aria-hidden="true" style="color:#a1120a">▲</span> ${t('state.breach')}</span>
        <span><span aria-hidden="true" style="color:#8c959f">┆</span> ${t('state.suppressed')}</span>
        <span><span aria-hidden="true" style="color:#9a6700">○</span> ${t('state.held')}</span>
        <span><span aria-hidden="true" style="color:#7a4b00">│</span> ${t('incidents')}</span>
        <span><span aria-hidden="true" style="color:#5a32a3">◆┄</span> ${t('targetLine')}</span>
        <span><span aria-hidden="true" style="color:#bf8700">▯</span> ${t('notes')}</span>
      </div>
    `;
  }
}

customElements.define('parity-kpi-chart', ParityKpiChart);

declare global {
  interface HTMLElementTagNameMap {
    'parity-kpi-chart': ParityKpiChart;
  }
}
