import { shiftDays } from '../../../services/platform/calendar.js';
import { LitElement, html, svg, css, nothing } from 'lit';
import { api, type Agreement, type KpiSummary, type KpisResult, type Series } from '../api.js';
import { bandText, changeOf, formatValue, partnerName, periodLabel, titleOf, unitOf } from '../format.js';
import { I18nController, t } from '../i18n.js';
import { shared, stateIcon } from './styles.js';

// One KPI as a tile: the last closed period's value with its unit, the provisional open period,
// the change, the band, the state (colour, icon and text) and a sparkline. Give it `summary`
// (as the dashboard does) or just `kpi="lead_time"` (embedded in a partner's page: it fetches
// its own figures from the room it is served by).

/** One KPI as a tile (value, open period, change, band, state, sparkline); embeddable as `<parity-kpi-tile kpi="…">`. */
export class ParityKpiTile extends LitElement {
  static override properties = {
    kpi: { type: String },
    token: { type: String },
    summary: { attribute: false },
    spark: { attribute: false },
    href: { type: String },
    agreement: { attribute: false },
  };
  /** The agreement, when the page has it: partner names and the KPI's words in the reader's language. */
  declare agreement: Agreement | undefined;
  declare kpi: string;
  /** A read token, for a page on another origin (PARITY_EMBED_ORIGINS); on the room's pages the session is used. */
  declare token: string | undefined;
  declare summary: KpiSummary | undefined;
  declare spark: (number | null)[] | undefined;
  declare href: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    css`
      :host {
        display: block;
        background: #fff;
        border: 1px solid #d8dee4;
        border-radius: 10px;
        padding: 0.9em 1em;
        min-width: 0;
      }
      h3 {
        margin: 0 0 0.4em;
        font-size: 1em;
        display: flex;
        justify-content: space-between;
        gap: 0.5em;
        align-items: baseline;
      }
      .value {
        font-size: 1.8em;
        font-weight: 700;
        font-variant-numeric: tabular-nums;
      }
      .unit {
        font-size: 0.5em;
        font-weight: 400;
        color: #57606a;
      }
      dl {
        display: grid;
        grid-template-columns: auto 1fr;
        gap: 0.15em 0.6em;
        margin: 0.5em 0;
        font-size: 0.88em;
      }
      dt {
        color: #57606a;
      }
      dd {
        margin: 0;
        font-variant-numeric: tabular-nums;
      }
      svg {
        width: 100%;
        height: 36px;
        display: block;
      }
      a {
        color: #2f5fb3;
      }
      .good {
        color: #1a7f37;
      }
      .bad {
        color: #a1120a;
      }
      table.scopes {
        width: 100%;
        border-collapse: collapse;
        font-size: 0.85em;
        margin: 0.3em 0 0.5em;
      }
      table.scopes th,
      table.scopes td {
        padding: 0.15em 0.3em 0.15em 0;
        text-align: left;
        font-weight: 400;
      }
      table.scopes td.num {
        text-align: right;
        font-variant-numeric: tabular-nums;
      }
      tr.alert th {
        font-weight: 700;
      }
    `,
  ];

  override async updated(changed: Map<string, unknown>): Promise<void> {
    if (changed.has('kpi') && this.kpi && !this.summary) {
      const all = await api.get<KpisResult>('/v1/kpis', this.token);
      this.summary = all.kpis.find((k) => k.id === this.kpi);
    }
    if ((changed.has('summary') || changed.has('kpi')) && this.summary && this.spark === undefined) {
      const s = await api.get<Series>(
        `/v1/kpis/${encodeURIComponent(this.summary.id)}/series?grain=${this.summary.grain}&from=${sparkFrom(this.summary)}`,
        this.token,
      );
      this.spark = s.cells.map((c) => c.value);
    }
  }

  override render() {
    const k = this.summary;
    if (!k) return html`<p class="muted">${t('loading')}</p>`;
    const scope = k.scopes.find((s) => s.group === null) ?? k.scopes[0]!;
    const last = scope.lastClosed;
    const band = scope.band;
    const change = changeOf(k, scope);
    const unit = unitOf(this.agreement, k);
    const partners = k.scopes.filter((s) => s.group !== null);
    // A partner out of band while the headline is in band: the tile says so at the top.
    const worst = partners.find((s) => s.state === 'breach');
    const headState = scope.state === 'ok' && worst ? worst.state : scope.state;
    return html`
      <h3>
        <span
          >${this.href ? html`<a href=${this.href}>${titleOf(this.agreement, k)}</a>` : titleOf(this.agreement, k)}</span
        >
        <span class="state ${headState}" data-state=${headState}
          ><span aria-hidden="true">${stateIcon[headState]}</span>${t(`state.${headState}` as 'state.ok')}${
            headState !== scope.state && worst ? html` · ${partnerName(this.agreement, worst.group)}` : nothing
          }</span
        >
      </h3>
      <div class="value" data-testid="value">
        ${last?.value == null ? (last?.suppressed ? t('withheld') : '—') : formatValue(k, last.value, band)}
        <span class="unit">${unit}</span>
      </div>
      <dl>
        <dt>${t('lastClosed')}</dt>
        <dd data-testid="period">${last ? periodLabel(last.period, k.grain) : '—'}</dd>
        <dt>${t('provisional')}</dt>
        <dd>${scope.provisional?.value == null ? '—' : formatValue(k, scope.provisional.value, band)}</dd>
        <dt>${t('change')}</dt>
        <dd data-testid="change" class=${change?.tone ?? ''}>${change?.text ?? '—'}</dd>
        <dt>${t('band')}</dt>
        <dd>${bandText(k, band)}</dd>
      </dl>
      ${
        partners.length
          ? html`<table class="scopes" data-testid="scopes">
              <caption class="muted" style="text-align:left">
                ${t('byPartner')}
              </caption>
              <tbody>
                ${partners.map(
                  (s) =>
                    html`<tr data-scope=${s.group} data-state=${s.state} class=${s.state === 'breach' ? 'alert' : ''}>
                      <th scope="row">${partnerName(this.agreement, s.group)}</th>
                      <td class="num">
                        ${s.lastClosed?.value == null ? (s.lastClosed?.suppressed ? t('withheld') : '—') : formatValue(k, s.lastClosed.value, s.band)}
                      </td>
                      <td>
                        <span class="state ${s.state}"
                          ><span aria-hidden="true">${stateIcon[s.state]}</span
                          >${t(`state.${s.state}` as 'state.ok')}</span
                        >
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : nothing
      }
      ${this.spark ? this.sparkline(this.spark, band) : nothing}
    `;
  }

  sparkline(values: (number | null)[], band: KpiSummary['scopes'][number]['band']) {
    const nums = values.filter((v): v is number => v !== null);
    if (nums.length < 2) return nothing;
    const lo = Math.min(...nums, band?.lower ?? Infinity);
    const hi = Math.max(...nums, band?.upper ?? -Infinity);
    const y = (v: number) => 34 - ((v - lo) / (hi - lo || 1)) * 32;
    const x = (i: number) => (i / (values.length - 1)) * 200;
    let d = '';
    values.forEach((v, i) => {
      if (v === null) return;
      d += `${d && values[i - 1] !== null ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    return html`<svg
      viewBox="0 0 200 36"
      preserveAspectRatio="none"
      role="img"
      aria-label="${titleOf(this.agreement, this.summary!)}: ${nums.length} ${t('period')}"
    >
      ${band?.upper != null ? svg`<line x1="0" x2="200" y1=${y(band.upper)} y2=${y(band.upper)} stroke="#a1120a" stroke-dasharray="3 3" stroke-width="1" />` : nothing}
      ${band?.lower != null ? svg`<line x1="0" x2="200" y1=${y(band.lower)} y2=${y(band.lower)} stroke="#a1120a" stroke-dasharray="3 3" stroke-width="1" />` : nothing}
      <path d=${d} fill="none" stroke="#2f5fb3" stroke-width="1.5" vector-effect="non-scaling-stroke" />
    </svg>`;
  }
}

function sparkFrom(k: KpiSummary): string {
  const days = k.grain === 'day' ? 30 : k.grain === 'week' ? 26 * 7 : 365;
  const last = k.scopes[0]?.provisional?.period ?? new Date().toISOString().slice(0, 10);
  return shiftDays(last, -days);
}

customElements.define('parity-kpi-tile', ParityKpiTile);

declare global {
  interface HTMLElementTagNameMap {
    'parity-kpi-tile': ParityKpiTile;
  }
}
