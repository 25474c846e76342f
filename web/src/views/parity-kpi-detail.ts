import { html, css, nothing, type PropertyValues } from 'lit';
import {
  api,
  ApiError,
  seriesParams,
  type Agreement,
  type Annotation,
  type FactSheet,
  type GoalsResponse,
  type KpisResult,
  type Series,
  type Who,
} from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { LightElement } from '../light-element.js';
import type { ParityKpiChart } from '../components/parity-kpi-chart.js';
import '../components/parity-incident-list.js';
import { layout, shared, stateIcon } from '../components/styles.js';
import { toggleThread } from '../components/thread-toggle.js';
import { addPeriods, periodEnd, shiftDays, type Grain } from '../../../services/platform/calendar.js';
import { dimensionName, formatValue, partnerName, periodLabel, titleOf, unitOf } from '../format.js';

/** The KPI detail page: grain, breakdown and range controls, the chart, the table of the same cells, downloads and the KPI's incidents (their list's `parity-incidents-changed` bubbles out). */
export class ParityKpiDetail extends LightElement {
  static override properties = {
    at: { type: String },
    kpi: { attribute: false },
    who: { attribute: false },
    kpis: { attribute: false },
    agreement: { attribute: false },
    incidents: { attribute: false },
    goals: { attribute: false },
    controls: { state: true },
    compare: { state: true },
    compared: { state: true },
    table: { state: true },
    notes: { state: true },
    tablePage: { state: true },
    tableSort: { state: true },
    noteError: { state: true },
  };
  /** The KPI's id (from the address: #/kpi/<id>). */
  declare kpi: string;
  declare who: Who | undefined;
  declare kpis: KpisResult | undefined;
  declare agreement: Agreement | undefined;
  /** The active incidents (the page shows this KPI's). */
  declare incidents: FactSheet[] | undefined;
  /** The partnership's goals: the chart draws the target line and milestones of this KPI's. */
  declare goals: GoalsResponse | undefined;
  /** The address's choices (`grain=week&by=partner&from=…&to=…`), '' for the defaults. */
  declare at: string | undefined;
  declare controls: { grain: string; by: string; from: string; to: string };
  /** What the range is compared with, and that range's series (the same disclosed cells the API serves). */
  declare compare: 'none' | 'previous' | 'lastYear';
  declare compared: { series: Series; from: string; to: string; until: string } | undefined;
  /** The series the chart last drew: the table shows the very same cells. */
  declare table: Series | undefined;
  /** The partners' notes on the periods the chart drew (the chart fetched them). */
  declare notes: Annotation[];
  /** The table's page (0-based) and order: 25 rows a page, sorted by a column the reader chose. */
  declare tablePage: number;
  declare tableSort: { by: 'period' | 'group' | 'value'; dir: 1 | -1 };
  declare noteError: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    css`
      parity-kpi-detail {
        display: block;
      }
      parity-kpi-detail th button.sort {
        background: none;
        border: 0;
        padding: 0;
        color: inherit;
        font: inherit;
        font-weight: 600;
        cursor: pointer;
      }
      parity-kpi-detail .pager {
        display: flex;
        gap: 0.8em;
        align-items: center;
        margin-top: 0.5em;
      }
    `,
  ];

  constructor() {
    super();
    this.controls = { grain: '', by: 'none', from: '', to: '' };
    this.notes = [];
    this.tablePage = 0;
    this.tableSort = { by: 'period', dir: -1 };
    this.compare = 'none';
  }

  override connectedCallback(): void {
    super.connectedCallback();
    // The chart (Vega, most of the bundle) loads when a detail page first needs it: the overview's
    // tiles do not wait for it.
    void import('../components/parity-kpi-chart.js');
  }

  /**
   * Another KPI (or another address) starts from its own grain, combined, over the last year —
   * or from the choices the address names (an incident's fact sheet links to its period).
   */
  override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('kpi') || changed.has('at')) {
      const k = this.kpis?.kpis.find((x) => x.id === this.kpi);
      const q = new URLSearchParams(this.at ?? '');
      this.controls = {
        grain: q.get('grain') ?? k?.grain ?? '',
        by: q.get('by') ?? 'none',
        from: q.get('from') ?? this.#presetFrom('year'),
        to: q.get('to') ?? '',
      };
      this.table = undefined;
    }
  }

  /** The first day a preset range starts at, counted back from the room's today. */
  #presetFrom(p: string): string {
    const today = this.kpis?.today ?? new Date().toISOString().slice(0, 10);
    const days = p === '4w' ? 28 : p === 'quarter' ? 91 : p === 'year' ? 365 : 0;
    return days ? shiftDays(today, -days) : '';
  }

  #presetOf(): string {
    if (this.controls.to) return 'custom';
    for (const p of ['4w', 'quarter', 'year']) if (this.controls.from === this.#presetFrom(p)) return p;
    return this.controls.from ? 'custom' : 'all';
  }

  #preset(p: string): void {
    if (p === 'custom') return;
    this.controls = { ...this.controls, from: this.#presetFrom(p), to: '' };
  }

  override render() {
    if (!this.kpis || !this.agreement) return nothing;
    const id = this.kpi;
    const s = this.kpis.kpis.find((x) => x.id === id);
    const def = this.agreement.agreement.kpis.find((x) => x.id === id);
    if (!s || !def)
      return html`<p role="alert">${id}: —</p>
        <a href="#/">${t('back')}</a>`;
    const bys = ['none', ...(def.breakdown === 'per_partner' ? ['partner'] : []), ...Object.keys(def.dimensions)];
    const set = (key: 'grain' | 'by' | 'from' | 'to') => (e: Event) => {
      this.controls = { ...this.controls, [key]: (e.target as HTMLInputElement).value };
    };
    const q = seriesParams(this.controls);
    const base = `/v1/kpis/${encodeURIComponent(id)}/series?${q}${q ? '&' : ''}`;
    return html`
      <p><a href="#/">← ${t('back')}</a></p>
      <section class="card">
        <h2>${titleOf(this.agreement, s)} <span class="muted">(${unitOf(this.agreement, s) || '%'})</span></h2>
        <div class="controls">
          <div>
            <label for="preset">${t('range')}</label
            ><select id="preset" @change=${(e: Event) => this.#preset((e.target as HTMLSelectElement).value)}>
              ${(['4w', 'quarter', 'year', 'all', 'custom'] as const).map(
                (p) => html`<option value=${p} ?selected=${this.#presetOf() === p}>${t(`preset.${p}`)}</option>`,
              )}
            </select>
          </div>
          <div>
            <label for="grain">${t('grain')}</label
            ><select id="grain" @change=${set('grain')}>
              ${def.grains.map((g) => html`<option value=${g} ?selected=${this.controls.grain === g}>${t(g)}</option>`)}
            </select>
          </div>
          <div>
            <label for="by">${t('breakdown')}</label
            ><select id="by" @change=${set('by')}>
              ${bys.map((b) => html`<option value=${b} ?selected=${this.controls.by === b}>${b === 'none' ? t('none') : b === 'partner' ? t('partner') : dimensionName(this.agreement, id, b)}</option>`)}
            </select>
          </div>
          <div>
            <label for="from">${t('from')}</label
            ><input id="from" type="date" .value=${this.controls.from} @change=${set('from')} />
          </div>
          <div>
            <label for="to">${t('to')}</label
            ><input id="to" type="date" .value=${this.controls.to} @change=${set('to')} />
          </div>
          <div>
            <label for="compare">${t('compareWith')}</label
            ><select
              id="compare"
              @change=${(e: Event) => {
                this.compare = (e.target as HTMLSelectElement).value as 'none';
                void this.#loadComparison();
              }}
            >
              ${(['none', 'previous', 'lastYear'] as const).map(
                (c) => html`<option value=${c} ?selected=${this.compare === c}>${t(`compare.${c}`)}</option>`,
              )}
            </select>
          </div>
        </div>
        ${this.#comparison()}
        <!-- The table shows the very cells the chart drew: one request, not two. -->
        <parity-kpi-chart
          @parity-chart-drawn=${(e: Event) => {
            const chart = e.target as ParityKpiChart;
            this.table = chart.series;
            this.tablePage = 0;
            void this.#loadComparison();
            this.notes = chart.notes;
          }}
          .summary=${s}
          .definition=${def}
          .partnerNames=${Object.fromEntries(this.agreement.agreement.partners.map((p) => [p.id, p.name]))}
          .goals=${this.goals?.goals ?? []}
          kpi=${id}
          grain=${this.controls.grain}
          by=${this.controls.by}
          from=${this.controls.from}
          to=${this.controls.to}
        ></parity-kpi-chart>
        <p>
          <a class="button secondary" href="${base}format=csv" download="${id}.csv">${t('downloadCsv')}</a>
          <a class="button secondary" href="${base}format=arrow" download="${id}.arrow">${t('downloadArrow')}</a>
        </p>
      </section>
      <section class="card">
        <h2>${t('table')}</h2>
        ${this.table ? this.#cellsTable(this.table) : html`<p>${t('loading')}</p>`}
      </section>
      <section class="card" aria-labelledby="notes-h">
        <h2 id="notes-h">${t('notes')}</h2>
        ${
          this.notes.length
            ? html`<ul data-testid="notes">
                ${this.notes.map(
                  (a) =>
                    html`<li data-id=${a.id}>
                      <strong>${i18n.date(a.from)}${a.to !== a.from ? html` – ${i18n.date(a.to)}` : nothing}</strong>
                      (${a.scope === 'combined' ? t('combined') : a.scope}): <span class="note-text">${a.text}</span>
                      <span class="muted">— ${a.author.name}${a.version > 1 ? ` (${t('edited')})` : ''}</span>
                      <details @toggle=${(e: Event) => toggleThread(e, 'annotation', a.id)}>
                        <summary>${t('discussion')}</summary>
                      </details>
                    </li>`,
                )}
              </ul>`
            : html`<p class="muted">${t('noNotes')}</p>`
        }
        ${
          this.who && ['analyst', 'owner', 'steering', 'admin'].includes(this.who.role)
            ? html`<form class="controls" data-testid="note-form" @submit=${(e: Event) => this.#addNote(e)}>
                <div>
                  <label for="note-from">${t('from')}</label><input id="note-from" name="from" type="date" required />
                </div>
                <div><label for="note-to">${t('to')}</label><input id="note-to" name="to" type="date" /></div>
                <div>
                  <label for="note-scope">${t('group')}</label
                  ><select id="note-scope" name="scope">
                    <option value="combined">${t('combined')}</option>
                    ${
                      def.breakdown === 'per_partner'
                        ? this.agreement.agreement.partners.map((p) => html`<option value=${p.id}>${p.name}</option>`)
                        : nothing
                    }
                  </select>
                </div>
                <div style="flex:1 1 20em">
                  <label for="note-text">${t('note')}</label
                  ><input id="note-text" name="text" required maxlength="2000" style="width:100%" />
                </div>
                <div><button type="submit">${t('addNote')}</button></div>
              </form>`
            : nothing
        }
        ${this.noteError ? html`<p role="alert">${this.noteError}</p>` : nothing}
      </section>
      <section class="card">
        <h2>${t('incidents')}</h2>
        <parity-incident-list
          .incidents=${(this.incidents ?? []).filter((i) => i.kpi.id === id)}
          .who=${this.who}
          .agreement=${this.agreement}
        ></parity-incident-list>
      </section>
    `;
  }

  /** Posts a note and redraws the chart, which shows it (and hands it to the list). */
  async #addNote(e: Event): Promise<void> {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const data = new FormData(form);
    const to = String(data.get('to') ?? '');
    try {
      await api.post(`/v1/kpis/${encodeURIComponent(this.kpi)}/annotations`, {
        from: String(data.get('from') ?? ''),
        ...(to ? { to } : {}),
        scope: String(data.get('scope') ?? 'combined'),
        text: String(data.get('text') ?? ''),
      });
      this.noteError = undefined;
      form.reset();
      await this.querySelector<ParityKpiChart>('parity-kpi-chart')?.draw();
    } catch (err) {
      this.noteError = err instanceof ApiError ? `${err.message}${err.field ? ` (${err.field})` : ''}` : String(err);
    }
  }

  /**
   * The closed periods shown and the range they are compared with: as many whole periods just
   * before them, or the same periods a year earlier (52 weeks for days and weeks, 12 months for
   * months). The open period is left out of both: it is not over.
   */
  #comparedRange(): { from: string; to: string; until: string } | undefined {
    const series = this.table;
    const lastClosed = this.kpis?.kpis.find((k) => k.id === this.kpi)?.scopes[0]?.lastClosed?.period;
    if (this.compare === 'none' || !series?.cells.length || !lastClosed) return undefined;
    const grain = series.grain as Grain;
    const periods = [...new Set(series.cells.map((c) => c.period))].filter((p) => p <= lastClosed).sort();
    if (!periods.length) return undefined;
    const first = periods[0]!;
    const last = periods.at(-1)!;
    const n = this.compare === 'previous' ? periods.length : grain === 'month' ? 12 : grain === 'week' ? 52 : 364;
    return { from: addPeriods(first, grain, -n), to: periodEnd(addPeriods(last, grain, -n), grain), until: last };
  }

  #comparing = '';
  async #loadComparison(): Promise<void> {
    const range = this.#comparedRange();
    if (!range) {
      this.#comparing = '';
      this.compared = undefined;
      return;
    }
    const q = `${this.kpi}?${seriesParams({ ...this.controls, from: range.from, to: range.to })}`;
    if (q === this.#comparing && this.compared) return;
    this.#comparing = q;
    try {
      const series = await api.get<Series>(`/v1/kpis/${encodeURIComponent(this.kpi)}/series?${q.split('?')[1]}`);
      if (this.#comparing === q) this.compared = { series, ...range };
    } catch {
      // Tried again at the next draw or choice.
      if (this.#comparing === q) this.#comparing = '';
      this.compared = undefined;
    }
  }

  /**
   * Each group's mean of its periods' disclosed values in this range and in the compared one (a
   * withheld period counts in neither): the same cells the API serves, nothing more.
   */
  #comparison() {
    const now = this.table;
    const then = this.compared?.series;
    if (this.compare === 'none' || !now || !then) return nothing;
    const kpi = this.kpis?.kpis.find((k) => k.id === this.kpi);
    const until = this.compared!.until;
    const mean = (cells: Series['cells'], g: string | null) => {
      const v = cells.filter((c) => c.group === g && c.value !== null && c.period <= until).map((c) => c.value!);
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    };
    const groups = [...new Set(now.cells.map((c) => c.group))];
    return html`<div class="scroll" tabindex="0">
      <table data-testid="comparison">
        <caption class="muted" style="text-align:left">
          ${t('compareWith')} ${t(`compare.${this.compare}`)}: ${i18n.date(this.compared!.from)} –
          ${i18n.date(this.compared!.to)}
        </caption>
        <thead>
          <tr>
            <th scope="col">${t('group')}</th>
            <th scope="col" class="num">${t('range')}</th>
            <th scope="col" class="num">${t(`compare.${this.compare}`)}</th>
            <th scope="col" class="num">${t('change')}</th>
          </tr>
        </thead>
        <tbody>
          ${groups.map((g) => {
            const a = mean(now.cells, g);
            const b = mean(then.cells, g);
            const pct = a !== null && b ? ((a - b) / Math.abs(b)) * 100 : null;
            return html`<tr data-group=${g ?? ''}>
              <th scope="row">${partnerName(this.agreement, g)}</th>
              <td class="num">${kpi ? formatValue(kpi, a) : i18n.number(a)}</td>
              <td class="num">${kpi ? formatValue(kpi, b) : i18n.number(b)}</td>
              <td class="num">${pct === null ? '—' : `${pct > 0 ? '+' : ''}${i18n.number(pct, 1)} %`}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>`;
  }

  /** The notes on a cell's period and scope (a combined note on the combined row, a partner's on its own). */
  #notesOn(period: string, group: string | null, grain: Grain): Annotation[] {
    const last = periodEnd(period, grain);
    return this.notes.filter((n) => n.from <= last && n.to >= period && n.scope === (group ?? 'combined'));
  }

  #cellsTable(series: Series) {
    const PAGE = 25;
    const { by, dir } = this.tableSort;
    const key = (c: Series['cells'][number]) =>
      by === 'period' ? c.period : by === 'group' ? (c.group ?? '') : (c.value ?? Number.NEGATIVE_INFINITY);
    const sorted = [...series.cells].sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return (x < y ? -1 : x > y ? 1 : a.period < b.period ? -1 : 1) * dir;
    });
    const pages = Math.max(1, Math.ceil(sorted.length / PAGE));
    const page = Math.min(this.tablePage, pages - 1);
    const rows = sorted.slice(page * PAGE, page * PAGE + PAGE);
    const kpi = this.kpis?.kpis.find((k) => k.id === this.kpi);
    const head = (col: 'period' | 'group' | 'value', label: string, cls = '') =>
      html`<th scope="col" class=${cls} aria-sort=${by === col ? (dir === 1 ? 'ascending' : 'descending') : 'none'}>
        <button
          class="sort"
          @click=${() => {
            this.tableSort = { by: col, dir: by === col ? (-dir as 1 | -1) : col === 'period' ? -1 : 1 };
            this.tablePage = 0;
          }}
        >
          ${label}${by === col ? (dir === 1 ? ' ▲' : ' ▼') : ''}
        </button>
      </th>`;
    return html`<div class="scroll" tabindex="0">
        <table data-testid="cells">
          <caption class="muted" style="text-align:left">
            ${t('snapshot')} ${series.snapshot} · ${t('digest')}
            <code>${series.digest.slice(0, 12)}</code>
            · ${series.cells.length} ${t('rows')}
          </caption>
          <thead>
            <tr>
              ${head('period', t('period'))} ${head('group', t('group'))} ${head('value', t('value'), 'num')}
              <th scope="col" class="num">${t('subjects')}</th>
              <th scope="col">${t('state')}</th>
              <th scope="col">${t('reason')}</th>
              <th scope="col">${t('notes')}</th>
            </tr>
          </thead>
          <tbody>
            ${rows.map(
              (c) =>
                html`<tr data-period=${c.period} data-group=${c.group ?? ''} data-value=${c.value ?? ''}>
                  <td>${periodLabel(c.period, series.grain)}</td>
                  <td>${partnerName(this.agreement, c.group)}</td>
                  <td class="num">${kpi ? formatValue(kpi, c.value) : i18n.number(c.value, 4)}</td>
                  <td class="num">${c.n ?? '—'}</td>
                  <td>
                    <span class="state ${c.state}"
                      ><span aria-hidden="true">${stateIcon[c.state]}</span>${t(`state.${c.state}` as 'state.ok')}</span
                    >
                  </td>
                  <td>${i18n.reason(c, series)}</td>
                  <td class="note-cell">
                    ${this.#notesOn(c.period, c.group, series.grain as Grain).map(
                      (n) => html`<div>${n.text} <span class="muted">— ${n.author.name}</span></div>`,
                    )}
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${
        pages > 1
          ? html`<nav class="pager" aria-label=${t('table')} data-testid="pager">
              <button class="secondary" ?disabled=${page === 0} @click=${() => (this.tablePage = page - 1)}>
                ${t('previousPage')}
              </button>
              <span
                >${t('pageOf')
                  .replace('{p}', String(page + 1))
                  .replace('{n}', String(pages))}</span
              >
              <button class="secondary" ?disabled=${page >= pages - 1} @click=${() => (this.tablePage = page + 1)}>
                ${t('nextPage')}
              </button>
            </nav>`
          : nothing
      }`;
  }
}

customElements.define('parity-kpi-detail', ParityKpiDetail);

declare global {
  interface HTMLElementTagNameMap {
    'parity-kpi-detail': ParityKpiDetail;
  }
}
