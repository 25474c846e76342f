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

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data?.detail ?? data?.title ?? `HTTP ${res.status}`, data?.field);
  return data as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body: unknown) => request<T>('POST', path, body),
  del: (path: string) => request<void>('DELETE', path),
};

export interface Band {
  method: 'static' | 'control';
  lower: number | null;
  upper: number | null;
}
export interface Scope {
  group: string | null;
  state: 'ok' | 'pending' | 'breach' | 'no_data' | 'suppressed';
  band: Band | null;
  signal: string | null;
  lastClosed: { period: string; value: number | null; n: number | null; suppressed: boolean } | null;
  previous: { period: string; value: number | null } | null;
  change: number | null;
  provisional: { period: string; value: number | null; n: number | null } | null;
}
export interface Feed {
  partner: string;
  lastArrival: string | null;
  dueBy: string;
  stale: boolean;
}
export interface KpiSummary {
  id: string;
  title: string;
  unit: string;
  measure: string;
  disclosure: string;
  grain: 'day' | 'week' | 'month';
  minGroupSize: number;
  feeds: Feed[];
  scopes: Scope[];
}
export interface KpisResult {
  today: string;
  snapshot: number;
  asOf: string | null;
  agreementVersion: number;
  digest: string;
  kpis: KpiSummary[];
}
export interface Cell {
  period: string;
  group: string | null;
  value: number | null;
  n: number | null;
  state: 'ok' | 'suppressed';
  reason?: string;
}
export interface Series {
  kpi: string;
  unit: string;
  grain: string;
  by: string | null;
  from: string;
  to: string;
  snapshot: number;
  digest: string;
  cells: Cell[];
}
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
  agreement: { partnership: { id: string; title: string; timezone: string }; partners: { id: string; name: string }[]; kpis: AgreementKpi[] };
}
export interface FactSheet {
  id: string;
  kind: 'breach' | 'stale';
  state: 'open' | 'notified' | 'acknowledged' | 'resolved';
  kpi: { id: string; title: string; unit: string };
  scope: string;
  reason: string;
  grain: string | null;
  period: string | null;
  value: number | null;
  suppressed: boolean;
  band: Band | null;
  snapshot: number;
  digest: string | null;
  owners: { partner: string; name: string }[];
  openedAt: string;
  ackDueAt: string;
  acknowledgedAt: string | null;
  escalatedAt: string | null;
  resolvedAt: string | null;
  resolution: 'owner' | 'auto' | null;
  cause: string | null;
  narrative: string | null;
  actions: { description: string; owner: string; due: string }[];
}
