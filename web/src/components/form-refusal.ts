import { html, nothing, type TemplateResult } from 'lit';
import { ApiError } from '../api.js';

/** A form's request the room refused: what it said, and the field it named. */
export interface Refusal {
  form: string;
  message: string;
  field?: string | undefined;
}

/**
 * Sends one form's request: undefined when it went through (after `done`), else the refusal to
 * show on that form. Pages keep the refusal in a state and read their data again on success.
 */
export async function submitForm(
  form: string,
  send: () => Promise<unknown>,
  done?: () => void,
): Promise<Refusal | undefined> {
  try {
    await send();
    done?.();
    return undefined;
  } catch (err) {
    return {
      form,
      message: err instanceof Error ? err.message : String(err),
      field: err instanceof ApiError ? err.field : undefined,
    };
  }
}

/** The refusal under the form it belongs to (nothing under the others). */
export function refusalOf(r: Refusal | undefined, form: string): TemplateResult | typeof nothing {
  return r?.form === form
    ? html`<p role="alert" style="color:#a1120a">${r.message}${r.field ? html` (${r.field})` : nothing}</p>`
    : nothing;
}
