import type { Command } from 'commander';
import { StartupError } from './room.js';

// The CLI's client of a running room: every admin command that acts as a person goes through the
// API with that person's own token, so identity, rights and the audit log are the room's own.

export interface Remote {
  url: string;
  token?: string;
}

/** `--url` and `--token` on a command that talks to the running room. */
export const remote = (c: Command) =>
  c
    .option('--url <url>', 'the running room', process.env['PARITY_URL'] ?? 'http://localhost:8080')
    .option('--token <token>', 'your token (default: PARITY_TOKEN)', process.env['PARITY_TOKEN']);

/** A call to the running room's API with the caller's own token: identity comes from the credential. */
export async function api<T>(o: Remote, method: string, path: string, body?: unknown): Promise<T> {
  if (!o.token)
    throw new StartupError(
      '--token or PARITY_TOKEN is required (your own token: a partner admin, steering member or owner)',
    );
  let res: Response;
  try {
    res = await fetch(new URL(path, o.url), {
      method,
      headers: {
        authorization: `Bearer ${o.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (e) {
    throw new StartupError(
      `cannot reach the room at ${o.url}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`,
    );
  }
  const text = await res.text();
  if (!res.ok) {
    let detail = text.slice(0, 500);
    try {
      const p = JSON.parse(text) as {
        detail?: string;
        title?: string;
        field?: string;
        errors?: { field: string; message: string }[];
      };
      detail = [p.detail ?? p.title, ...(p.errors ?? []).slice(1, 10).map((e) => `  ${e.field}: ${e.message}`)].join(
        '\n',
      );
    } catch {
      // not JSON: the text says it
    }
    throw new StartupError(`${method} ${path}: ${res.status} ${detail}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}
