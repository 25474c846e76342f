import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import {
  Kysely,
  PostgresDialect,
  sql,
  type ColumnType,
  type Insertable,
  type Selectable,
  type Transaction,
  type Updateable,
} from 'kysely';
import pg from 'pg';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface PartnersTable {
  id: string;
  name: string;
  created_at: Timestamp;
}

export interface AgreementVersionsTable {
  version: number;
  document: unknown;
  digest: string;
  source: string;
  created_at: Timestamp;
  activated_at: Timestamp | null;
  proposal_id: string | null;
}

export interface TokensTable {
  id: string;
  token_hash: string;
  partner_id: string | null;
  role: string;
  name: string;
  created_at: Timestamp;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
  created_by: string | null;
  replaces: string | null;
  /** How its holder got it (sql/control/011_identity.sql): issued, or a person's sign-in. */
  origin: ColumnType<'token' | 'oidc' | 'invitation', 'token' | 'oidc' | 'invitation' | undefined, never>;
  last_used_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface AuditLogTable {
  seq: number;
  at: Timestamp;
  actor: string;
  partner_id: string | null;
  action: string;
  target: string | null;
  details: unknown;
  prev_hash: string;
  hash: string;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface IncidentsTable {
  id: string;
  kpi: string;
  scope: string;
  kind: 'breach' | 'stale';
  state: 'open' | 'notified' | 'acknowledged' | 'resolved';
  opened_at: Timestamp;
  updated_at: Timestamp;
  first_period: string | null;
  period: string | null;
  grain: string | null;
  value: number | null;
  suppressed: boolean;
  band: unknown;
  reason: string;
  snapshot: number;
  digest: string | null;
  agreement_version: number;
  freshness: unknown;
  ack_due_at: Timestamp;
  notified_at: Timestamp | null;
  acknowledged_at: Timestamp | null;
  acknowledged_by: string | null;
  escalated_at: Timestamp | null;
  resolved_at: Timestamp | null;
  resolved_by: string | null;
  resolution: 'owner' | 'auto' | null;
  fact_sheet: unknown;
}

export interface OutboxTable {
  id: string;
  /** The incident a message is about, or null for a goal notice (sql/control/006_goals.sql). */
  incident_id: string | null;
  goal_id: ColumnType<string | null, string | null | undefined, never>;
  /** The month whose review a message sends (sql/control/007_reviews.sql). */
  review_month: ColumnType<string | null, string | null | undefined, never>;
  /** The comment whose mention a message tells of (sql/control/008_feedback.sql). */
  comment_id: ColumnType<string | null, string | null | undefined, never>;
  /** The action whose overdue notice a message is (sql/control/009_retrospectives.sql). */
  action_id: ColumnType<string | null, string | null | undefined, never>;
  /** The drill a message belongs to (sql/control/010_steering.sql). */
  drill_id: ColumnType<string | null, string | null | undefined, never>;
  event: string;
  channel: 'webhook' | 'email' | 'dashboard';
  partner_id: string | null;
  recipient_name: string;
  recipient: string;
  payload: unknown;
  state: 'pending' | 'sending' | 'delivered' | 'kept' | 'failed' | 'disabled';
  attempts: number;
  next_attempt_at: Timestamp;
  last_error: string | null;
  created_at: Timestamp;
  delivered_at: Timestamp | null;
}

export interface AgreementProposalsTable {
  id: string;
  base_version: number;
  document: unknown;
  digest: string;
  reason: string;
  changes: unknown;
  loosens_privacy: boolean;
  proposed_by: string;
  proposer_partner: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  state: 'open' | 'active' | 'rejected' | 'superseded' | 'expired';
  decided_at: Timestamp | null;
  result_version: number | null;
}

export interface ProposalDecisionsTable {
  proposal_id: string;
  partner_id: string;
  decision: 'approve' | 'reject';
  token_id: string;
  decided_at: Timestamp;
  note: string | null;
}

export interface WebhookEndpointsTable {
  url: string;
  disabled_at: Timestamp | null;
  reason: string | null;
}

/** The control plane's schema, one interface per table (sql/control/*.sql is the truth). */
export interface Database {
  partners: PartnersTable;
  agreement_versions: AgreementVersionsTable;
  tokens: TokensTable;
  audit_log: AuditLogTable;
  settings: SettingsTable;
  incidents: IncidentsTable;
  outbox: OutboxTable;
  webhook_endpoints: WebhookEndpointsTable;
  agreement_proposals: AgreementProposalsTable;
  proposal_decisions: ProposalDecisionsTable;
  sessions: SessionsTable;
  webhook_secrets: WebhookSecretsTable;
  goal_notices: GoalNoticesTable;
  reviews: ReviewsTable;
  annotations: AnnotationsTable;
  annotation_versions: AnnotationVersionsTable;
  comments: CommentsTable;
  retro_items: RetroItemsTable;
  actions: ActionsTable;
  decisions: DecisionsTable;
  invitations: InvitationsTable;
  drills: DrillsTable;
}

/** A one-time sign-in link for an e-mail with a role at a partner (sql/control/011_identity.sql). */
export interface InvitationsTable {
  id: string;
  code_hash: string;
  partner_id: string;
  email: string;
  role: 'analyst' | 'owner' | 'admin' | 'steering';
  created_by: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
  revoked_at: Timestamp | null;
  token_id: string | null;
}
export type InvitationRow = Selectable<InvitationsTable>;

/** A steering decision record (sql/control/010_steering.sql): append-only, superseded by a later one. */
export interface DecisionsTable {
  id: string;
  number: number;
  title: string;
  context: string;
  options: unknown;
  decision: string;
  decision_makers: unknown;
  decided_on: string;
  consequences: string;
  incidents: unknown;
  agreement_versions: unknown;
  kpis: unknown;
  supersedes: string | null;
  recorded_by: string;
  created_at: Timestamp;
}
export type DecisionRow = Selectable<DecisionsTable>;

/** An escalation drill: a simulated incident through the real notification chain. */
export interface DrillsTable {
  id: string;
  kpi: string;
  scope: string;
  started_by: string;
  started_at: Timestamp;
  ack_due_at: Timestamp;
  notified_at: Timestamp | null;
  acknowledged_at: Timestamp | null;
  acknowledged_by: string | null;
  escalated_at: Timestamp | null;
  escalated_to: string | null;
  ended_at: Timestamp | null;
  ended_by: string | null;
}
export type DrillRow = Selectable<DrillsTable>;

/** What strengthened or weakened trust in a month or stage (sql/control/009_retrospectives.sql). */
export interface RetroItemsTable {
  id: string;
  period: string;
  kind: 'strengthened' | 'weakened';
  text: string;
  author_partner: string | null;
  author_name: string;
  created_at: Timestamp;
}
export type RetroItemRow = Selectable<RetroItemsTable>;

/** A tracked action: a retrospective's decision or an incident fact sheet's follow-up. */
export interface ActionsTable {
  id: string;
  source: string;
  kpi: string | null;
  description: string;
  owner_partner: string | null;
  owner_name: string;
  owner_email: string | null;
  due: string;
  state: 'open' | 'done';
  done_at: Timestamp | null;
  done_by: string | null;
  notified_at: Timestamp | null;
  created_at: Timestamp;
  /** The partner whose user recorded a retrospective's action; null otherwise (migration 013). */
  created_partner: ColumnType<string | null, string | null | undefined, never>;
}
export type ActionRow = Selectable<ActionsTable>;

/** A note on a KPI's periods (sql/control/008_feedback.sql); `version` counts its edits. */
export interface AnnotationsTable {
  id: string;
  kpi: string;
  scope: string;
  period_from: string;
  period_to: string;
  text: string;
  author_partner: string | null;
  author_name: string;
  version: number;
  created_at: Timestamp;
  updated_at: Timestamp;
}
export type AnnotationRow = Selectable<AnnotationsTable>;

/** Every version of an annotation, the first included. */
export interface AnnotationVersionsTable {
  annotation_id: string;
  version: number;
  scope: string;
  period_from: string;
  period_to: string;
  text: string;
  edited_at: Timestamp;
}
export type AnnotationVersionRow = Selectable<AnnotationVersionsTable>;

/** One comment of a thread on an incident, annotation, goal or proposal. */
export interface CommentsTable {
  id: string;
  target_kind: 'incident' | 'annotation' | 'goal' | 'proposal';
  target_id: string;
  text: string;
  author_partner: string | null;
  author_name: string;
  mentions: unknown;
  created_at: Timestamp;
}
export type CommentRow = Selectable<CommentsTable>;

/** A month's kept review (sql/control/007_reviews.sql). */
export interface ReviewsTable {
  month: string;
  snapshot: number;
  agreement_version: number;
  digest: string;
  document: unknown;
  created_at: Timestamp;
  sent_at: Timestamp | null;
}
export type ReviewRow = Selectable<ReviewsTable>;
export type NewReview = Insertable<ReviewsTable>;

/** A goal judgement notified once (sql/control/006_goals.sql). */
export interface GoalNoticesTable {
  goal_id: string;
  kind: 'milestone_missed' | 'exit_criterion_met';
  key: string;
  agreement_version: number;
  snapshot: number;
  created_at: Timestamp;
}
export type NewGoalNotice = Insertable<GoalNoticesTable>;

/** A partner endpoint's signing-secret generation after a rotation (sql/control/005_webhook_secrets.sql). */
export interface WebhookSecretsTable {
  partner_id: string;
  url: string;
  generation: number;
  rotated_at: Timestamp;
  previous_until: Timestamp;
}
export type WebhookSecretRow = Selectable<WebhookSecretsTable>;

/** A dashboard session (sql/control/004_sessions.sql): the hash of its id, never the id. */
export interface SessionsTable {
  id_hash: string;
  token_id: string;
  created_at: Timestamp;
  last_seen_at: Timestamp;
  absolute_expires_at: Timestamp;
}
export type SessionRow = Selectable<SessionsTable>;

export type Partner = Selectable<PartnersTable>;
export type AgreementVersionRow = Selectable<AgreementVersionsTable>;
export type NewAgreementVersion = Insertable<AgreementVersionsTable>;
export type TokenRow = Selectable<TokensTable>;
export type NewToken = Insertable<TokensTable>;
export type AuditRow = Selectable<AuditLogTable>;
export type NewAuditRow = Insertable<AuditLogTable>;
export type IncidentRow = Selectable<IncidentsTable>;
export type NewIncident = Insertable<IncidentsTable>;
export type IncidentUpdate = Updateable<IncidentsTable>;
export type OutboxRow = Selectable<OutboxTable>;
export type NewOutboxRow = Insertable<OutboxTable>;
export type WebhookEndpointRow = Selectable<WebhookEndpointsTable>;
export type ProposalRow = Selectable<AgreementProposalsTable>;
export type NewProposal = Insertable<AgreementProposalsTable>;
export type ProposalUpdate = Updateable<AgreementProposalsTable>;
export type ProposalDecisionRow = Selectable<ProposalDecisionsTable>;
export type NewProposalDecision = Insertable<ProposalDecisionsTable>;

/** The control plane, or one transaction of it: every repository function takes one as its first argument. */
export type ControlDb = Kysely<Database>;
/** A control-plane transaction: repository functions that lock (advisory locks, FOR UPDATE) need one. */
export type ControlTx = Transaction<Database>;

/**
 * Runs `fn` in one control-plane transaction: it commits when `fn` resolves and rolls back when
 * it throws. Services open transactions with this and hand `tx` to repository functions.
 */
export async function inTransaction<T>(db: ControlDb, fn: (tx: ControlTx) => Promise<T>): Promise<T> {
  let opened: ControlTx | undefined;
  const result = await db.transaction().execute((tx) => {
    opened = tx;
    return fn(tx);
  });
  const then = afterCommits.get(opened!) ?? [];
  afterCommits.delete(opened!);
  for (const f of then) f();
  return result;
}

const afterCommits = new WeakMap<object, (() => void)[]>();

/** The class of the write budgets' advisory locks: the two-key form, apart from the one-key locks (the audit chain's, proposals'). */
const BUDGET_LOCK_CLASS = 7_417_002;

/**
 * Holds, until `tx` ends, the lock of one write budget (`key`: what it counts and whose), so that
 * counting the budget and the write it allows are one step for concurrent requests: on
 * PostgreSQL's pool each counted the same rows before any wrote, and together they went past the
 * budget by up to the pool's size. Take it before any other lock of the transaction.
 */
export async function lockBudget(tx: ControlTx, key: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${BUDGET_LOCK_CLASS}, hashtext(${key}))`.execute(tx);
}

/**
 * Runs `fn` once the caller's transaction (opened by {@link inTransaction}) has committed; outside
 * a transaction, at once. A cache forgotten only before a change commits can be refilled with the
 * row as it was, by a request read in between.
 */
export function afterCommit(db: ControlDb, fn: () => void): void {
  if (!db.isTransaction) return fn();
  const list = afterCommits.get(db) ?? [];
  list.push(fn);
  afterCommits.set(db, list);
}

/** A jsonb column's value as an object, whether the driver parsed it or handed over the text. */
export function jsonColumn<T = Record<string, unknown>>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}

// int8 (counts, audit sequence numbers) as JS numbers: every value we keep fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * PGlite is one connection; Kysely expects a pool. This pool hands the single connection to
 * one borrower at a time so a transaction never interleaves with another caller's queries.
 */
function pglitePool(db: PGlite) {
  let tail: Promise<void> = Promise.resolve();
  const client = {
    async query(sql: string, params: unknown[]) {
      if (params.length === 0 && /;\s*\S/.test(sql)) {
        // Multi-statement text (migrations) needs the simple protocol.
        const results = await db.exec(sql);
        const last = results[results.length - 1];
        return { rows: last?.rows ?? [], rowCount: last?.affectedRows ?? 0, command: commandOf(sql) };
      }
      const r = await db.query(sql, params);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length, command: commandOf(sql) };
    },
    release: () => {},
  };
  return {
    async connect() {
      let release!: () => void;
      const prev = tail;
      tail = new Promise<void>((r) => (release = r));
      await prev;
      return { ...client, release };
    },
    async end() {
      await tail;
      await db.close();
    },
  };
}

/**
 * The statement every read runs (its group's audit append, sql/control/012_audit_append.sql). On
 * PostgreSQL it is prepared once per connection under a fixed name: the server parses and
 * analyses it once, not for every group (0.28–0.33 ms a group of 8 against 0.31–0.42 ms unnamed,
 * quiet machine). A pooler in transaction mode that does not keep prepared statements
 * (PgBouncer before 1.21) cannot sit between the room and PostgreSQL; a migration that changes
 * the function's result type needs the rooms restarted.
 */
export const AUDIT_APPEND_AFTER = 'SELECT audit_append_after($1::jsonb, $2::bigint, $3)';
const PREPARED = new Map([[AUDIT_APPEND_AFTER, 'parity_audit_append_after']]);

/** The pg pool as Kysely sees it, its clients running the {@link PREPARED} statements by name. */
function preparingPool(pool: pg.Pool) {
  const patched = new WeakSet<pg.PoolClient>();
  return {
    async connect() {
      const client = await pool.connect();
      if (!patched.has(client)) {
        patched.add(client);
        const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
        Object.assign(client, {
          query: (text: unknown, ...rest: unknown[]) => {
            const name = typeof text === 'string' ? PREPARED.get(text) : undefined;
            return name ? query({ name, text, values: rest[0] }, ...rest.slice(1)) : query(text, ...rest);
          },
        });
      }
      return client;
    },
    end: () => pool.end(),
  };
}

function commandOf(sql: string): string {
  return (/^\s*(\w+)/.exec(sql)?.[1] ?? '').toUpperCase();
}

export interface ControlDbHandle {
  db: ControlDb;
  /** 'postgres' for a server, 'pglite' for the embedded database. */
  kind: 'postgres' | 'pglite';
  /** Resolves when the database answers (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

function handle(db: ControlDb, kind: ControlDbHandle['kind']): ControlDbHandle {
  return { db, kind, ping: async () => void (await sql`SELECT 1`.execute(db)), close: () => db.destroy() };
}

/** The embedded control plane's buffer pool (PostgreSQL's default is 128 MB). */
const PGLITE_SHARED_BUFFERS = '16MB';
const pgliteStartParams = () => [...PGlite.defaultStartParams, '-c', `shared_buffers=${PGLITE_SHARED_BUFFERS}`];

/**
 * Creates an embedded cluster in `dir` in a short-lived child process, as PostgreSQL runs initdb
 * as a program of its own: initdb grows a WASM heap of several hundred MB, which a process
 * never gives back, so the room itself never runs it. Falls back to the caller (in-process
 * initdb) if the child fails.
 */
async function initPgliteDir(dir: string): Promise<void> {
  let entry: string;
  try {
    entry = import.meta.resolve('@electric-sql/pglite');
  } catch {
    return; // a module runner without import.meta.resolve (the test runner's): in-process
  }
  const code = [
    `const { PGlite } = await import(${JSON.stringify(entry)});`,
    `const db = await PGlite.create({ dataDir: ${JSON.stringify(dir)}, startParams: ${JSON.stringify(pgliteStartParams())} });`,
    'await db.close();',
  ].join('\n');
  return new Promise((resolveInit) => {
    execFile(process.execPath, ['--input-type=module', '-e', code], { timeout: 120_000 }, (err) => {
      // A child that failed may have left half a cluster: cleared, so the caller runs initdb itself.
      if (err) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
      }
      resolveInit();
    });
  });
}

/** Opens the control plane: the pg driver for DATABASE_URL, else PGlite under the data dir. */

export async function openControlDb(opts: {
  databaseUrl?: string | undefined;
  dataDir?: string;
  memory?: boolean;
}): Promise<ControlDbHandle> {
  if (opts.databaseUrl) {
    const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 10 });
    // Fail fast with a clear error instead of on the first request.
    const c = await pool.connect();
    c.release();
    return handle(new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparingPool(pool) }) }), 'postgres');
  }
  let dir: string | undefined;
  if (!opts.memory) {
    if (!opts.dataDir) throw new Error('openControlDb: dataDir or memory is required');
    dir = join(opts.dataDir, 'pglite');
    mkdirSync(dir, { recursive: true });
    if (!existsSync(join(dir, 'PG_VERSION'))) await initPgliteDir(dir);
  }
  const lite = await PGlite.create({
    ...(dir ? { dataDir: dir } : {}),
    parsers: { 20: (v: string) => Number(v) },
    // The control plane is small: PostgreSQL's 128 MB buffer pool would only grow the WASM heap,
    // which never shrinks (the demo's first start peaked near 1 GB RSS with it).
    startParams: pgliteStartParams(),
  });
  return handle(new Kysely<Database>({ dialect: new PostgresDialect({ pool: pglitePool(lite) as never }) }), 'pglite');
}
