import { LitElement, html, css, nothing } from 'lit';
import {
  api,
  ApiError,
  type Agreement,
  type FactSheet,
  type GoalsResponse,
  type KpisResult,
  type Who,
} from '../api.js';
import { I18nController, i18n, t, type Lang } from '../i18n.js';
import '../views/parity-overview.js';
import '../views/parity-kpi-detail.js';
import '../views/parity-incidents.js';
import { layout, shared } from './styles.js';

type Route =
  | { view: 'overview' }
  | { view: 'kpi'; id: string; at: string }
  | { view: 'incidents' }
  | { view: 'transparency' }
  | { view: 'governance' }
  | { view: 'review'; month: string }
  | { view: 'steering' }
  | { view: 'retro'; period: string };

function parseRoute(): Route {
  const h = location.hash.replace(/^#\/?/, '');
  // #/kpi/lead_time?grain=week&by=partner&from=…&to=… opens the chart at those choices.
  if (h.startsWith('kpi/')) {
    const [id, at = ''] = h.slice(4).split('?');
    return { view: 'kpi', id: decodeURIComponent(id!), at };
  }
  if (h === 'incidents') return { view: 'incidents' };
  if (h === 'transparency') return { view: 'transparency' };
  if (h === 'governance') return { view: 'governance' };
  if (h === 'steering') return { view: 'steering' };
  if (h === 'retro' || h.startsWith('retro/')) return { view: 'retro', period: decodeURIComponent(h.slice(6)) };
  if (h === 'review' || h.startsWith('review/')) return { view: 'review', month: decodeURIComponent(h.slice(7)) };
  return { view: 'overview' };
}

/** Partner admins, the steering committee and the neutral host see the governance page. */
const governs = (who: Who) => ['admin', 'steering', 'operator'].includes(who.role);

/** The dashboard's shell: sign-in and sign-out, navigation, the language switch, and the page the address (#/…) names. */
export class ParityApp extends LitElement {
  static override properties = {
    who: { state: true },
    kpis: { state: true },
    agreement: { state: true },
    goals: { state: true },
    incidents: { state: true },
    route: { state: true },
    error: { state: true },
    providers: { state: true },
  };
  /** The partners' identity providers, for the sign-in page's buttons. */
  declare providers: { partner: string; partnerName: string; label: string; loginUrl: string }[] | undefined;
  declare who: Who | null | undefined;
  /** What the pages show, read once at sign-in (and again after an incident is acknowledged or resolved). */
  declare kpis: KpisResult | undefined;
  declare agreement: Agreement | undefined;
  declare goals: GoalsResponse | undefined;
  /** The active incidents. */
  declare incidents: FactSheet[] | undefined;
  declare route: Route;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
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
      @media (max-width: 480px) {
        :host {
          padding: 0 0.6em 1.5em;
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
  }

  override connectedCallback(): void {
    super.connectedCallback();
    document.documentElement.lang = i18n.lang;
    addEventListener('hashchange', this.#navigate);
    void this.#start();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    removeEventListener('hashchange', this.#navigate);
  }

  async #start(): Promise<void> {
    // An invitation link (#invite=<code>): works once; the code leaves the address at once.
    const invite = /^#invite=(inv_[A-Za-z0-9_-]+)$/.exec(location.hash);
    if (invite) {
      history.replaceState(null, '', location.pathname);
      await this.#signInWith(() => api.post<Who>('/v1/session/invitation', { code: invite[1] }));
      return;
    }
    // Back from a partner's identity provider, refused: say why.
    const refused = /^#signin-error=([a-z]+)$/.exec(location.hash);
    if (refused) {
      history.replaceState(null, '', location.pathname);
      const key = `signinError.${refused[1]}`;
      this.error = i18n.has(key) ? t(key) : t('signinError.provider');
    }
    // Who and what at once: a reader signed in before (this tab's last session was one) does not
    // wait for one round trip before the next. The host, or a first visit, asks who first.
    const reader = sessionStorage.getItem('parity.reader') === 'yes';
    const early = reader ? this.#fetchAll() : undefined;
    early?.catch(() => undefined);
    try {
      this.who = await api.get<Who>('/v1/session');
    } catch {
      this.who = null;
      sessionStorage.removeItem('parity.reader');
      void this.#loadProviders();
      return;
    }
    sessionStorage.setItem('parity.reader', this.who.role === 'operator' ? 'no' : 'yes');
    if (this.who.role === 'operator') return this.#loadOperator();
    try {
      this.#apply(await (early ?? this.#fetchAll()));
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
    await this.#signInWith(() => api.post<Who>('/v1/session', { token }));
  }

  async #signInWith(send: () => Promise<Who>): Promise<void> {
    try {
      this.who = await send();
      this.error = undefined;
      if (this.who.role === 'operator') await this.#loadOperator();
      else await this.#load();
    } catch (err) {
      this.who = null;
      this.error = err instanceof ApiError ? err.message : String(err);
      void this.#loadProviders();
    }
  }

  async #loadProviders(): Promise<void> {
    try {
      this.providers = (
        await api.get<{ providers: NonNullable<ParityApp['providers']> }>('/v1/auth/providers')
      ).providers;
    } catch {
      this.providers = [];
    }
  }

  async #fetchAll(retried = false): Promise<[KpisResult, Agreement, FactSheet[], GoalsResponse]> {
    try {
      return await this.#fetchOnce();
    } catch (err) {
      // A new agreement version (or a retention run) took a snapshot between the tiles and the
      // goals: the tiles' snapshot is refused now, so the overview is fetched again, once.
      if (!retried && err instanceof ApiError && err.field === 'querystring.snapshot') return this.#fetchAll(true);
      throw err;
    }
  }

  #fetchOnce(): Promise<[KpisResult, Agreement, FactSheet[], GoalsResponse]> {
    const kpis = api.get<KpisResult>('/v1/kpis');
    return Promise.all([
      kpis,
      api.get<Agreement>('/v1/agreement'),
      api.get<{ incidents: FactSheet[] }>('/v1/incidents?state=active&limit=100').then((r) => r.incidents),
      // The goals at the tiles' snapshot: the overview shows one snapshot's numbers.
      kpis.then((k) => api.get<GoalsResponse>(`/v1/goals?snapshot=${k.snapshot}`)),
    ]);
  }

  #apply([kpis, agreement, incidents, goals]: [KpisResult, Agreement, FactSheet[], GoalsResponse]): void {
    [this.kpis, this.agreement, this.incidents, this.goals] = [kpis, agreement, incidents, goals];
    this.#navigate();
  }

  async #load(): Promise<void> {
    this.#apply(await this.#fetchAll());
  }

  /** After an incident was acknowledged or resolved on a page: every page shows the incidents as they now are. */
  async #reload(): Promise<void> {
    try {
      await this.#load();
      this.error = undefined;
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  readonly #navigate = (): void => {
    this.route = parseRoute();
  };

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
              ? html`${
                    this.who.role === 'operator'
                      ? nothing
                      : html`<a href="#/">${t('kpis')}</a><a href="#/incidents">${t('incidents')}</a
                          ><a href="#/review">${t('review')}</a><a href="#/retro">${t('retrospective')}</a
                          ><a href="#/steering">${t('steering')}</a>`
                  }<a href="#/transparency">${t('transparency')}</a
                  >${governs(this.who) ? html`<a href="#/governance">${t('governance')}</a>` : nothing}`
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
              ? html`${this.#whoLine(this.who)}
                  <button class="secondary" @click=${() => this.#signOut()}>${t('signOut')}</button>`
              : nothing
          }
        </nav>
      </header>
      <main @parity-incidents-changed=${() => void this.#reload()}>
        ${this.who === undefined ? html`<p>${t('loading')}</p>` : this.who === null ? this.#signInForm() : this.#view()}
      </main>
    `;
  }

  /** Who is signed in, on one line of text (single spaces: the browser test reads its textContent). */
  #whoLine(w: Who) {
    const partner = w.partnerName ? html` ${t('forPartner')} <strong>${w.partnerName}</strong>` : nothing;
    return html`<span data-testid="who"
      >${t('signedInAs')} <strong>${w.name}</strong> (${t(`role.${w.role}`)})${partner}</span
    >`;
  }

  #signInForm() {
    return html`<section class="card" style="max-width:520px">
      <h2>${t('signIn')}</h2>
      ${
        this.providers?.length
          ? html`<ul class="providers" data-testid="providers" style="list-style:none;padding:0">
                ${this.providers.map(
                  (p) =>
                    html`<li style="margin:0.4em 0">
                      <a class="button" href=${p.loginUrl}>${t('signInWith')} ${p.label}</a>
                    </li>`,
                )}
              </ul>
              <p class="muted">${t('orToken')}</p>`
          : nothing
      }
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
    const who = this.who!;
    if (this.route.view === 'governance' && governs(who)) {
      void import('../views/parity-governance.js');
      return html`<section class="card">
        <parity-governance .userRole=${who.role} .partner=${who.partner}></parity-governance>
      </section>`;
    }
    if (this.route.view === 'transparency' || who.role === 'operator') {
      void import('../views/parity-transparency.js');
      return html`<section class="card"><parity-transparency></parity-transparency></section>`;
    }
    if (this.route.view === 'steering') {
      void import('../views/parity-steering.js');
      return html`<section class="card">
        <parity-steering .who=${who} .agreement=${this.agreement}></parity-steering>
      </section>`;
    }
    if (this.route.view === 'retro') {
      void import('../views/parity-retro.js');
      return html`<section class="card">
        <parity-retro .who=${who} .agreement=${this.agreement} .period=${this.route.period}></parity-retro>
      </section>`;
    }
    if (this.route.view === 'review') {
      void import('../views/parity-review.js');
      return html`<section class="card"><parity-review .month=${this.route.month}></parity-review></section>`;
    }
    const alert = this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing;
    if (!this.kpis || !this.agreement) return html`${this.error ? alert : html`<p>${t('loading')}</p>`}`;
    if (this.route.view === 'kpi')
      return html`${alert}<parity-kpi-detail
          .kpi=${this.route.id}
          .at=${this.route.at}
          .who=${who}
          .kpis=${this.kpis}
          .agreement=${this.agreement}
          .incidents=${this.incidents}
          .goals=${this.goals}
        ></parity-kpi-detail>`;
    if (this.route.view === 'incidents')
      return html`${alert}<parity-incidents
          .who=${who}
          .kpis=${this.kpis}
          .agreement=${this.agreement}
          .incidents=${this.incidents}
        ></parity-incidents>`;
    return html`${alert}<parity-overview
        .who=${who}
        .kpis=${this.kpis}
        .agreement=${this.agreement}
        .incidents=${this.incidents}
        .goals=${this.goals}
      ></parity-overview>`;
  }
}

customElements.define('parity-app', ParityApp);

declare global {
  interface HTMLElementTagNameMap {
    'parity-app': ParityApp;
  }
}
