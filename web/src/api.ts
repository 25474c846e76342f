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
  patch: <T>(path: string, body: unknown) => request<T>('PATCH', path, body),
  del: (path: string) => request<void>('DELETE', path),
};

// The response shapes are the server's own: each is inferred from the zod schema the route
// declares as its response (type-only imports: neither zod nor anything of the server is bundled).
export type {
  Band,
  BandsResponse,
  BreachEntry,
  BreachesResponse,
  Cell,
  FeedFreshness as Feed,
  KpiSummary,
  KpisResponse as KpisResult,
  PeriodBand,
  ScopeSummary as Scope,
  SeriesResult as Series,
} from '../../services/query/query-schemas.js';
export type {
  DrillSheet,
  FactSheet,
  IncidentsResponse,
  NotificationView,
  NotificationsResponse,
  WebhooksResponse,
} from '../../services/alerts/alert-schemas.js';
export type {
  AgreementChange,
  AgreementResponse as Agreement,
  AgreementVersionView,
  AuditEntryView,
  AuditPage,
  AuditVerification,
  IssuedToken,
  ProposalView,
  ProposalsResponse,
  RotatedToken,
  TokenView,
  TokensResponse,
  TransparencyReport,
  VersionsResponse,
} from '../../services/governance/governance-schemas.js';
export type { Receipt } from '../../services/ingest/receipt-schema.js';
export type {
  ConditionResult,
  GoalProgress,
  GoalsResponse,
  MilestoneProgress,
  StageProgress,
} from '../../services/goals/goal-schemas.js';
export type { Review, ReviewList } from '../../services/reviews/review-schemas.js';
export type { ActionView, Annotation, Comment, Retrospective } from '../../services/feedback/feedback-schemas.js';
export type { Who } from '../../services/governance/session-schemas.js';
export type { Committee, DecisionView } from '../../services/steering/steering-schemas.js';
export type { InvitationView } from '../../services/governance/invitations.js';
import type { AgreementResponse } from '../../services/governance/governance-schemas.js';

/** A KPI's definition as GET /v1/agreement serves it. */
export type AgreementKpi = AgreementResponse['agreement']['kpis'][number];
