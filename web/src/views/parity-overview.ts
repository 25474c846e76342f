import { html, css, nothing } from 'lit';
import {
  api,
  type ActionView,
  type Agreement,
  type FactSheet,
  type GoalsResponse,
  type KpisResult,
  type Who,
} from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { LightElement } from '../light-element.js';
import '../components/parity-incident-list.js';
import '../components/parity-kpi-tile.js';
import '../components/parity-goals-panel.js';
import { layout, shared, stateIcon } from '../components/styles.js';
import { formatValue, titleOf } from '../format.js';

/** The overview page: the partnership, the same-source line, feed freshness, the KPI tiles and the first active incidents (their list's `parity-incidents-changed` bubbles out). */
export class ParityOverview extends LightElement {
  static override properties = {
    who: { attribute: false },
    kpis: { attribute: false },
    agreement: { attribute: false },
    incidents: { attribute: false },
    goals: { attribute: false },
    copied: { state: true },
    overdue: { state: true },
  };
  declare who: Who | undefined;
  declare kpis: KpisResult | undefined;
  declare agreement: Agreement | undefined;
  /** The active incidents (the overview shows the first five). */
  declare incidents: FactSheet[] | undefined;
  /** The intent, stage and goals (GET /v1/goals at the same snapshot as the tiles). */
  declare goals: GoalsResponse | undefined;
  declare copied: boolean;
  /** Actions past their due date (retrospectives' decisions, incidents' follow-ups), as GET /v1/actions lists them. */
  declare overdue: ActionView[] | undefined;
  private readonly languageSwitch = new I18nController(this);

  override connectedCallback(): void {
    super.connectedCallback();
    void api
      .get<{ actions: ActionView[] }>('/v1/actions?state=overdue')
      .then((r) => (this.overdue = r.actions))
      .catch(() => (this.overdue = []));
  }

  static override styles = [
    shared,
    layout,
    css`
      parity-overview {
        display: block;
      }
      .tiles {
        display: grid;
        grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
        gap: 0.8em;
      }
      .same-source {
        display: flex;
        flex-wrap: wrap;
        gap: 0.4em 1.2em;
        align-items: center;
      }
      @media (max-width: 480px) {
        .tiles {
          grid-template-columns: 1fr;
        }
      }
    `,
  ];

  constructor() {
    super();
    this.copied = false;
  }

  override render() {
    const k = this.kpis;
    const a = this.agreement;
    if (!k || !a) return nothing;
    const feeds = a.agreement.partners.map((p) => {
      const all = k.kpis.flatMap((x) => x.feeds.filter((f) => f.partner === p.id));
      const last =
        all
          .map((f) => f.lastArrival)
          .filter((x): x is string => x !== null)
          .sort()
          .at(-1) ?? null;
      // In an agreed maintenance window until (no feed of it is stale meanwhile).
      const maintenance =
        all
          .map((f) => f.maintenanceUntil)
          .filter((x): x is string => !!x)
          .sort()
          .at(-1) ?? null;
      return { partner: p, last, stale: all.some((f) => f.stale), maintenance };
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
                >${f.maintenance ? html` · ${t('inMaintenance')} ${i18n.date(f.maintenance)}` : nothing}
              </li>`,
          )}
        </ul>
      </section>
      <parity-goals-panel .goals=${this.goals} .agreement=${this.agreement}></parity-goals-panel>
      ${
        this.overdue?.length
          ? html`<section class="card" aria-labelledby="overdue-h" data-testid="overdue-actions">
              <h2 id="overdue-h">${t('overdueActions')}</h2>
              <ul>
                ${this.overdue.map(
                  (a) =>
                    html`<li>
                      <span class="state breach"
                        ><span aria-hidden="true">!</span>${t('actionDue')} ${i18n.date(a.due)}</span
                      >
                      ${a.description} — ${a.owner.name} <span class="muted">(${a.source})</span>
                    </li>`,
                )}
              </ul>
            </section>`
          : nothing
      }
      <section aria-labelledby="kpis-h">
        <h2 id="kpis-h">${t('kpis')}</h2>
        <div class="tiles">
          ${k.kpis.map((s) => html`<parity-kpi-tile data-kpi=${s.id} .summary=${s} .agreement=${this.agreement} href="#/kpi/${s.id}"></parity-kpi-tile>`)}
        </div>
      </section>
      ${this.#sideBySide(k)}
      ${
        this.incidents?.length
          ? html`<section>
              <h2>${t('incidents')}</h2>
              <parity-incident-list
                .incidents=${this.incidents.slice(0, 5)}
                .who=${this.who}
                .agreement=${a}
              ></parity-incident-list>
            </section>`
          : nothing
      }
    `;
  }

  /** Every KPI for each partner (and combined) in one table: who is where, at one glance. */
  #sideBySide(k: KpisResult) {
    const partners = this.agreement?.agreement.partners ?? [];
    const perPartner = k.kpis.filter((x) => x.scopes.some((s) => s.group !== null));
    if (!perPartner.length) return nothing;
    const cell = (kpi: KpisResult['kpis'][number], group: string | null) => {
      const s = kpi.scopes.find((x) => x.group === group);
      if (!s) return html`<td class="muted">—</td>`;
      const v = s.lastClosed?.value;
      return html`<td data-scope=${group ?? 'combined'} data-state=${s.state}>
        ${v == null ? (s.lastClosed?.suppressed ? t('withheld') : '—') : formatValue(kpi, v, s.band)}
        <span class="state ${s.state}"
          ><span aria-hidden="true">${stateIcon[s.state]}</span>${t(`state.${s.state}` as 'state.ok')}</span
        >
      </td>`;
    };
    return html`<section class="card" aria-labelledby="side-h" data-testid="side-by-side">
      <h2 id="side-h">${t('sideBySide')}</h2>
      <div class="scroll" tabindex="0">
        <table>
          <thead>
            <tr>
              <th scope="col">${t('kpi')}</th>
              <th scope="col">${t('combined')}</th>
              ${partners.map((p) => html`<th scope="col">${p.name}</th>`)}
            </tr>
          </thead>
          <tbody>
            ${perPartner.map(
              (kpi) =>
                html`<tr>
                  <th scope="row"><a href="#/kpi/${kpi.id}">${titleOf(this.agreement, kpi)}</a></th>
                  ${cell(kpi, null)} ${partners.map((p) => cell(kpi, p.id))}
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
    </section>`;
  }
}

customElements.define('parity-overview', ParityOverview);

declare global {
  interface HTMLElementTagNameMap {
    'parity-overview': ParityOverview;
  }
}
