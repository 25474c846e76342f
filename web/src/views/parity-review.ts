import { LitElement, html, css, nothing } from 'lit';
import { api, ApiError, type Review, type ReviewList } from '../api.js';
import { I18nController, i18n, t, type Key } from '../i18n.js';
import { shared } from '../components/styles.js';
import { dataTable, dataTableStyles } from '../components/data-table.js';

const tableOf = (caption: string, head: string[], rows: unknown[][], empty: Key) =>
  dataTable(caption, head, rows, { empty: t(empty) });

/** The month before `today`'s (YYYY-MM). */
function lastClosedMonth(today = new Date()): string {
  const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1));
  return d.toISOString().slice(0, 7);
}

/**
 * The monthly review page: a month picker, each shared KPI against its band with its change,
 * the month's incidents with cause and actions, goals, agreement changes and what improved; the
 * same document every partner gets (its digest shown), downloadable as HTML and text.
 */
export class ParityReview extends LitElement {
  static override properties = {
    month: { type: String },
    review: { state: true },
    error: { state: true },
  };
  declare month: string;
  declare review: Review | undefined;
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

  override updated(changed: Map<string, unknown>): void {
    if (changed.has('month')) void this.#load();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    // Without a month in the address: the newest review kept, else last month (the room says when
    // its review is built if it is not yet).
    if (!this.month)
      void api
        .get<ReviewList>('/v1/reviews')
        // (The address may name a month meanwhile: it wins.)
        .then((r) => (this.month ||= r.reviews[0]?.month ?? lastClosedMonth()))
        .catch(() => (this.month ||= lastClosedMonth()));
  }

