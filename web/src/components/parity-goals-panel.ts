import { css, html, nothing } from 'lit';
import type { Agreement, ConditionResult, GoalProgress, GoalsResponse } from '../api.js';
import { formatValue, kpiDef, partnerName, unitOf } from '../format.js';
import { I18nController, i18n, t, type Key } from '../i18n.js';
import { LightElement } from '../light-element.js';
import { layout, shared } from './styles.js';
import { toggleThread } from './thread-toggle.js';

/** A goal's or milestone's state as colour, icon and text (never colour alone). */
const goalState: Record<string, { css: string; icon: string }> = {
  met: { css: 'ok', icon: '✓' },
  on_track: { css: 'ok', icon: '→' },
  at_risk: { css: 'pending', icon: '!' },
  missed: { css: 'breach', icon: '✕' },
  no_data: { css: 'no_data', icon: '?' },
};

const badge = (state: string) => {
  const s = goalState[state] ?? goalState['no_data']!;
  return html`<span class="state ${s.css}" data-state=${state}
    ><span aria-hidden="true">${s.icon}</span>${t(`goal.${state}` as Key)}</span
  >`;
};

/**
 * The partnership's intent, its stage and the criteria to enter the next one, and each goal with
 * a progress bar, its next milestone, its state, assumptions and exit criteria: GET /v1/goals as
 * served (every figure a disclosed value; a criterion the reader may not read shows no verdict).
 */
export class ParityGoalsPanel extends LightElement {
  static override properties = { goals: { attribute: false }, agreement: { attribute: false } };
  declare goals: GoalsResponse | undefined;
  /** For the KPIs' measures and words in the reader's language (a rate reads as a percentage). */
  declare agreement: Agreement | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    css`
      parity-goals-panel {
        display: block;
      }
      parity-goals-panel .goal-list {
        display: grid;
        grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
        gap: 0.8em;
        list-style: none;
        padding: 0;
        margin: 0;
      }
      parity-goals-panel .bar {
        height: 0.7em;
        border-radius: 0.35em;
        background: #eceff3;
        border: 1px solid #8c959f;
        overflow: hidden;
      }
      parity-goals-panel .bar > span {
        display: block;
        height: 100%;
        background: #5a32a3;
      }
      parity-goals-panel h3 {
        font-size: 1em;
        margin: 0 0 0.3em;
      }
      parity-goals-panel ul.criteria {
        padding-left: 1.1em;
        margin: 0.3em 0;
      }
      parity-goals-panel details {
        margin-top: 0.4em;
      }
    `,
  ];

  #criterion(c: ConditionResult) {
    const verdict = c.met
      ? html`<span class="state ok"><span aria-hidden="true">✓</span>${t('criterionMet')}</span>`
      : html`<span class="state no_data"><span aria-hidden="true">✕</span>${t('criterionNotMet')}</span>`;
    return html`<li data-kpi=${c.kpi}>${c.text} — ${verdict}</li>`;
  }

  #goal(g: GoalProgress) {
    const pct = g.progress === null ? null : Math.round(g.progress * 100);
    const next = g.nextMilestone;
    const scope = partnerName(this.agreement, g.scope);
    const def = kpiDef(this.agreement, g.kpi);
    // A figure of the goal's KPI as its tile writes it: a rate as a percentage, else with its unit.
    const fig = (v: number | null) =>
      def
        ? `${formatValue(def, v)} ${unitOf(this.agreement, { ...def, title: def.title })}`.trim()
        : `${i18n.number(v, 4)} ${g.unit}`;
    return html`<li class="card" data-goal=${g.id}>
      <h3>${g.title}</h3>
      <p class="muted">
        <a href="#/kpi/${g.kpi}">${g.kpiTitle}</a> (${scope}) · ${t(`direction.${g.direction}` as Key)} ${fig(g.target)}
        · ${t('due')} ${i18n.date(g.due)}
      </p>
      <p>${badge(g.state)}</p>
      <div
        class="bar"
        role="progressbar"
        aria-label="${t('progress')}: ${g.title}"
        aria-valuemin="0"
        aria-valuemax="100"
        aria-valuenow=${pct ?? nothing}
        aria-valuetext=${pct === null ? t('goal.no_data') : `${pct} %`}
      >
        <span style="width:${pct ?? 0}%"></span>
      </div>
      <p class="muted">${t('progress')}: ${pct === null ? '—' : `${pct} %`} (${fig(g.baseline)} → ${fig(g.current)})</p>
      ${
        next
          ? html`<p data-testid="next-milestone">
              ${t('nextMilestone')}: ${i18n.date(next.date)} — ${t('target')} ${fig(next.target)} ${badge(next.state)}
            </p>`
          : nothing
      }
      ${
        g.assumptions.length
          ? html`<details>
              <summary>${t('assumptions')}</summary>
              <ul>
                ${g.assumptions.map((a) => html`<li>${a}</li>`)}
              </ul>
            </details>`
          : nothing
      }
      ${
        g.exitCriteria.length
          ? html`<details>
              <summary>${t('exitCriteria')}</summary>
              <ul class="criteria">
                ${g.exitCriteria.map((c) => this.#criterion(c))}
              </ul>
            </details>`
          : nothing
      }
      <details data-testid="goal-discussion" @toggle=${(e: Event) => toggleThread(e, 'goal', g.id)}>
        <summary>${t('discussion')}</summary>
      </details>
    </li>`;
  }

  override render() {
    const g = this.goals;
    if (!g) return nothing;
    const stage = g.stage;
    return html`
      ${
        g.intent || stage
          ? html`<section class="card" aria-labelledby="intent-h" data-testid="intent">
              <h2 id="intent-h">${t('intent')}</h2>
              ${g.intent ? html`<p>${g.intent}</p>` : nothing}
              ${
                stage
                  ? html`<p data-testid="stage">
                        ${t('stage')}: <strong>${t(`stage.${stage.current}` as Key)}</strong>
                        ${
                          stage.next
                            ? html`· ${t('nextStage').replace('{stage}', t(`stage.${stage.next}` as Key))}:
                              ${stage.ready === null ? nothing : stage.ready ? t('readyForNext') : t('notReadyForNext')}`
                            : nothing
                        }
                      </p>
                      ${
                        stage.criteria.length
                          ? html`<ul class="criteria">
                              ${stage.criteria.map((c) => this.#criterion(c))}
                            </ul>`
                          : nothing
                      }`
                  : nothing
              }
            </section>`
          : nothing
      }
      <section aria-labelledby="goals-h" data-testid="goals">
        <h2 id="goals-h">${t('goals')}</h2>
        ${
          g.goals.length
            ? html`<ul class="goal-list">
                ${g.goals.map((x) => this.#goal(x))}
              </ul>`
            : html`<p class="muted">${t('noGoals')}</p>`
        }
      </section>
    `;
  }
}

customElements.define('parity-goals-panel', ParityGoalsPanel);

declare global {
  interface HTMLElementTagNameMap {
    'parity-goals-panel': ParityGoalsPanel;
  }
}
