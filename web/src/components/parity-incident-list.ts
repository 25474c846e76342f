import { html, css, nothing } from 'lit';
import { api, type Agreement, type FactSheet, type Who } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { LightElement } from '../light-element.js';
import { layout, shared } from './styles.js';
import { toggleThread } from './thread-toggle.js';
import { bandText, formatValue, partnerName, periodLabel, titleOf, unitOf } from '../format.js';
import { shiftDays } from '../../../services/platform/calendar.js';

const causes = ['data_quality', 'process', 'capacity', 'staffing', 'system_outage', 'external', 'other'];

/** Incidents with their fact sheets and, for a user who may act, acknowledge and resolve; fires `parity-incidents-changed` after either. */
export class ParityIncidentList extends LightElement {
  static override properties = {
    incidents: { attribute: false },
    who: { attribute: false },
    agreement: { attribute: false },
    error: { state: true },
  };
  declare incidents: FactSheet[] | undefined;
  /** Who is reading and the agreement: together they say who may act on an incident. */
  declare who: Who | null | undefined;
  declare agreement: Agreement | undefined;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    css`
      parity-incident-list {
        display: block;
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
    `,
  ];

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

  override render() {
    const list = this.incidents ?? [];
    if (!list.length) return html`<p class="muted">${t('noIncidents')}</p>`;
    return list.map(
      (i) =>
        html`<article
          class="incident"
          data-incident=${i.id}
          aria-label="${titleOf(this.agreement, i.kpi)} ${partnerName(this.agreement, i.scope)}"
        >
          <div>
            <strong>${titleOf(this.agreement, i.kpi)}</strong> · ${partnerName(this.agreement, i.scope)} ·
            <span class="state ${i.state === 'resolved' ? 'ok' : 'breach'}"
              >${t(`incident.${i.state}` as 'incident.open')}</span
            >
            ${i.escalatedAt ? html` · <strong>${t('escalated')}</strong> ${i18n.date(i.escalatedAt)}` : nothing}
          </div>
          <div class="muted">
            ${i.reason}${i.period ? ` · ${periodLabel(i.period, i.grain ?? 'day')}` : ''} · ${t('value')}
            ${i.suppressed ? t('withheld') : formatValue(i.kpi, i.value, i.band)}
            ${i.kpi.measure === 'rate' ? '' : unitOf(this.agreement, { ...i.kpi })} · ${t('owner')}:
            ${i.owners.map((o) => o.name).join(', ')} · ${t('ackDue')} ${i18n.date(i.ackDueAt)}
          </div>
          ${i.narrative ? html`<div>${t('factSheet')}: ${i.cause ? html`<strong>${i.cause}</strong> — ` : nothing}${i.narrative}</div>` : nothing}
          <details>
            <summary>${t('factSheet')}</summary>
            <dl class="sheet">
              <dt>${t('openedAt')}</dt>
              <dd>
                ${i18n.date(i.openedAt)}${i.notifiedAt ? html` · ${t('incident.notified')} ${i18n.date(i.notifiedAt)}` : nothing}
              </dd>
              ${
                i.period
                  ? html`<dt>${t('period')}</dt>
                      <dd>
                        ${periodLabel(i.period, i.grain ?? 'day')}${i.firstPeriod && i.firstPeriod !== i.period ? ` (${t('outOfBandSince')} ${periodLabel(i.firstPeriod, i.grain ?? 'day')})` : ''}
                        ·
                        <a href=${chartAt(i)}>${t('openChart')}</a>
                      </dd>`
                  : nothing
              }
              <dt>${t('freshness')}</dt>
              <dd>
                ${i.freshness.map((f) => `${partnerName(this.agreement, f.partner)}: ${f.lastArrival ? i18n.date(f.lastArrival) : t('noBatch')}${f.stale ? ` (${t('stale')})` : ''}`).join(' · ') || '—'}
              </dd>
              <dt>${t('snapshot')}</dt>
              <dd>
                ${i.snapshot}${i.digest ? html` · ${t('digest')} <code title=${i.digest}>${i.digest.slice(0, 12)}</code>` : nothing}
              </dd>
              <dt>${t('band')}</dt>
              <dd>${i.band ? bandText(i.kpi, i.band) : '—'}</dd>
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
          <details @toggle=${(e: Event) => toggleThread(e, 'incident', i.id)}>
            <summary>${t('discussion')}</summary>
          </details>
        </article>`,
    );
  }

  /** An acknowledgement or a resolution; when it is through, the page's data is read again. */
  async #act(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
      this.error = undefined;
      this.dispatchEvent(new CustomEvent('parity-incidents-changed', { bubbles: true, composed: true }));
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
  }

  #actions(i: FactSheet) {
    return html` ${i.state !== 'acknowledged' ? html`<button @click=${() => this.#act(() => api.post(`/v1/incidents/${i.id}/ack`, {}))}>${t('acknowledge')}</button>` : nothing}
      <details class="resolve-form">
        <summary>${t('resolve')}</summary>
        <form
          class="resolve"
          @submit=${(e: Event) => {
            e.preventDefault();
            const f = new FormData(e.target as HTMLFormElement);
            const action = String(f.get('action') ?? '').trim();
            void this.#act(() =>
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

/** The KPI's page at an incident's period: its grain, its scope broken down, eight weeks either side. */
function chartAt(i: FactSheet): string {
  const q = new URLSearchParams({ by: i.scope === 'combined' ? 'none' : 'partner' });
  if (i.grain) q.set('grain', i.grain);
  if (i.period) {
    q.set('from', shiftDays(i.period, -56));
    q.set('to', shiftDays(i.period, 56));
  }
  return `#/kpi/${encodeURIComponent(i.kpi.id)}?${q}`;
}

customElements.define('parity-incident-list', ParityIncidentList);

declare global {
  interface HTMLElementTagNameMap {
    'parity-incident-list': ParityIncidentList;
  }
}
