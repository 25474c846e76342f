/** The room's API as the dashboard uses it: same origin, the session cookie, problem+json errors. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * Where the room is: '' on the room's own pages; the room's origin when the embeddable
 * components run on a partner's page (embed.ts sets it from the address it was loaded from).
 */
let roomBase = '';
export function setRoom(origin: string): void {
  roomBase = origin === location.origin ? '' : origin;
}

/** A request with the session cookie (the room's pages), or with a bearer token (an embedding page). */
async function request<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const res = await fetch(roomBase + path, {
    method,
    credentials: token ? 'omit' : 'same-origin',
    headers: {
      accept: 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data?.detail ?? data?.title ?? `HTTP ${res.status}`, data?.field);
  return data as T;
}

/** The query string of a series request: only the choices that are set. */
export function seriesParams(c: {
  grain?: string | undefined;
  by?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}): string {
  const p = new URLSearchParams();
  if (c.grain) p.set('grain', c.grain);
  if (c.by && c.by !== 'none') p.set('by', c.by);
  if (c.from) p.set('from', c.from);
  if (c.to) p.set('to', c.to);
  return p.toString();
}

export const api = {
  get: <T>(path: string, token?: string) => request<T>('GET', path, undefined, token),
  post: <T>(path: string, body: unknown) => request<T>('POST', path, body),
  del: (path: string) => request<void>('DELETE', path),
};

// The response shapes are the server's own types (type-only imports: nothing of the server is bundled).
export type { Band } from '../../services/query/band-evaluation.js';
export type { ScopeSummary as Scope, KpiSummary, PeriodBand } from '../../services/query/kpi-summary.js';
export type { FeedFreshness as Feed } from '../../services/query/freshness.js';
export type { Cell } from '../../services/query/suppression.js';
export type { SeriesResult as Series } from '../../services/query/series-service.js';
export type { FactSheet } from '../../services/alerts/fact-sheet.js';
export type { TransparencyReport } from '../../services/governance/transparency.js';
export type { ProposalView } from '../../services/governance/proposal-service.js';
export type { TokenView } from '../../services/governance/token-repository.js';
import type { KpisResult as ServerKpisResult } from '../../services/query/kpi-summary.js';

/** GET /v1/kpis: the summary and when its snapshot landed. */
export type KpisResult = ServerKpisResult & { asOf: string | null };

export interface Who {
  name: string;
  role: string;
  partner: string | null;
  partnerName: string | null;
}
export interface AgreementKpi {
  id: string;
  title: string;
  unit: string;
  grains: ('day' | 'week' | 'month')[];
  dimensions: Record<string, string[]>;
  breakdown: 'per_partner' | 'combined';
  range?: [number, number];
  owners: Record<string, { name: string; email: string }>;
}
export interface Agreement {
  version: number;
  digest: string;
  agreement: {
    partnership: { id: string; title: string; timezone: string };
    partners: { id: string; name: string }[];
    kpis: AgreementKpi[];
  };
}
