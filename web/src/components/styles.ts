import { css } from 'lit';

/** State as colour AND icon AND text: never colour alone. */
export const stateIcon: Record<string, string> = {
  ok: '✓',
  pending: '◐',
  breach: '✕',
  no_data: '?',
  suppressed: '⊘',
  held: '‖',
};

export const shared = css`
  :host {
    font-family: inherit;
    color: #1b1f24;
    /* A block (an element is inline by default): a wide table then scrolls in its box, not the page. */
    display: block;
    min-width: 0;
    overflow-wrap: break-word;
  }
  .state {
    display: inline-flex;
    align-items: center;
    gap: 0.3em;
    padding: 0.1em 0.5em;
    border-radius: 1em;
    font-size: 0.85em;
    font-weight: 600;
    border: 1px solid;
  }
  .state.ok {
    color: #0b6b2b;
    background: #e6f4ea;
    border-color: #0b6b2b;
  }
  .state.pending {
    color: #7a4b00;
    background: #fff4d6;
    border-color: #7a4b00;
  }
  .state.breach {
    color: #a1120a;
    background: #fde7e5;
    border-color: #a1120a;
  }
  .state.no_data,
  .state.suppressed {
    color: #3d4650;
    background: #eceff3;
    border-color: #3d4650;
  }
  .state.held {
    color: #6b4800;
    background: #fff4d6;
    border-color: #6b4800;
  }
  button,
  .button {
    font: inherit;
    padding: 0.45em 0.9em;
    border-radius: 6px;
    border: 1px solid #2f5fb3;
    background: #2f5fb3;
    color: #fff;
    cursor: pointer;
    text-decoration: none;
    display: inline-block;
  }
  button.secondary,
  .button.secondary {
    background: #fff;
    color: #2f5fb3;
  }
  button:focus-visible,
  a:focus-visible,
  input:focus-visible,
  select:focus-visible,
  textarea:focus-visible {
    outline: 3px solid #f0a500;
    outline-offset: 2px;
  }
  .muted {
    color: #57606a;
  }
  table {
    border-collapse: collapse;
    width: 100%;
    font-size: 0.9em;
  }
  th,
  td {
    text-align: left;
    padding: 0.3em 0.5em;
    border-bottom: 1px solid #d8dee4;
  }
  td.num,
  th.num {
    text-align: right;
    font-variant-numeric: tabular-nums;
  }
  label {
    display: block;
    font-weight: 600;
    margin: 0.5em 0 0.2em;
  }
  input,
  select,
  textarea {
    font: inherit;
    padding: 0.35em;
    border: 1px solid #8c959f;
    border-radius: 4px;
    max-width: 100%;
    box-sizing: border-box;
  }
`;

/** The dashboard's page layout: sections, cards and control rows (the shell and its pages share one tree). */
export const layout = css`
  section {
    margin-top: 1.2em;
  }
  /* A wide table scrolls inside its box on a narrow screen; the page never scrolls sideways. */
  .scroll {
    overflow-x: auto;
    max-width: 100%;
  }
  h2 {
    font-size: 1.1em;
    margin: 0 0 0.5em;
  }
  .card {
    background: #fff;
    border: 1px solid #d8dee4;
    border-radius: 10px;
    padding: 0.9em 1em;
  }
  code {
    font-size: 0.95em;
    background: #eef1f4;
    padding: 0.1em 0.35em;
    border-radius: 4px;
  }
  .controls {
    display: flex;
    flex-wrap: wrap;
    gap: 0.8em;
    align-items: end;
  }
  .controls label {
    margin: 0;
  }
`;
