import { html, css } from 'lit';
import { api, type Agreement, type FactSheet, type KpisResult, type Who } from '../api.js';
import { I18nController, t } from '../i18n.js';
import { LightElement } from '../light-element.js';
import '../components/parity-incident-list.js';
import { layout, shared } from '../components/styles.js';

type Filter = { state: string; kpi: string; scope: string };

/** The filter outlives the page: back on the incidents page, the reader finds the choice they left. */
let lastFilter: Filter = { state: 'active', kpi: '', scope: '' };

/** The incidents page: incidents filtered by state, KPI and scope, as the API lists them (their list's `parity-incidents-changed` bubbles out). */
export class ParityIncidents extends LightElement {
  static override properties = {
    who: { attribute: false },
    kpis: { attribute: false },
    agreement: { attribute: false },
    incidents: { attribute: false },
    filter: { state: true },
    filtered: { state: true },
    error: { state: true },
  };
  declare who: Who | undefined;
  declare kpis: KpisResult | undefined;
  declare agreement: Agreement | undefined;
  /** The active incidents the shell already holds: the list under the unchanged filter. */
  declare incidents: FactSheet[] | undefined;
  /** The filter and what it found. */
  declare filter: Filter;
  declare filtered: FactSheet[] | undefined;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    css`
      parity-incidents {
        display: block;
      }
    `,
  ];

  constructor() {
    super();
    this.filter = lastFilter;
  }

  /** The list under the filter: the shell's active incidents while the filter is unchanged, else what the API found. */
  get #list(): FactSheet[] | undefined {
    const f = this.filter;
    return this.filtered ?? (f.state === 'active' && !f.kpi && !f.scope ? this.incidents : undefined);
  }

  override willUpdate(): void {
    if (this.#list === undefined) void this.#filterIncidents();
  }

  /** The filter last asked for: a slower earlier answer never replaces a later one. */
  #asked = '';
  async #filterIncidents(): Promise<void> {
    const q = new URLSearchParams({ limit: '200' });
    for (const [k, v] of Object.entries(this.filter)) if (v) q.set(k, v);
    const key = q.toString();
    if (key === this.#asked && this.filtered === undefined) return; // already on its way
    this.#asked = key;
    this.filtered = undefined;
    this.error = undefined;
    try {
      const list = (await api.get<{ incidents: FactSheet[] }>(`/v1/incidents?${key}`)).incidents;
      if (this.#asked === key) this.filtered = list;
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  override render() {
    const f = this.filter;
    const set = (key: keyof Filter) => (e: Event) => {
      this.filter = lastFilter = { ...f, [key]: (e.target as HTMLSelectElement).value };
      void this.#filterIncidents();
    };
    const list = this.#list;
    const partners = this.agreement?.agreement.partners ?? [];
    return html`<section class="card">
      <h2>${t('incidents')}</h2>
      <form class="controls" @submit=${(e: Event) => e.preventDefault()} aria-label=${t('incidents')}>
        <div>
          <label for="f-state">${t('state')}</label>
          <select id="f-state" @change=${set('state')} .value=${f.state}>
            ${['active', 'open', 'notified', 'acknowledged', 'resolved', ''].map((s) => html`<option value=${s} ?selected=${f.state === s}>${s === '' ? t('all') : s === 'active' ? t('activeIncidents') : t(`incident.${s}` as 'incident.open')}</option>`)}
          </select>
        </div>
        <div>
          <label for="f-kpi">KPI</label>
          <select id="f-kpi" @change=${set('kpi')} .value=${f.kpi}>
            <option value="" ?selected=${!f.kpi}>${t('all')}</option>
            ${(this.kpis?.kpis ?? []).map((k) => html`<option value=${k.id} ?selected=${f.kpi === k.id}>${k.title}</option>`)}
          </select>
        </div>
        <div>
          <label for="f-scope">${t('group')}</label>
          <select id="f-scope" @change=${set('scope')} .value=${f.scope}>
            <option value="" ?selected=${!f.scope}>${t('all')}</option>
            <option value="combined" ?selected=${f.scope === 'combined'}>${t('combined')}</option>
            ${partners.map((p) => html`<option value=${p.id} ?selected=${f.scope === p.id}>${p.name}</option>`)}
          </select>
        </div>
      </form>
      <div data-testid="incident-list">
        ${
          list === undefined
            ? this.error
              ? html`<p role="alert" style="color:#a1120a">${this.error}</p>`
              : html`<p>${t('loading')}</p>`
            : html`<parity-incident-list
                .incidents=${list}
                .who=${this.who}
                .agreement=${this.agreement}
                @parity-incidents-changed=${this.#refresh}
              ></parity-incident-list>`
        }
      </div>
    </section>`;
  }

  /** After an acknowledgement or a resolution the filtered list is read again (the shell reads the active ones). */
  #refresh = (): void => {
    if (this.filtered !== undefined) void this.#filterIncidents();
  };
}

customElements.define('parity-incidents', ParityIncidents);

declare global {
  interface HTMLElementTagNameMap {
    'parity-incidents': ParityIncidents;
  }
}
