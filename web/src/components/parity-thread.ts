import { css, html, nothing } from 'lit';
import { api, ApiError, type Comment } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { LightElement } from '../light-element.js';
import { layout, shared } from './styles.js';

/**
 * The comment thread on an incident, annotation, goal or proposal (GET/POST /v1/threads/{kind}/{id}),
 * loaded when first shown: each comment as text (never markup), and a box to add one;
 * `@name@example.org` mentions a person of the partnership, who is notified.
 */
export class ParityThread extends LightElement {
  static override properties = {
    kind: { type: String },
    target: { type: String },
    comments: { state: true },
    error: { state: true },
  };
  declare kind: string;
  /** The id of the thing the thread is on. */
  declare target: string;
  declare comments: Comment[] | undefined;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    layout,
    css`
      parity-thread {
        display: block;
      }
      parity-thread .comment-text {
        white-space: pre-wrap;
      }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    void this.#load();
  }

  async #load(): Promise<void> {
    try {
      const r = await api.get<{ comments: Comment[] }>(
        `/v1/threads/${encodeURIComponent(this.kind)}/${encodeURIComponent(this.target)}`,
      );
      this.comments = r.comments;
      this.error = undefined;
    } catch (err) {
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  async #post(e: Event): Promise<void> {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const text = String(new FormData(form).get('text') ?? '');
    try {
      await api.post(`/v1/threads/${encodeURIComponent(this.kind)}/${encodeURIComponent(this.target)}`, { text });
      form.reset();
      await this.#load();
    } catch (err) {
      this.error = err instanceof ApiError ? `${err.message}${err.field ? ` (${err.field})` : ''}` : String(err);
    }
  }

  override render() {
    const id = `thread-${this.kind}-${this.target}`;
    return html`
      ${this.comments === undefined && !this.error ? html`<p class="muted">${t('loading')}</p>` : nothing}
      ${
        this.comments?.length
          ? html`<ol data-testid="comments">
              ${this.comments.map(
                (c) =>
                  html`<li>
                    <span class="muted">${c.author.name} · ${i18n.date(c.createdAt)}</span>
                    <div class="comment-text">${c.text}</div>
                  </li>`,
              )}
            </ol>`
          : this.comments
            ? html`<p class="muted">${t('noComments')}</p>`
            : nothing
      }
      <form data-testid="comment-form" @submit=${(e: Event) => this.#post(e)}>
        <label for=${id}>${t('comment')}</label>
        <textarea id=${id} name="text" required maxlength="4000" rows="2" style="width:100%"></textarea>
        <button type="submit">${t('send')}</button>
      </form>
      ${this.error ? html`<p role="alert">${this.error}</p>` : nothing}
    `;
  }
}

customElements.define('parity-thread', ParityThread);

declare global {
  interface HTMLElementTagNameMap {
    'parity-thread': ParityThread;
  }
}
