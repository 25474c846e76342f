import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badRequest, Problem } from './errors.js';

/**
 * What every request must be before any route sees it (README, "Bad input"): no control character
 * (NUL and the like) in a path segment, a query key or value, or a header value; no ambiguous
 * header (two Authorization or Content-Type headers); no transfer or content encoding the room
 * does not decode. Each refusal is a 400 (415 for an encoding) naming the parameter, decided
 * from the request line and headers alone, before the body is read.
 */
export function installInputHygiene(app: FastifyInstance): void {
  app.addHook('onRequest', async (req) => {
    checkHeaders(req.raw.rawHeaders);
    checkPath(req);
    checkQuery(req.url);
  });
}

// C0 controls and DEL. A header value may hold a tab (RFC 9110 field whitespace); nothing else may.
const CONTROL = /[\u0000-\u001f\u007f]/;
const HEADER_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const SAFE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Headers the room reads one value of: a second one makes the request ambiguous. */
const SINGLE = new Set(['authorization', 'content-type', 'content-length', 'content-encoding', 'transfer-encoding']);

function checkHeaders(raw: readonly string[]): void {
  const seen = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const field = `headers.${SAFE_NAME.test(name) ? name : '(name)'}`;
    if (HEADER_CONTROL.test(value)) throw badRequest(`${field}: control characters are not allowed`, field);
    if (SINGLE.has(name)) {
      if (seen.has(name)) throw badRequest(`${field}: given more than once`, field);
      seen.add(name);
    }
    if (name === 'transfer-encoding' && value.trim().toLowerCase() !== 'chunked')
      throw unsupported(field, 'the only transfer coding accepted is chunked');
    if (name === 'content-encoding' && value.trim().toLowerCase() !== 'identity')
      throw unsupported(field, 'send the body uncompressed (no content coding is accepted)');
  }
}

function unsupported(field: string, why: string): Problem {
  return new Problem(415, 'Unsupported Media Type', `${field}: ${why}`, { field });
}

/** Each path segment, decoded as the router decodes it; a route parameter is named as such. */
function checkPath(req: FastifyRequest): void {
  const path = req.url.split('?')[0]!;
  const pattern = (req.routeOptions.url ?? '').split('/');
  path.split('/').forEach((segment, i) => {
    const p = pattern[i];
    const field = p?.startsWith(':') ? `params.${p.slice(1)}` : 'path';
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw badRequest(`${field}: malformed percent-encoding`, field);
    }
    if (CONTROL.test(decoded)) throw badRequest(`${field}: control characters (such as NUL) are not allowed`, field);
  });
}

function checkQuery(url: string): void {
  const q = url.indexOf('?');
  if (q < 0) return;
  for (const [key, value] of new URLSearchParams(url.slice(q + 1))) {
    const field = SAFE_NAME.test(key) ? `querystring.${key}` : 'querystring';
    if (CONTROL.test(key) || CONTROL.test(value))
      throw badRequest(`${field}: control characters (such as NUL) are not allowed`, field);
  }
}
