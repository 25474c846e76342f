import { LitElement, html, css, nothing } from 'lit';
import { api, type Agreement, type Committee, type DecisionView, type DrillSheet, type Who } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { layout, shared } from '../components/styles.js';
import { dataTable, dataTableStyles } from '../components/data-table.js';
import { refusalOf, submitForm, type Refusal } from '../components/form-refusal.js';
import { localToday } from '../../../services/platform/calendar.js';

const secs = (s: number | null) =>
  s === null ? '—' : s < 120 ? `${Math.round(s)} s` : `${i18n.number(s / 60, 1)} min`;

/**
 * The steering committee's page: its members and the chair of today (rotating), the escalation
 * drills with their results (a steering member starts one; the owner acknowledges), and the
 * decision log — append-only, a superseded record marked and linked to its successor; a member
 * records a new one here. Every text is rendered as text.
 */
export class ParitySteering extends LitElement {
  static override properties = {
    who: { attribute: false },
    agreement: { attribute: false },
    committee: { state: true },
    drills: { state: true },
    decisions: { state: true },
    error: { state: true },
    formError: { state: true },
  };
  declare who: Who | undefined;
  declare agreement: Agreement | undefined;
  declare committee: Committee | undefined;
  declare drills: DrillSheet[] | undefined;
  declare decisions: DecisionView[] | undefined;
  declare error: string | undefined;
  /** The last refusal of a form, with the field it names. */
  declare formError: Refusal | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    dataTableStyles,
    css`
      .drill {
        display: inline-block;
        font-weight: 700;
        color: #fff;
        background: #a1120a;
        border-radius: 3px;
        padding: 0 0.35em;
        font-size: 0.85em;
      }
      article {
        border-top: 1px solid #d8dee4;
        padding: 0.6em 0;
        /* A word longer than the screen is wide (an id, a pasted link) breaks rather than widen the page. */
        overflow-wrap: anywhere;
      }
      article.superseded {
        color: #57606a;
      }
      article h4 {
        margin: 0 0 0.3em;
      }
      dl {
        display: grid;
        grid-template-columns: minmax(7em, max-content) 1fr;
        gap: 0.2em 0.8em;
        margin: 0.3em 0;
      }
      dt {
        font-weight: 600;
      }
      dd {
        margin: 0;
        white-space: pre-wrap;
        overflow-wrap: anywhere;
      }
      form.stack {
        display: grid;
        gap: 0.4em;
        max-width: 40em;
      }
      form.stack textarea,
      form.stack input[type='text'] {
        width: 100%;
        box-sizing: border-box;
      }
      fieldset {
        border: 1px solid #d8dee4;
      }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    void this.#load();
  }

  async #load(): Promise<void> {
    try {
      [this.committee, this.drills, this.decisions] = await Promise.all([
        api.get<Committee>('/v1/steering'),
        api.get<{ drills: DrillSheet[] }>('/v1/drills').then((r) => r.drills),
        api.get<{ decisions: DecisionView[] }>('/v1/decisions').then((r) => r.decisions),
      ]);
      this.error = undefined;
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  /** Sends a form's request; a refusal stays on the form (naming its field), success reloads the page's data. */
  /** One form's request; a refusal stays on the form (naming its field), success reloads the page's data. */
  async #act(form: string, send: () => Promise<unknown>, done?: () => void): Promise<void> {
    this.formError = await submitForm(form, send, done);
    if (!this.formError) await this.#load();
  }

  #refusal(form: string) {
    return refusalOf(this.formError, form);
  }

  override render() {
    if (this.error)
      return html`<h2>${t('steering')}</h2>
        <p role="alert" style="color:#a1120a">${this.error}</p>`;
    if (!this.committee || !this.drills || !this.decisions) return html`<p>${t('loading')}</p>`;
    return html`<h2>${t('steering')}</h2>
      ${this.#committee(this.committee)} ${this.#drills(this.drills)} ${this.#decisions(this.decisions)}`;
  }

