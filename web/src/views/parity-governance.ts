import { LitElement, html, css, nothing } from 'lit';
import { api, ApiError, type InvitationView, type ProposalView, type TokenView } from '../api.js';
import { I18nController, i18n, t } from '../i18n.js';
import { shared } from '../components/styles.js';

interface Version {
  version: number;
  digest: string;
  activatedAt: string | null;
  source: string;
  proposal: string | null;
}

// Governance for partner admins and the steering committee: the agreement's versions, the
// proposals with their plain-terms diff (each loosening of privacy flagged) and — for an admin
// whose partner has yet to decide — approve and reject; an admin's own partner's tokens
// (issue, shown once; rotate; revoke).

/** The governance page: agreement versions, proposals to approve or reject, and an admin's own tokens. */
export class ParityGovernance extends LitElement {
  static override properties = {
    userRole: { attribute: false },
    partner: { attribute: false },
    versions: { state: true },
    proposals: { state: true },
    tokens: { state: true },
    invitations: { state: true },
    invited: { state: true },
    issued: { state: true },
    error: { state: true },
  };
  /** The signed-in user's role (not `role`: that is the element's ARIA role). */
  declare userRole: string;
  declare partner: string | null;
  declare versions: Version[] | undefined;
  declare proposals: ProposalView[] | undefined;
  declare tokens: TokenView[] | undefined;
  declare invitations: InvitationView[] | undefined;
  /** The link of the invitation just made: shown once. */
  declare invited: { email: string; link: string } | undefined;
  declare issued: { id: string; token: string } | undefined;
  declare error: string | undefined;
  private readonly languageSwitch = new I18nController(this);

  static override styles = [
    shared,
    css`
      section {
        margin: 1em 0;
      }
      h3 {
        margin: 1.2em 0 0.4em;
      }
      .proposal {
        border-top: 1px solid #d8dee4;
        padding: 0.6em 0;
      }
      ul.changes {
        margin: 0.3em 0;
        padding-left: 1.2em;
      }
      .loosens {
        color: #a1120a;
        font-weight: 600;
      }
      .secret {
        font-family: ui-monospace, monospace;
        background: #fff4d6;
        border: 1px solid #7a4b00;
        padding: 0.4em;
        word-break: break-all;
      }
      .row {
        display: flex;
        gap: 0.6em;
        flex-wrap: wrap;
        align-items: end;
      }
      .scroll {
        overflow-x: auto;
      }
    `,
  ];

  /** Loaded once the page has said who is reading (an admin also gets its tokens). */
  override updated(changed: Map<string, unknown>): void {
    if (changed.has('userRole')) void this.#load();
  }

