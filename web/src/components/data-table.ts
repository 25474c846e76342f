import { css, html, type TemplateResult } from 'lit';

/** The styles `dataTable` needs in the shadow root it renders into. */
export const dataTableStyles = css`
  h3 {
    margin: 1.2em 0 0.4em;
  }
  .scroll {
    overflow-x: auto;
  }
`;

/**
 * A captioned table of report rows (the metadata report, the monthly review): `empty` instead of
 * a table without rows, numeric columns aligned right, a missing cell as a dash.
 */
export function dataTable(
  caption: string,
  head: string[],
  rows: unknown[][],
  opts: { empty: string; numeric?: number[] },
): TemplateResult {
  const num = (i: number) => (opts.numeric?.includes(i) ? 'num' : '');
  return html`<h3>${caption}</h3>
    ${
      rows.length === 0
        ? html`<p class="muted">${opts.empty}</p>`
        : html`<div class="scroll" tabindex="0">
            <table>
              <thead>
                <tr>
                  ${head.map((h, i) => html`<th scope="col" class=${num(i)}>${h}</th>`)}
                </tr>
              </thead>
              <tbody>
                ${rows.map(
                  (r) =>
                    html`<tr>
                      ${r.map((c, i) => html`<td class=${num(i)}>${c ?? '—'}</td>`)}
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>`
    }`;
}
