import { LitElement, html, css, nothing } from 'lit';
import {
  api,
  ApiError,
  seriesParams,
  type Agreement,
  type FactSheet,
  type KpisResult,
  type Series,
  type Who,
} from '../api.js';
import { I18nController, i18n, t, type Lang } from '../i18n.js';
import './parity-kpi-tile.js';

// The chart (Vega, most of the bundle) loads when a detail page first needs it: the overview's
// tiles do not wait for it.
let chartLoaded: Promise<unknown> | undefined;
const loadChart = () => (chartLoaded ??= import('./parity-kpi-chart.js'));
import { shared, stateIcon } from './styles.js';

type Route =
  | { view: 'overview' }
  | { view: 'kpi'; id: string }
  | { view: 'incidents' }
  | { view: 'transparency' }
  | { view: 'governance' };

function parseRoute(): Route {
  const h = location.hash.replace(/^#\/?/, '');
  if (h.startsWith('kpi/')) return { view: 'kpi', id: decodeURIComponent(h.slice(4)) };
  if (h === 'incidents') return { view: 'incidents' };
  if (h === 'transparency') return { view: 'transparency' };
  if (h === 'governance') return { view: 'governance' };
  return { view: 'overview' };
}

const causes = ['data_quality', 'process', 'capacity', 'staffing', 'system_outage', 'external', 'other'];

/** The joint dashboard: sign-in, overview with the same-source line, KPI tiles, detail, incidents. */
export class ParityApp extends LitElement {
  static override properties = {
    who: { state: true },
    kpis: { state: true },
    agreement: { state: true },
    incidents: { state: true },
    route: { state: true },
    error: { state: true },
    copied: { state: true },
    controls: { state: true },
    table: { state: true },
    filter: { state: true },
    filtered: { state: true },
  };
  declare who: Who | null | undefined;
  declare kpis: KpisResult | undefined;
  declare agreement: Agreement | undefined;
  declare incidents: FactSheet[] | undefined;
  declare route: Route;
  /** The incidents page's filter and what it found (the overview keeps the active ones). */
  declare filter: { state: string; kpi: string; scope: string };
  declare filtered: FactSheet[] | undefined;
  declare error: string | undefined;
  declare copied: boolean;
  declare controls: { grain: string; by: string; from: string; to: string };
  declare table: Series | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    css`
      :host {
        display: block;
        max-width: 1200px;
        margin: 0 auto;
        padding: 0 1em 2em;
      }
      header {
        display: flex;
        flex-wrap: wrap;
        align-items: center;
        justify-content: space-between;
        gap: 0.6em;
        padding: 0.8em 0;
        border-bottom: 1px solid #d8dee4;
      }
      header h1 {
        font-size: 1.25em;
        margin: 0;
      }
      nav {
        display: flex;
        gap: 0.8em;
        flex-wrap: wrap;
        align-items: center;
      }
      nav a {
        color: #2f5fb3;
      }
      section {
        margin-top: 1.2em;
      }
      h2 {
        font-size: 1.1em;
        margin: 0 0 0.5em;
      }
      .tiles {
        display: grid;
        grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
        gap: 0.8em;
      }
      .card {
        background: #fff;
        border: 1px solid #d8dee4;
        border-radius: 10px;
        padding: 0.9em 1em;
      }
      .same-source {
        display: flex;
        flex-wrap: wrap;
        gap: 0.4em 1.2em;
        align-items: center;
      }
      code {
        font-size: 0.95em;
        background: #eef1f4;
        padding: 0.1em 0.35em;
        border-radius: 4px;
      }
      .controls {
        display: flex;
        flex-wrap: wrap;
        gap: 0.8em;
        align-items: end;
      }
      .controls label {
        margin: 0;
      }
      .incident {
        border-top: 1px solid #d8dee4;
        padding: 0.6em 0;
      }
      dl.sheet {
        display: grid;
        grid-template-columns: auto 1fr;
        gap: 0.2em 0.8em;
        font-size: 0.9em;
      }
      dl.sheet dd {
        margin: 0;
      }
      form.resolve {
        display: grid;
        gap: 0.3em;
        max-width: 560px;
      }
      @media (max-width: 480px) {
        :host {
          padding: 0 0.6em 1.5em;
        }
        .tiles {
          grid-template-columns: 1fr;
        }
        header h1 {
          font-size: 1.1em;
        }
      }
    `,
  ];

  constructor() {
    super();
    this.route = parseRoute();
    this.copied = false;
    this.controls = { grain: '', by: 'none', from: '', to: '' };
    this.filter = { state: 'active', kpi: '', scope: '' };
  }

  override connectedCallback(): void {
    super.connectedCallback();
    document.documentElement.lang = i18n.lang;
    addEventListener('hashchange', () => this.#navigate());
    void this.#start();
  }

  async #start(): Promise<void> {
    // A sign-in link (#signin=<token>, printed by the demo): sign in, then drop the token from the address.
    const m = /^#signin=([A-Za-z0-9._~+/=-]+)$/.exec(location.hash);
    if (m) {
      history.replaceState(null, '', location.pathname);
      await this.#signIn(m[1]!);
      return;
    }
    // Who and what at once: a signed-in reader does not wait for one round trip before the next.
    const data = this.#fetchAll();
    data.catch(() => undefined);
    try {
      this.who = await api.get<Who>('/v1/session');
    } catch {
      this.who = null;
      return;
    }
    if (this.who.role === 'operator') return this.#loadOperator();
    try {
      this.#apply(await data);
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  /** The neutral host reads no KPI value: its dashboard is the metadata report. */
  async #loadOperator(): Promise<void> {
    this.agreement = await api.get<Agreement>('/v1/agreement');
    if (location.hash !== '#/transparency') location.hash = '#/transparency';
    this.route = { view: 'transparency' };
  }

  async #signIn(token: string): Promise<void> {
    try {
      this.who = await api.post<Who>('/v1/session', { token });
      this.error = undefined;
      if (this.who.role === 'operator') await this.#loadOperator();
      else await this.#load();
    } catch (err) {
      this.who = null;
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  #fetchAll(): Promise<[KpisResult, Agreement, FactSheet[]]> {
    return Promise.all([
      api.get<KpisResult>('/v1/kpis'),
      api.get<Agreement>('/v1/agreement'),
      api.get<{ incidents: FactSheet[] }>('/v1/incidents?state=active&limit=100').then((r) => r.incidents),
    ]);
  }

  #apply([kpis, agreement, incidents]: [KpisResult, Agreement, FactSheet[]]): void {
    [this.kpis, this.agreement, this.incidents] = [kpis, agreement, incidents];
    this.#navigate();
  }

  async #load(): Promise<void> {
    this.#apply(await this.#fetchAll());
    if (this.filtered !== undefined) void this.#filterIncidents();
  }

  #navigate(): void {
    this.route = parseRoute();
    if (this.route.view === 'kpi') {
      void loadChart();
      const k = this.kpis?.kpis.find((x) => x.id === (this.route as { id: string }).id);
      if (k) this.controls = { grain: k.grain, by: 'none', from: '', to: '' };
      this.table = undefined;
    }
  }

  async #signOut(): Promise<void> {
    await api.del('/v1/session');
    this.who = null;
    this.kpis = undefined;
    location.hash = '';
  }

  override render() {
    return html`
      <header>
        <h1>${this.agreement?.agreement.partnership.title ?? 'Parity'} — ${t('title')}</h1>
        <nav aria-label="main">
          ${
            this.who
              ? html`${this.who.role === 'operator' ? nothing : html`<a href="#/">${t('kpis')}</a><a href="#/incidents">${t('incidents')}</a>`}<a
                    href="#/transparency"
                    >${t('transparency')}</a
                  >${['admin', 'steering', 'operator'].includes(this.who.role) ? html`<a href="#/governance">${t('governance')}</a>` : nothing}`
              : nothing
          }
          <label style="display:inline;font-weight:400"
            >${t('language')}
            <select
              @change=${(e: Event) => i18n.set((e.target as HTMLSelectElement).value as Lang)}
              .value=${i18n.lang}
            >
              <option value="en" ?selected=${i18n.lang === 'en'}>English</option>
              <option value="de" ?selected=${i18n.lang === 'de'}>Deutsch</option>
            </select>
          </label>
          ${
            this.who
              ? html`<span data-testid="who"
                    >${t('signedInAs')}
                    <strong>${this.who.name}</strong>
                    (${this.who.role})${this.who.partnerName ? html` ${t('forPartner')} <strong>${this.who.partnerName}</strong>` : nothing}</span
                  >
                  <button class="secondary" @click=${() => this.#signOut()}>${t('signOut')}</button>`
              : nothing
          }
        </nav>
      </header>
      <main>
        ${this.who === undefined ? html`<p>${t('loading')}</p>` : this.who === null ? this.#signInForm() : this.#view()}
      </main>
    `;
  }

  #signInForm() {
    return html`<section class="card" style="max-width:520px">
      <h2>${t('signIn')}</h2>
      <form
        @submit=${(e: Event) => {
          e.preventDefault();
          const input = (e.target as HTMLFormElement).querySelector('input')!;
          void this.#signIn(input.value.trim());
        }}
      >
        <label for="token">${t('tokenLabel')}</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          required
          style="width:100%"
          aria-describedby="token-help"
        />
        <p id="token-help" class="muted">${t('tokenHelp')}</p>
        ${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing}
        <button type="submit">${t('signIn')}</button>
      </form>
    </section>`;
  }

  #view() {
    if (this.route.view === 'governance' && this.who && ['admin', 'steering', 'operator'].includes(this.who.role)) {
      void import('../views/parity-governance.js');
      return html`<section class="card">
        <parity-governance .userRole=${this.who.role} .partner=${this.who.partner}></parity-governance>
      </section>`;
    }
    if (this.route.view === 'transparency' || this.who?.role === 'operator') {
      void import('../views/parity-transparency.js');
      return html`<section class="card"><parity-transparency></parity-transparency></section>`;
    }
    if (!this.kpis || !this.agreement)
      return html`${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : html`<p>${t('loading')}</p>`}`;
    if (this.route.view === 'kpi') return this.#detail(this.route.id);
    if (this.route.view === 'incidents') return this.#incidentsView();
    return this.#overview();
  }

  #overview() {
    const k = this.kpis!;
    const a = this.agreement!;
    const feeds = a.agreement.partners.map((p) => {
      const all = k.kpis.flatMap((x) => x.feeds.filter((f) => f.partner === p.id));
      const last =
        all
          .map((f) => f.lastArrival)
          .filter((x): x is string => x !== null)
          .sort()
          .at(-1) ?? null;
      return { partner: p, last, stale: all.some((f) => f.stale) };
    });
    return html`
      <section class="card" aria-labelledby="overview-h">
        <h2 id="overview-h">${t('partnership')}: ${a.agreement.partnership.title}</h2>
        <p>
          ${t('partners')}: ${a.agreement.partners.map((p) => p.name).join(', ')} · ${t('agreementVersion')}
          <strong data-testid="agreement-version">v${a.version}</strong>
        </p>
        <p class="same-source" data-testid="same-source">
          <strong>${t('sameSource')}:</strong>
          <span>${t('snapshot')} <strong data-testid="snapshot">${k.snapshot}</strong></span>
          <span>${t('asOf')} ${i18n.date(k.asOf)}</span>
          <span>${t('digest')} <code data-testid="digest" title=${k.digest}>${k.digest.slice(0, 12)}</code></span>
          <button
            class="secondary"
            @click=${async () => {
              await navigator.clipboard?.writeText(`snapshot ${k.snapshot} digest ${k.digest}`).catch(() => undefined);
              this.copied = true;
              setTimeout(() => (this.copied = false), 1500);
            }}
          >
            ${this.copied ? t('copied') : t('copy')}
          </button>
        </p>
        <h3 style="font-size:1em;margin:0.6em 0 0.3em">${t('freshness')}</h3>
        <ul data-testid="freshness">
          ${feeds.map(
            (f) =>
              html`<li>
                ${f.partner.name}: ${f.last ? `${t('lastBatch')} ${i18n.date(f.last)}` : t('noBatch')} —
                <span class="state ${f.stale ? 'no_data' : 'ok'}"
                  ><span aria-hidden="true">${f.stale ? '!' : '✓'}</span>${f.stale ? t('stale') : t('fresh')}</span
                >
              </li>`,
          )}
        </ul>
      </section>
      <section aria-labelledby="kpis-h">
        <h2 id="kpis-h">${t('kpis')}</h2>
        <div class="tiles">
          ${k.kpis.map((s) => html`<parity-kpi-tile data-kpi=${s.id} .summary=${s} href="#/kpi/${s.id}"></parity-kpi-tile>`)}
        </div>
      </section>
      ${
        this.incidents?.length
          ? html`<section>
              <h2>${t('incidents')}</h2>
              ${this.#incidentList(this.incidents.slice(0, 5))}
            </section>`
          : nothing
      }
    `;
  }

  #detail(id: string) {
    const s = this.kpis!.kpis.find((x) => x.id === id);
    const def = this.agreement!.agreement.kpis.find((x) => x.id === id);
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
        <h2>${s.title} <span class="muted">(${s.unit})</span></h2>
        <div class="controls">
          <div>
            <label for="grain">${t('grain')}</label
            ><select id="grain" @change=${set('grain')}>
              ${def.grains.map((g) => html`<option value=${g} ?selected=${this.controls.grain === g}>${t(g)}</option>`)}
            </select>
          </div>
          <div>
            <label for="by">${t('breakdown')}</label
            ><select id="by" @change=${set('by')}>
              ${bys.map((b) => html`<option value=${b} ?selected=${this.controls.by === b}>${b === 'none' ? t('none') : b === 'partner' ? t('partner') : b}</option>`)}
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
        </div>
        <!-- The table shows the very cells the chart drew: one request, not two. -->
        <parity-kpi-chart
          @parity-chart-drawn=${(e: Event) => (this.table = (e.target as unknown as { series: Series }).series)}
          .summary=${s}
          .definition=${def}
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
      <section class="card">
        <h2>${t('incidents')}</h2>
        ${this.#incidentList((this.incidents ?? []).filter((i) => i.kpi.id === id))}
      </section>
    `;
  }

  #cellsTable(series: Series) {
    return html`<table data-testid="cells">
      <caption class="muted" style="text-align:left">
        ${t('snapshot')} ${series.snapshot} · ${t('digest')}
        <code>${series.digest.slice(0, 12)}</code>
      </caption>
      <thead>
        <tr>
          <th scope="col">${t('period')}</th>
          <th scope="col">${t('group')}</th>
          <th scope="col" class="num">${t('value')}</th>
          <th scope="col" class="num">${t('subjects')}</th>
          <th scope="col">${t('state')}</th>
          <th scope="col">${t('reason')}</th>
        </tr>
      </thead>
      <tbody>
        ${series.cells.map(
          (c) =>
            html`<tr data-period=${c.period} data-group=${c.group ?? ''} data-value=${c.value ?? ''}>
              <td>${i18n.date(c.period)}</td>
              <td>${c.group ?? t('combined')}</td>
              <td class="num">${i18n.number(c.value, 4)}</td>
              <td class="num">${c.n ?? '—'}</td>
              <td>
                <span class="state ${c.state}"
                  ><span aria-hidden="true">${stateIcon[c.state]}</span>${t(`state.${c.state}` as 'state.ok')}</span
                >
              </td>
              <td>${c.reason ?? ''}</td>
            </tr>`,
        )}
      </tbody>
    </table>`;
  }

  #incidentsView() {
    const f = this.filter;
    const set = (key: keyof typeof f) => (e: Event) => {
      this.filter = { ...f, [key]: (e.target as HTMLSelectElement).value };
      void this.#filterIncidents();
    };
    const list = this.filtered ?? (f.state === 'active' && !f.kpi && !f.scope ? this.incidents : undefined);
    if (list === undefined) void this.#filterIncidents();
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
        ${list === undefined ? html`<p>${t('loading')}</p>` : this.#incidentList(list)}
      </div>
    </section>`;
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
    try {
      const list = (await api.get<{ incidents: FactSheet[] }>(`/v1/incidents?${key}`)).incidents;
      if (this.#asked === key) this.filtered = list;
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  #mayAct(i: FactSheet): boolean {
    const w = this.who;
    if (!w) return false;
    if (w.role === 'steering') return true;
    const def = this.agreement?.agreement.kpis.find((k) => k.id === i.kpi.id);
    return (
      w.role === 'owner' &&
      !!w.partner &&
      def?.owners[w.partner]?.email.toLowerCase() === w.name.toLowerCase() &&
      (i.scope === 'combined' || i.scope === w.partner)
    );
  }

  #incidentList(list: FactSheet[]) {
    if (!list.length) return html`<p class="muted">${t('noIncidents')}</p>`;
    return list.map(
      (i) =>
        html`<article class="incident" data-incident=${i.id} aria-label="${i.kpi.title} ${i.scope}">
          <div>
            <strong>${i.kpi.title}</strong> · ${i.scope} ·
            <span class="state ${i.state === 'resolved' ? 'ok' : 'breach'}"
              >${t(`incident.${i.state}` as 'incident.open')}</span
            >
            ${i.escalatedAt ? html` · <strong>${t('escalated')}</strong> ${i18n.date(i.escalatedAt)}` : nothing}
          </div>
          <div class="muted">
            ${i.reason}${i.period ? ` · ${i.grain} ${i18n.date(i.period)}` : ''} · ${t('value')}
            ${i.suppressed ? t('withheld') : i18n.number(i.value)} ${i.kpi.unit} · ${t('owner')}:
            ${i.owners.map((o) => o.name).join(', ')} · ${t('ackDue')} ${i18n.date(i.ackDueAt)}
          </div>
          ${i.narrative ? html`<div>${t('factSheet')}: ${i.cause ? html`<strong>${i.cause}</strong> — ` : nothing}${i.narrative}</div>` : nothing}
          <details>
            <summary>${t('factSheet')}</summary>
            <dl class="sheet">
              <dt>${t('snapshot')}</dt>
              <dd>
                ${i.snapshot}${i.digest ? html` · ${t('digest')} <code title=${i.digest}>${i.digest.slice(0, 12)}</code>` : nothing}
              </dd>
              <dt>${t('band')}</dt>
              <dd>
                ${i.band ? [i.band.lower !== null ? `≥ ${i18n.number(i.band.lower)}` : '', i.band.upper !== null ? `≤ ${i18n.number(i.band.upper)}` : ''].filter(Boolean).join(' · ') : '—'}
              </dd>
              <dt>${t('ackDue')}</dt>
              <dd>
                ${i18n.date(i.ackDueAt)}${i.acknowledgedAt ? ` · ${t('acknowledge')}: ${i18n.date(i.acknowledgedAt)}` : ''}
              </dd>
              ${
                i.resolvedAt
                  ? html`<dt>${t('incident.resolved')}</dt>
                      <dd>${i18n.date(i.resolvedAt)} (${i.resolution})</dd>`
                  : nothing
              }
              ${i.actions.map(
                (a) =>
                  html`<dt>${t('actionDescription')}</dt>
                    <dd>${a.description} — ${a.owner}, ${t('actionDue')} ${i18n.date(a.due)}</dd>`,
              )}
            </dl>
          </details>
          ${i.state !== 'resolved' && this.#mayAct(i) ? this.#actions(i) : nothing}
        </article>`,
    );
  }

  #actions(i: FactSheet) {
    const act = async (f: () => Promise<unknown>) => {
      try {
        await f();
        this.error = undefined;
        await this.#load();
      } catch (err) {
        this.error = err instanceof Error ? err.message : String(err);
      }
    };
    return html` ${i.state !== 'acknowledged' ? html`<button @click=${() => act(() => api.post(`/v1/incidents/${i.id}/ack`, {}))}>${t('acknowledge')}</button>` : nothing}
      <details class="resolve-form">
        <summary>${t('resolve')}</summary>
        <form
          class="resolve"
          @submit=${(e: Event) => {
            e.preventDefault();
            const f = new FormData(e.target as HTMLFormElement);
            const action = String(f.get('action') ?? '').trim();
            void act(() =>
              api.post(`/v1/incidents/${i.id}/resolve`, {
                cause: f.get('cause'),
                narrative: f.get('narrative'),
                actions: action
                  ? [
                      {
                        description: action,
                        owner: String(f.get('actionOwner') ?? ''),
                        due: String(f.get('due') ?? ''),
                      },
                    ]
                  : [],
              }),
            );
          }}
        >
          <label for="cause-${i.id}">${t('cause')}</label
          ><select id="cause-${i.id}" name="cause">
            ${causes.map((c) => html`<option value=${c}>${c}</option>`)}
          </select>
          <label for="narrative-${i.id}">${t('narrative')}</label
          ><textarea id="narrative-${i.id}" name="narrative" required rows="3"></textarea>
          <label for="action-${i.id}">${t('actionDescription')}</label><input id="action-${i.id}" name="action" />
          <label for="owner-${i.id}">${t('actionOwner')}</label><input id="owner-${i.id}" name="actionOwner" />
          <label for="due-${i.id}">${t('actionDue')}</label><input id="due-${i.id}" name="due" type="date" />
          ${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing}
          <button type="submit">${t('submitResolve')}</button>
        </form>
      </details>`;
  }
}

customElements.define('parity-app', ParityApp);

declare global {
  interface HTMLElementTagNameMap {
    'parity-app': ParityApp;
  }
}
