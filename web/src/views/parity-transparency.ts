import { LitElement, html, css, nothing } from 'lit';
import { api, ApiError, type TransparencyReport as Report } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { shared } from '../components/styles.js';
import { dataTable, dataTableStyles } from '../components/data-table.js';

/** A report table; the metadata report has nothing to list yet where it is empty. */
const tableOf = (caption: string, head: string[], rows: unknown[][], numeric: number[] = []) =>
  dataTable(caption, head, rows, { empty: t('nothingYet'), numeric });

/** The metadata report page: a month picker, five tables, JSON and CSV downloads of the same report. */
export class ParityTransparency extends LitElement {
  static override properties = { month: { state: true }, report: { state: true }, error: { state: true } };
  declare month: string;
  declare report: Report | undefined;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    dataTableStyles,
    css`
      section {
        margin: 1em 0;
      }
    `,
  ];

  constructor() {
    super();
    this.month = '';
  }

  override connectedCallback(): void {
    super.connectedCallback();
    void this.#load();
  }

  async #load(): Promise<void> {
    try {
      this.report = await api.get<Report>(
        `/v1/transparency${this.month ? `?month=${encodeURIComponent(this.month)}` : ''}`,
      );
      this.month = this.report.month;
      this.error = undefined;
    } catch (err) {
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  override render() {
    const r = this.report;
    const q = `month=${encodeURIComponent(this.month)}`;
    return html`<section aria-labelledby="transparency-h">
      <h2 id="transparency-h">${t('transparency')}</h2>
      <p class="muted">${t('transparencyIntro')}</p>
      <form
        @submit=${(e: Event) => {
          e.preventDefault();
          void this.#load();
        }}
        style="display:flex;gap:0.6em;align-items:end;flex-wrap:wrap"
      >
        <div>
          <label for="month">${t('reportMonth')}</label
          ><input
            id="month"
            type="month"
            .value=${this.month}
            @change=${(e: Event) => (this.month = (e.target as HTMLInputElement).value)}
          />
        </div>
        <button type="submit">${t('showReport')}</button>
        ${
          r
            ? html`<a class="button secondary" href="/v1/transparency?${q}&format=csv" download>${t('downloadCsv')}</a>
                <a
                  class="button secondary"
                  href="/v1/transparency?${q}"
                  download="parity-transparency-${this.month}.json"
                  >${t('downloadJson')}</a
                >`
            : nothing
        }
      </form>
      ${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing}
      ${
        r
          ? html` ${tableOf(
              t('partners'),
              [t('partnerColumn'), t('batches'), t('pointsAccepted'), t('pointsRejected'), t('lastArrival')],
              r.partners.map((p) => [
                p.partner,
                p.batches,
                p.pointsAccepted === null ? '–' : i18n.number(p.pointsAccepted, 0),
                p.pointsRejected === null ? '–' : i18n.number(p.pointsRejected, 0),
                i18n.date(p.lastArrival),
              ]),
              [1, 2, 3],
            )}
            ${tableOf(
              t('feeds'),
              [t('partnerColumn'), 'KPI', t('batches'), t('points'), t('lastArrival'), t('dueBy'), t('state')],
              r.feeds.map((f) => [
                f.partner,
                f.kpi,
                f.batches,
                f.points === null ? '—' : i18n.number(f.points, 0),
                i18n.date(f.lastArrival),
                i18n.date(f.dueBy),
                f.stale ? t('stale') : t('fresh'),
              ]),
              [2, 3],
            )}
            ${tableOf(
              t('reads'),
              ['KPI', t('partnerColumn'), t('role'), t('requests'), t('cellsServed'), t('cellsSuppressed')],
              r.queries.map((x) => [
                x.kpi,
                x.partner ?? 'public',
                x.role,
                x.requests,
                x.cellsServed,
                x.cellsSuppressed,
              ]),
              [3, 4, 5],
            )}
            ${tableOf(
              t('incidents'),
              ['KPI', t('group'), t('openedCount'), t('resolvedCount')],
              r.incidents.map((x) => [x.kpi, x.scope, x.opened, x.resolved]),
              [2, 3],
            )}
            ${tableOf(
              t('notifications'),
              [t('channel'), t('partnerColumn'), t('state'), t('count'), t('when')],
              r.notifications.map((n) => [n.channel, n.partner, n.state, n.count, i18n.date(n.lastAt)]),
              [3],
            )}
            ${tableOf(
              t('agreementChanges'),
              [t('when'), t('action'), t('partnerColumn'), 'ID'],
              r.agreementChanges.map((c) => [
                i18n.date(c.at),
                c.action,
                c.partner,
                c.proposal ?? (c.version ? `v${c.version}` : null),
              ]),
            )}`
          : nothing
      }
    </section>`;
  }
}

customElements.define('parity-transparency', ParityTransparency);

declare global {
  interface HTMLElementTagNameMap {
    'parity-transparency': ParityTransparency;
  }
}