  #committee(c: Committee) {
    return html`<section aria-labelledby="committee">
      <h3 id="committee">${t('committee')}</h3>
      <p data-testid="chair">
        ${t('chair')}: <strong>${c.chair.name}</strong> &lt;${c.chair.email}&gt;${
          c.chair.since
            ? html` — ${t('termSince')} ${i18n.date(c.chair.since)}, ${t('nextChair')}: ${c.chair.next?.name ?? '—'}
              ${t('termFrom')} ${i18n.date(c.chair.until)}`
            : nothing
        }
      </p>
      <ul>
        ${c.members.map((m) => html`<li>${m.name} &lt;${m.email}&gt;${m.chair ? html` — <em>${t('chair')}</em>` : nothing}</li>`)}
      </ul>
      ${c.rotation ? html`<p class="muted">${t('rotation')}: ${c.rotation.every}, ${t('termFrom')} ${i18n.date(c.rotation.from)}</p>` : nothing}
    </section>`;
  }

  #drills(drills: DrillSheet[]) {
    const steering = this.who?.role === 'steering';
    const kpis = this.agreement?.agreement.kpis ?? [];
    const partners = this.agreement?.agreement.partners ?? [];
    const name = (id: string) => partners.find((p) => p.id === id)?.name ?? (id === 'combined' ? t('combined') : id);
    const rows = drills.map((d) => [
      html`<span class="drill">DRILL</span> ${d.kpi.title}`,
      name(d.scope),
      t(`drill.${d.state}` as 'drill.running'),
      i18n.date(d.startedAt),
      secs(d.result.notifySeconds),
      secs(d.result.acknowledgeSeconds),
      d.escalatedAt
        ? html`${secs(d.result.escalateSeconds)}${d.chair ? html` (${t('chair')} ${d.chair.name})` : nothing}`
        : '—',
      d.state === 'running' || d.state === 'escalated'
        ? this.#ownsDrill(d)
          ? html`<button
              class="secondary"
              @click=${() => this.#act('drills', () => api.post(`/v1/drills/${d.id}/ack`, {}))}
            >
              ${t('acknowledge')}
            </button>`
          : steering
            ? html`<button
                class="secondary"
                @click=${() => this.#act('drills', () => api.post(`/v1/drills/${d.id}/end`, {}))}
              >
                ${t('endDrill')}
              </button>`
            : ''
        : '',
    ]);
    return html`<section aria-labelledby="drills-h" data-testid="drills">
      <h3 id="drills-h">${t('drills')}</h3>
      <p class="muted">${t('drillHelp')}</p>
      ${this.#refusal('drills')}
      ${dataTable(
        t('drillResults'),
        [t('kpi'), t('group'), t('state'), t('started'), t('toNotify'), t('toAcknowledge'), t('toEscalate'), ''],
        rows,
        { empty: t('noDrills'), numeric: [4, 5] },
      )}
      ${
        steering
          ? html`<form
              class="controls"
              data-testid="drill-form"
              @submit=${(e: Event) => {
                e.preventDefault();
                const f = new FormData(e.target as HTMLFormElement);
                void this.#act('drills', () =>
                  api.post('/v1/drills', { kpi: f.get('kpi'), scope: f.get('scope'), ackWithin: f.get('ackWithin') }),
                );
              }}
            >
              <div>
                <label for="drill-kpi">${t('kpi')}</label>
                <select id="drill-kpi" name="kpi">
                  ${kpis.map((k) => html`<option value=${k.id}>${k.title}</option>`)}
                </select>
              </div>
              <div>
                <label for="drill-scope">${t('group')}</label>
                <select id="drill-scope" name="scope">
                  <option value="combined">${t('combined')}</option>
                  ${partners.map((p) => html`<option value=${p.id}>${p.name}</option>`)}
                </select>
              </div>
              <div>
                <label for="drill-ack">${t('ackWithin')}</label>
                <select id="drill-ack" name="ackWithin">
                  ${['PT5M', 'PT15M', 'PT30M', 'PT1H', 'PT4H'].map((d) => html`<option value=${d} ?selected=${d === 'PT15M'}>${d.slice(2).toLowerCase()}</option>`)}
                </select>
              </div>
              <div><button type="submit">${t('startDrill')}</button></div>
            </form>`
          : nothing
      }
    </section>`;
  }

  /** The signed-in owner answers for this drill's scope (as for an incident): theirs to acknowledge. */
  #ownsDrill(d: DrillSheet): boolean {
    const w = this.who;
    const kpi = this.agreement?.agreement.kpis.find((k) => k.id === d.kpi.id);
    if (!w || w.role !== 'owner' || !w.partner || !kpi) return false;
    const owner = kpi.owners[w.partner];
    return (
      owner !== undefined &&
      owner.email.toLowerCase() === w.name.toLowerCase() &&
      (d.scope === 'combined' || d.scope === w.partner)
    );
  }

  #decisions(decisions: DecisionView[]) {
    const number = new Map(decisions.map((d) => [d.id, d.number]));
    const ref = (id: string) => (number.has(id) ? `D-${number.get(id)}` : id);
    return html`<section aria-labelledby="decisions-h" data-testid="decisions">
      <h3 id="decisions-h">${t('decisionLog')}</h3>
      <p class="muted">${t('decisionHelp')}</p>
      ${decisions.length === 0 ? html`<p class="muted">${t('noDecisions')}</p>` : nothing}
      ${decisions.map(
        (d) =>
          html`<article class=${d.supersededBy ? 'superseded' : ''} id=${d.id} data-testid="decision">
            <h4>
              D-${d.number}:
              ${d.title}${d.supersededBy ? html` — <em>${t('supersededBy')} ${ref(d.supersededBy)}</em>` : nothing}
            </h4>
            <dl>
              <dt>${t('decidedOn')}</dt>
              <dd>${i18n.date(d.date)} — ${d.decisionMakers.map((m) => m.name).join(', ')}</dd>
              <dt>${t('context')}</dt>
              <dd>${d.context}</dd>
              <dt>${t('options')}</dt>
              <dd>${d.options.map((o, i) => html`${i ? html`<br />` : nothing}${i + 1}. ${o}`)}</dd>
              <dt>${t('decision')}</dt>
              <dd>${d.decision}</dd>
              <dt>${t('consequences')}</dt>
              <dd>${d.consequences}</dd>
              ${
                d.supersedes
                  ? html`<dt>${t('supersedes')}</dt>
                      <dd>
                        <a href="#/steering" @click=${(e: Event) => this.#jump(e, d.supersedes!)}
                          >${ref(d.supersedes)}</a
                        >
                      </dd>`
                  : nothing
              }
              ${
                d.incidents.length
                  ? html`<dt>${t('incidents')}</dt>
                      <dd>${d.incidents.join(', ')}</dd>`
                  : nothing
              }
              ${
                d.agreementVersions.length
                  ? html`<dt>${t('agreementVersion')}</dt>
                      <dd>${d.agreementVersions.map((v) => `v${v}`).join(', ')}</dd>`
                  : nothing
              }
            </dl>
          </article>`,
      )}
      ${this.who?.role === 'steering' ? this.#decisionForm(decisions) : nothing}
    </section>`;
  }

  #jump(e: Event, id: string): void {
    e.preventDefault();
    this.renderRoot.querySelector(`#${CSS.escape(id)}`)?.scrollIntoView();
  }

  #decisionForm(decisions: DecisionView[]) {
    const members = this.committee?.members ?? [];
    // Today in the partnership's time zone: the room refuses a decision dated after it.
    const today = localToday(new Date(), this.agreement?.agreement.partnership.timezone ?? 'UTC');
    return html`<form
      class="stack"
      data-testid="decision-form"
      @submit=${(e: Event) => {
        e.preventDefault();
        const form = e.target as HTMLFormElement;
        const f = new FormData(form);
        const text = (k: string) => String(f.get(k) ?? '');
        void this.#act(
          'decision',
          () =>
            api.post('/v1/decisions', {
              title: text('title'),
              context: text('context'),
              options: text('options')
                .split('\n')
                .map((s) => s.trim())
                .filter(Boolean),
              decision: text('decision'),
              decisionMakers: f.getAll('makers').map(String),
              date: text('date'),
              consequences: text('consequences'),
              ...(text('supersedes') ? { supersedes: text('supersedes') } : {}),
            }),
          () => form.reset(),
        );
      }}
    >
      <h3>${t('recordDecision')}</h3>
      <label for="d-title">${t('titleField')}</label
      ><input id="d-title" name="title" type="text" maxlength="200" required />
      <label for="d-context">${t('context')}</label
      ><textarea id="d-context" name="context" rows="3" maxlength="4000" required></textarea>
      <label for="d-options">${t('optionsOnePerLine')}</label
      ><textarea id="d-options" name="options" rows="3" required></textarea>
      <label for="d-decision">${t('decision')}</label
      ><textarea id="d-decision" name="decision" rows="2" maxlength="4000" required></textarea>
      <label for="d-consequences">${t('consequences')}</label
      ><textarea id="d-consequences" name="consequences" rows="2" maxlength="4000" required></textarea>
      <fieldset>
        <legend>${t('decisionMakers')}</legend>
        ${members.map((m) => html`<label style="font-weight:400"><input type="checkbox" name="makers" value=${m.email} ?checked=${m.email === this.who?.name} /> ${m.name}</label>`)}
      </fieldset>
      <label for="d-date">${t('decidedOn')}</label><input id="d-date" name="date" type="date" value=${today} required />
      <label for="d-supersedes">${t('supersedes')}</label>
      <select id="d-supersedes" name="supersedes">
        <option value="">—</option>
        ${decisions.filter((d) => !d.supersededBy).map((d) => html`<option value=${d.id}>D-${d.number}: ${d.title}</option>`)}
      </select>
      ${this.#refusal('decision')}
      <div><button type="submit">${t('recordDecision')}</button></div>
    </form>`;
  }
}

customElements.define('parity-steering', ParitySteering);

declare global {
  interface HTMLElementTagNameMap {
    'parity-steering': ParitySteering;
  }
}