  async #load(): Promise<void> {
    try {
      const [versions, proposals, tokens, invitations] = await Promise.all([
        api.get<{ versions: Version[] }>('/v1/agreement/versions').then((r) => r.versions),
        api.get<{ proposals: ProposalView[] }>('/v1/agreement/proposals').then((r) => r.proposals),
        this.userRole === 'admin'
          ? api.get<{ tokens: TokenView[] }>('/v1/tokens').then((r) => r.tokens)
          : Promise.resolve(undefined),
        this.userRole === 'admin'
          ? api.get<{ invitations: InvitationView[] }>('/v1/invitations').then((r) => r.invitations)
          : Promise.resolve(undefined),
      ]);
      [this.versions, this.proposals, this.tokens, this.invitations] = [versions, proposals, tokens, invitations];
    } catch (err) {
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  async #act(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
      this.error = undefined;
      await this.#load();
    } catch (err) {
      this.error = err instanceof ApiError ? err.message : String(err);
    }
  }

  #proposal(p: ProposalView) {
    const mayDecide =
      this.userRole === 'admin' && p.state === 'open' && this.partner !== null && p.waitingFor.includes(this.partner);
    return html`<article class="proposal" data-proposal=${p.id} aria-label="${t('proposal')} ${p.id}">
      <div>
        <strong>${p.reason}</strong> ·
        <span class="state ${p.state === 'active' ? 'ok' : p.state === 'open' ? 'pending' : 'no_data'}"
          >${p.state}</span
        >
        ${p.loosensPrivacy ? html` · <span class="loosens">⚠ ${t('loosensPrivacy')}</span>` : nothing}
      </div>
      <div class="muted">
        ${t('proposedBy')} ${p.proposedBy.partner} · ${i18n.date(p.createdAt)} · ${t('changesVersion')}
        ${p.baseVersion}${p.resultVersion ? ` → ${p.resultVersion}` : ''} · ${t('expires')} ${i18n.date(p.expiresAt)}
      </div>
      <ul class="changes">
        ${p.changes.map((c) => html`<li class=${c.loosensPrivacy ? 'loosens' : ''}>${c.loosensPrivacy ? html`<span aria-hidden="true">⚠ </span>` : nothing}${c.text}</li>`)}
      </ul>
      ${p.widensTokens.length ? html`<p class="loosens">⚠ ${t('widensTokens')}: ${p.widensTokens.map((w) => `${w.id} (${w.partner ?? '—'} ${w.role}, ${w.name})`).join('; ')}</p>` : nothing}
      <div class="muted">
        ${t('decisions')}:
        ${p.decisions.map((d) => `${d.partner} ${d.decision === 'approve' ? '✓' : '✕'}${d.note ? ` (${d.note})` : ''}`).join(', ') || '—'}${p.state === 'open' ? html` · ${t('waitingFor')}: ${p.waitingFor.join(', ')}` : nothing}
      </div>
      ${
        mayDecide
          ? html`<form
              class="row"
              @submit=${(e: SubmitEvent) => {
                e.preventDefault();
                const f = new FormData(e.target as HTMLFormElement);
                const text = String(f.get('note') ?? '').trim();
                const reject = (e.submitter as HTMLButtonElement | null)?.value === 'reject';
                void this.#act(() =>
                  api.post(
                    `/v1/agreement/proposals/${p.id}/${reject ? 'reject' : 'approve'}`,
                    reject ? { reason: text } : text ? { note: text } : {},
                  ),
                );
              }}
            >
              <div><label for="note-${p.id}">${t('noteOrReason')}</label><input id="note-${p.id}" name="note" /></div>
              <button type="submit" value="approve">${t('approveFor')} ${this.partner}</button>
              <button type="submit" value="reject" class="secondary">${t('reject')}</button>
            </form>`
          : nothing
      }
    </article>`;
  }

  #tokens() {
    if (!this.tokens) return nothing;
    return html`<h3>${t('tokensOf')} ${this.partner}</h3>
      <form
        class="row"
        @submit=${(e: Event) => {
          e.preventDefault();
          const f = new FormData(e.target as HTMLFormElement);
          const expires = String(f.get('expires') ?? '');
          void this.#act(async () => {
            this.issued = await api.post<{ id: string; token: string }>('/v1/tokens', {
              role: f.get('role'),
              name: String(f.get('name') ?? '').trim(),
              ...(expires ? { expiresAt: new Date(`${expires}T23:59:59Z`).toISOString() } : {}),
            });
          });
        }}
      >
        <div>
          <label for="t-role">${t('role')}</label
          ><select id="t-role" name="role">
            ${['analyst', 'owner', 'ingest', 'admin'].map((r) => html`<option value=${r}>${r}</option>`)}
          </select>
        </div>
        <div><label for="t-name">${t('tokenName')}</label><input id="t-name" name="name" required /></div>
        <div><label for="t-expires">${t('expires')}</label><input id="t-expires" name="expires" type="date" /></div>
        <button type="submit">${t('issueToken')}</button>
      </form>
      ${
        this.issued
          ? html`<p role="status">${t('shownOnce')} (${this.issued.id}):</p>
              <p class="secret" data-testid="issued-token">${this.issued.token}</p>`
          : nothing
      }
      <div class="scroll" tabindex="0">
        <table>
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">${t('role')}</th>
              <th scope="col">${t('tokenName')}</th>
              <th scope="col">${t('origin')}</th>
              <th scope="col">${t('state')}</th>
              <th scope="col">${t('createdAt')}</th>
              <th scope="col">${t('lastUsed')}</th>
              <th scope="col">${t('expires')}</th>
              <th scope="col"><span class="muted">—</span></th>
            </tr>
          </thead>
          <tbody>
            ${this.tokens.map(
              (k) =>
                html`<tr data-token=${k.id}>
                  <td><code>${k.id}</code></td>
                  <td>${k.role}</td>
                  <td>${k.name}</td>
                  <td>${t(`origin.${k.origin}`)}</td>
                  <td>${k.state}</td>
                  <td>${i18n.date(k.createdAt)}</td>
                  <td data-testid="last-used">${k.lastUsedAt ? i18n.date(k.lastUsedAt) : t('never')}</td>
                  <td>${i18n.date(k.expiresAt)}</td>
                  <td>
                    ${
                      k.state === 'live' && ['analyst', 'owner', 'ingest', 'admin'].includes(k.role)
                        ? html`${
                              k.origin === 'token'
                                ? html`<button
                                    class="secondary"
                                    @click=${() => this.#act(async () => void (this.issued = await api.post<{ id: string; token: string }>(`/v1/tokens/${k.id}/rotate`, {})))}
                                  >
                                    ${t('rotate')}
                                  </button>`
                                : nothing
                            }
                            <button class="secondary" @click=${() => this.#act(() => api.del(`/v1/tokens/${k.id}`))}>
                              ${t('revoke')}
                            </button>`
                        : nothing
                    }
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>`;
  }

  /** A partner admin invites a person of its partner: a one-time link, shown once. */
  #invitations() {
    if (!this.invitations) return nothing;
    return html`<h3>${t('invitations')}</h3>
      <p class="muted">${t('inviteHelp')}</p>
      <form
        class="row"
        data-testid="invite-form"
        @submit=${(e: Event) => {
          e.preventDefault();
          const form = e.target as HTMLFormElement;
          const f = new FormData(form);
          void this.#act(async () => {
            const made = await api.post<{ email: string; link: string }>('/v1/invitations', {
              email: String(f.get('email') ?? '').trim(),
              role: f.get('role'),
              expiresInHours: Number(f.get('hours') ?? 72),
            });
            this.invited = { email: made.email, link: made.link };
            form.reset();
          });
        }}
      >
        <div><label for="i-email">${t('email')}</label><input id="i-email" name="email" type="email" required /></div>
        <div>
          <label for="i-role">${t('role')}</label
          ><select id="i-role" name="role">
            ${['analyst', 'owner', 'admin'].map((r) => html`<option value=${r}>${r}</option>`)}
          </select>
        </div>
        <div>
          <label for="i-hours">${t('hours')}</label
          ><input id="i-hours" name="hours" type="number" min="1" max="168" value="72" required />
        </div>
        <button type="submit">${t('invite')}</button>
      </form>
      ${
        this.invited
          ? html`<p role="status">${t('inviteLink')} — ${this.invited.email}:</p>
              <p class="secret" data-testid="invite-link">${this.invited.link}</p>`
          : nothing
      }
      <div class="scroll" tabindex="0">
        <table>
          <thead>
            <tr>
              <th scope="col">${t('email')}</th>
              <th scope="col">${t('role')}</th>
              <th scope="col">${t('state')}</th>
              <th scope="col">${t('createdAt')}</th>
              <th scope="col">${t('expires')}</th>
              <th scope="col"><span class="muted">—</span></th>
            </tr>
          </thead>
          <tbody>
            ${this.invitations.map(
              (i) =>
                html`<tr>
                  <td>${i.email}</td>
                  <td>${i.role}</td>
                  <td>${t(`invitation.${i.state}`)}</td>
                  <td>${i18n.date(i.createdAt)}</td>
                  <td>${i18n.date(i.expiresAt)}</td>
                  <td>
                    ${
                      i.state === 'pending'
                        ? html`<button
                            class="secondary"
                            @click=${() => this.#act(() => api.del(`/v1/invitations/${i.id}`))}
                          >
                            ${t('withdraw')}
                          </button>`
                        : nothing
                    }
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>`;
  }

  override render() {
    return html`<section aria-labelledby="gov-h">
      <h2 id="gov-h">${t('governance')}</h2>
      <p class="muted">${t('governanceIntro')}</p>
      ${this.error ? html`<p role="alert" style="color:#a1120a">${this.error}</p>` : nothing}
      <h3>${t('proposals')}</h3>
      ${this.proposals === undefined ? html`<p>${t('loading')}</p>` : this.proposals.length === 0 ? html`<p class="muted">${t('noProposals')}</p>` : this.proposals.map((p) => this.#proposal(p))}
      <h3>${t('versions')}</h3>
      ${
        this.versions
          ? html`<div class="scroll" tabindex="0">
              <table>
                <thead>
                  <tr>
                    <th scope="col">${t('agreementVersion')}</th>
                    <th scope="col">${t('when')}</th>
                    <th scope="col">${t('digest')}</th>
                    <th scope="col">${t('source')}</th>
                  </tr>
                </thead>
                <tbody>
                  ${this.versions.map(
                    (v) =>
                      html`<tr>
                        <td>v${v.version}</td>
                        <td>${i18n.date(v.activatedAt)}</td>
                        <td><code title=${v.digest}>${v.digest.slice(0, 12)}</code></td>
                        <td>${v.source}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
          : nothing
      }
      ${this.#tokens()} ${this.#invitations()}
    </section>`;
  }
}

customElements.define('parity-governance', ParityGovernance);

declare global {
  interface HTMLElementTagNameMap {
    'parity-governance': ParityGovernance;
  }
}
