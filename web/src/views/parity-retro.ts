import { LitElement, html, css, nothing } from 'lit';
import { api, type ActionView, type Agreement, type Retrospective, type Who } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { layout, shared } from '../components/styles.js';
import { dataTable, dataTableStyles } from '../components/data-table.js';
import { refusalOf, submitForm, type Refusal } from '../components/form-refusal.js';
import { addPeriods, localToday } from '../../../services/platform/calendar.js';

const stages = ['proof_of_concept', 'field_test', 'rollout'];

/** The month before this one in the partnership's time zone (YYYY-MM): the retrospective usually written. */
function lastMonth(timezone: string): string {
  return addPeriods(`${localToday(new Date(), timezone).slice(0, 7)}-01`, 'month', -1).slice(0, 7);
}

/**
 * The retrospective of a month or a stage: what strengthened and what weakened trust, written by
 * every partner, and its decisions as actions with owner and due date; below it the tracker of
 * every open action (retrospectives' and incidents'), each marked done by its owner, steering or
 * its partner's admin. Every text is rendered as text.
 */
export class ParityRetro extends LitElement {
  static override properties = {
    who: { attribute: false },
    agreement: { attribute: false },
    period: { type: String },
    retro: { state: true },
    open: { state: true },
    error: { state: true },
    formError: { state: true },
  };
  declare who: Who | undefined;
  declare agreement: Agreement | undefined;
  declare period: string;
  declare retro: Retrospective | undefined;
  declare open: ActionView[] | undefined;
  declare error: string | undefined;
  declare formError: Refusal | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    dataTableStyles,
    css`
      .columns {
        display: grid;
        grid-template-columns: repeat(auto-fit, minmax(16em, 1fr));
        gap: 1em;
      }
      li {
        white-space: pre-wrap;
        overflow-wrap: anywhere;
        margin: 0.3em 0;
      }
      textarea,
      input[type='text'],
      input[type='email'] {
        width: 100%;
        box-sizing: border-box;
      }
      .visually-hidden {
        position: absolute;
        width: 1px;
        height: 1px;
        overflow: hidden;
        clip: rect(0 0 0 0);
        white-space: nowrap;
      }
      .overdue {
        color: #a1120a;
        font-weight: 600;
      }
    `,
  ];

  constructor() {
    super();
    this.period = '';
  }

  override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('period') && !this.period)
      this.period = lastMonth(this.agreement?.agreement.partnership.timezone ?? 'UTC');
  }

  override updated(changed: Map<string, unknown>): void {
    if (changed.has('period') && this.period) void this.#load();
  }

  async #load(): Promise<void> {
    try {
      const [retro, open] = await Promise.all([
        api.get<Retrospective>(`/v1/retrospectives/${encodeURIComponent(this.period)}`),
        api.get<{ actions: ActionView[] }>('/v1/actions?state=open').then((r) => r.actions),
      ]);
      [this.retro, this.open, this.error] = [retro, open, undefined];
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  /** One form's request; a refusal stays on the form (naming its field), success reloads the page's data. */
  async #act(form: string, send: () => Promise<unknown>, done?: () => void): Promise<void> {
    this.formError = await submitForm(form, send, done);
    if (!this.formError) await this.#load();
  }

  #refusal(form: string) {
    return refusalOf(this.formError, form);
  }

  #choose(e: Event): void {
    const v = (e.target as HTMLInputElement | HTMLSelectElement).value;
    if (v) location.hash = `#/retro/${encodeURIComponent(v)}`;
  }

  override render() {
    const path = `/v1/retrospectives/${encodeURIComponent(this.period)}`;
    return html`<h2>${t('retrospective')}</h2>
      <form class="controls" @submit=${(e: Event) => e.preventDefault()}>
        <div>
          <label for="retro-month">${t('month')}</label>
          <input
            id="retro-month"
            type="month"
            .value=${/^\d{4}-\d{2}$/.test(this.period) ? this.period : ''}
            @change=${this.#choose}
          />
        </div>
        <div>
          <label for="retro-stage">${t('retroPeriod')}</label>
          <select id="retro-stage" @change=${this.#choose}>
            <option value="">—</option>
            ${stages.map((s) => html`<option value=${s} ?selected=${this.period === s}>${s.replaceAll('_', ' ')}</option>`)}
          </select>
        </div>
      </form>
      ${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing}
      ${
        this.retro
          ? html`<div class="columns">
                ${(['strengthened', 'weakened'] as const).map(
                  (kind) =>
                    html`<section aria-labelledby=${`h-${kind}`} data-testid=${`retro-${kind}`}>
                      <h3 id=${`h-${kind}`}>${t(kind)}</h3>
                      ${
                        this.retro![kind].length
                          ? html`<ul>
                              ${this.retro![kind].map((i) => html`<li>${i.text} <span class="muted">— ${i.author.name}</span></li>`)}
                            </ul>`
                          : html`<p class="muted">${t('noItems')}</p>`
                      }
                      <form
                        @submit=${(e: Event) => {
                          e.preventDefault();
                          const form = e.target as HTMLFormElement;
                          const text = String(new FormData(form).get('text') ?? '');
                          void this.#act(
                            kind,
                            () => api.post(`${path}/items`, { kind, text }),
                            () => form.reset(),
                          );
                        }}
                      >
                        <label for=${`t-${kind}`} class="visually-hidden">${t(kind)}</label>
                        <textarea id=${`t-${kind}`} name="text" rows="2" maxlength="1000" required></textarea>
                        ${this.#refusal(kind)}
                        <button type="submit">${t('addItem')}</button>
                      </form>
                    </section>`,
                )}
              </div>
              <section data-testid="retro-actions">
                ${this.#actions(t('actions'), this.retro.actions)}
                <form
                  class="controls"
                  data-testid="action-form"
                  @submit=${(e: Event) => {
                    e.preventDefault();
                    const form = e.target as HTMLFormElement;
                    const f = new FormData(form);
                    void this.#act(
                      'action',
                      () =>
                        api.post(`${path}/actions`, {
                          description: String(f.get('description') ?? ''),
                          owner: String(f.get('owner') ?? ''),
                          due: String(f.get('due') ?? ''),
                        }),
                      () => form.reset(),
                    );
                  }}
                >
                  <div style="flex:2 1 16em">
                    <label for="a-desc">${t('description')}</label>
                    <input id="a-desc" name="description" type="text" maxlength="500" required />
                  </div>
                  <div>
                    <label for="a-owner">${t('ownerEmail')}</label>
                    <input id="a-owner" name="owner" type="email" maxlength="254" required />
                  </div>
                  <div>
                    <label for="a-due">${t('due')}</label>
                    <input id="a-due" name="due" type="date" required />
                  </div>
                  <div><button type="submit">${t('addAction')}</button></div>
                </form>
                ${this.#refusal('action')}
              </section>`
          : this.error
            ? nothing
            : html`<p>${t('loading')}</p>`
      }
      ${this.open ? html`<section data-testid="action-tracker">${this.#actions(t('actionTracker'), this.open)}</section>` : nothing}`;
  }

  #actions(caption: string, list: ActionView[]) {
    return html`${this.#refusal(`done:${caption}`)}${dataTable(
      caption,
      [t('description'), t('owner'), t('due'), t('state'), t('source'), ''],
      list.map((a) => [
        a.description,
        a.owner.name,
        html`<span class=${a.overdue ? 'overdue' : ''}
          >${i18n.date(a.due)}${a.overdue ? ` (${t('overdue')})` : ''}</span
        >`,
        a.state === 'done' ? t('doneState') : t('openState'),
        a.source,
        a.state === 'open'
          ? html`<button
              class="secondary"
              @click=${() => this.#act(`done:${caption}`, () => api.post(`/v1/actions/${a.id}/done`, {}))}
            >
              ${t('markDone')}
            </button>`
          : '',
      ]),
      { empty: t('noActions') },
    )}`;
  }
}

customElements.define('parity-retro', ParityRetro);

declare global {
  interface HTMLElementTagNameMap {
    'parity-retro': ParityRetro;
  }
}