  async #load(): Promise<void> {
    if (!this.month) return;
    try {
      this.review = await api.get<Review>(`/v1/reviews/${encodeURIComponent(this.month)}`);
      this.error = undefined;
    } catch (err) {
      this.review = undefined;
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  override render() {
    const r = this.review;
    const n = (v: number | null, unit = '') => (v === null ? '—' : `${i18n.number(v, 4)}${unit ? ` ${unit}` : ''}`);
    const base = `/v1/reviews/${encodeURIComponent(this.month)}`;
    return html`
      <h2>${t('review')}</h2>
      <label for="review-month">${t('month')}</label>
      <input
        id="review-month"
        type="month"
        .value=${this.month}
        @change=${(e: Event) => (this.month = (e.target as HTMLInputElement).value)}
      />
      ${this.error ? html`<p role="alert">${this.error}</p>` : nothing}
      ${
        r
          ? html`
              <p class="muted" data-testid="review-source">
                ${t('snapshot')} ${r.snapshot} · ${t('agreementVersion')} v${r.agreementVersion} · ${t('digest')}
                <code title=${r.digest}>${r.digest.slice(0, 12)}</code> ·
                <a href="${base}?format=html" download="review-${r.month}.html">HTML</a> ·
                <a href="${base}?format=text" download="review-${r.month}.txt">${t('text')}</a> ·
                <a href="${base}?format=pdf" download="review-${r.month}.pdf">PDF</a>
              </p>
              ${tableOf(
                t('reviewKpis'),
                [t('kpi'), t('group'), t('inBand'), t('month'), t('previousMonth'), t('change'), t('deviations')],
                r.kpis.flatMap((k) =>
                  k.scopes.map((s) => [
                    k.title,
                    s.scope === 'combined' ? t('combined') : s.scope,
                    `${s.inBand} / ${s.disclosed}`,
                    n(s.month, k.unit),
                    n(s.previousMonth, k.unit),
                    s.change === null
                      ? '—'
                      : `${s.change > 0 ? '+' : ''}${n(s.change)}${s.improved === true ? ' ▲' : s.improved === false ? ' ▼' : ''}`,
                    s.deviations.map((d) => `${i18n.date(d.period)}: ${n(d.value, k.unit)}`).join('; ') || '—',
                  ]),
                ),
                'nothingYet',
              )}
              ${tableOf(
                t('incidents'),
                [t('kpi'), t('group'), t('period'), t('value'), t('state'), t('cause'), t('actions')],
                r.breaches.map((b) => [
                  b.kpi,
                  b.scope,
                  b.period ? i18n.date(b.period) : '—',
                  n(b.value),
                  t(`incident.${b.state}` as Key),
                  b.cause ? `${b.cause}${b.narrative ? `: ${b.narrative}` : ''}` : '—',
                  b.actions.map((a) => `${a.description} (${a.owner}, ${i18n.date(a.due)})`).join('; ') || '—',
                ]),
                'nothingYet',
              )}
              ${tableOf(
                t('goals'),
                [t('goal'), t('kpi'), t('state'), t('progress')],
                r.goals.map((g) => [
                  g.title,
                  g.kpiTitle,
                  t(`goal.${g.state}` as Key),
                  g.progress === null ? '—' : `${Math.round(g.progress * 100)} %`,
                ]),
                'noGoals',
              )}
              ${
                r.serviceLevels
                  ? html`
                      ${tableOf(
                        t('serviceLevels'),
                        [
                          t('partnerColumn'),
                          t('feedsOnTime'),
                          t('incidents'),
                          t('acknowledgedInTime'),
                          t('resolvedInTime'),
                        ],
                        r.serviceLevels.partners
                          .filter((p) => p.feeds.periods > 0 || p.incidents.some((i) => i.opened > 0))
                          .map((p) => {
                            const f = p.feeds;
                            const per = (pick: (i: (typeof p.incidents)[number]) => string) =>
                              p.incidents
                                .filter((i) => i.opened > 0)
                                .map((i) => `${i.severity}: ${pick(i)}`)
                                .join('; ') || '—';
                            const pct = (v: number | null) => (v === null ? '—' : `${i18n.number(v * 100, 3)} %`);
                            return [
                              p.partner === 'combined' ? t('combined') : p.partner,
                              p.partner === 'combined'
                                ? '—'
                                : `${f.onTime} / ${f.periods} (${pct(f.share)})${f.target !== null ? ` · ${t('target')} ${pct(f.target)}` : ''}${f.excused ? ` · ${f.excused} ${t('excused')}` : ''}`,
                              per((i) => String(i.opened)),
                              per((i) =>
                                i.level
                                  ? `${i.acknowledgedInTime} / ${i.opened} (${i.level.acknowledge})`
                                  : t('noLevel'),
                              ),
                              per((i) =>
                                i.level ? `${i.resolvedInTime} / ${i.opened} (${i.level.resolve})` : t('noLevel'),
                              ),
                            ];
                          }),
                        'nothingYet',
                      )}
                      ${tableOf(
                        t('maintenanceWindows'),
                        [t('from'), t('to'), t('partners'), t('reason'), t('feedsBack')],
                        r.serviceLevels.maintenanceWindows.map((w) => [
                          i18n.date(w.from),
                          i18n.date(w.to),
                          w.partners.join(', '),
                          w.reason,
                          w.honoured === null ? t('notYetKnown') : w.honoured ? t('yes') : t('no'),
                        ]),
                        'nothingYet',
                      )}
                    `
                  : nothing
              }
              ${tableOf(
                t('agreementChanges'),
                [t('agreementVersion'), t('asOf'), t('changes')],
                r.agreementChanges.map((c) => [`v${c.version}`, i18n.date(c.activatedAt), c.changes.join('; ')]),
                'nothingYet',
              )}
              <h3>${t('improved')}</h3>
              ${
                r.improvements.length
                  ? html`<ul>
                      ${r.improvements.map((i) => html`<li>${i}</li>`)}
                    </ul>`
                  : html`<p class="muted">${t('nothingYet')}</p>`
              }
            `
          : nothing
      }
    `;
  }
}

customElements.define('parity-review', ParityReview);

declare global {
  interface HTMLElementTagNameMap {
    'parity-review': ParityReview;
  }
}
