import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type QueryResult,
} from 'kysely';
import { describe, expect, it } from 'vitest';
import * as incidents from '../../services/alerts/incident-repository.js';
import * as outbox from '../../services/alerts/outbox-repository.js';
import * as agreements from '../../services/governance/agreement-repository.js';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import * as audit from '../../services/governance/audit-repository.js';
import * as proposals from '../../services/governance/proposal-repository.js';
import * as tokens from '../../services/governance/token-repository.js';
import * as sessions from '../../services/governance/session-repository.js';
import * as webhookSecrets from '../../services/alerts/webhook-secret-repository.js';
import * as goalNotices from '../../services/goals/goal-repository.js';
import * as feedback from '../../services/feedback/feedback-repository.js';
import * as actions from '../../services/feedback/action-repository.js';
import * as reviews from '../../services/reviews/review-repository.js';
import * as drills from '../../services/alerts/drill-repository.js';
import * as decisions from '../../services/steering/decision-repository.js';
import * as invitations from '../../services/governance/invitation-repository.js';
import type { ControlDb, ControlTx, IncidentRow } from '../../services/platform/control-db.js';

/**
 * Every statement the control-plane repositories send, compiled by Kysely's PostgreSQL compiler
 * without a database: a driver that records each query (and transaction boundary) and answers
 * with the rows a case gives. The result is committed; CI (which refuses to write snapshots)
 * fails when a repository's SQL drifts from it.
 */
type Rows = (sql: string) => Record<string, unknown>[];

class RecordingDriver extends DummyDriver {
  rows: Rows = () => [{}];
  readonly log: (CompiledQuery | string)[] = [];

  override async acquireConnection(): Promise<DatabaseConnection> {
    return {
      executeQuery: async <R>(q: CompiledQuery): Promise<QueryResult<R>> => {
        this.log.push(q);
        return { rows: this.rows(q.sql) as R[], numAffectedRows: 1n };
      },
      // eslint-disable-next-line require-yield
      streamQuery: async function* () {
        throw new Error('the repositories do not stream');
      },
    };
  }
  override async beginTransaction(): Promise<void> {
    this.log.push('begin');
  }
  override async commitTransaction(): Promise<void> {
    this.log.push('commit');
  }
  override async rollbackTransaction(): Promise<void> {
    this.log.push('rollback');
  }
}

const driver = new RecordingDriver();
const db: ControlDb = new Kysely({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => driver,
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});
const inTx = <T>(fn: (tx: ControlTx) => Promise<T>) => db.transaction().execute(fn);

const loaded = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!loaded.ok) throw new Error('demo agreement invalid');
const agreement = loaded.agreement;

const at = new Date('2026-11-23T12:00:00Z');
const until = new Date('2026-12-01T00:00:00Z');
const none = () => [];
const hash = 'a'.repeat(64);
const entry = {
  actor: 'tok_analyst',
  partnerId: 'acme',
  action: 'query.series',
  target: 'lead_time',
  details: { i: 1 },
};
const incident: IncidentRow = {
  id: 'inc_1',
  kpi: 'lead_time',
  scope: 'acme',
  kind: 'breach',
  state: 'open',
  opened_at: at,
  updated_at: at,
  first_period: '2026-11-16',
  period: '2026-11-16',
  grain: 'week',
  value: 42,
  suppressed: false,
  band: '{"lower":1,"upper":9}',
  reason: 'outside the agreed band',
  snapshot: 7,
  digest: hash,
  agreement_version: 1,
  freshness: '[]',
  ack_due_at: until,
  notified_at: null,
  acknowledged_at: null,
  acknowledged_by: null,
  escalated_at: null,
  resolved_at: null,
  resolved_by: null,
  resolution: null,
  fact_sheet: null,
};

interface Case {
  /** The repository function, and what the case shows when a function has several. */
  fn: string;
  variant?: string;
  run: () => Promise<unknown>;
  rows?: Rows;
  /** The function mints random ids or tokens: its parameters are not shown. */
  random?: boolean;
}

const cases: Record<string, Case[]> = {
  'alerts/incident-repository': [
    {
      fn: 'listIncidentRows',
      variant: 'every filter',
      run: () =>
        incidents.listIncidentRows(db, {
          kpis: ['lead_time', 'stops'],
          state: 'active',
          kpi: 'lead_time',
          scope: 'acme',
          kind: 'breach',
          openedFrom: at,
          openedBefore: until,
          limit: 200,
        }),
    },
    {
      fn: 'listIncidentRows',
      variant: 'one state',
      run: () => incidents.listIncidentRows(db, { kpis: ['lead_time'], state: 'notified', limit: 200 }),
    },
    { fn: 'findIncidentById', run: () => incidents.findIncidentById(db, 'inc_1') },
    { fn: 'listUnresolvedIncidents', run: () => incidents.listUnresolvedIncidents(db, 'lead_time') },
    { fn: 'listOwnerResolutions', run: () => incidents.listOwnerResolutions(db, 'lead_time') },
    { fn: 'listIncidentsDueForEscalation', run: () => incidents.listIncidentsDueForEscalation(db, at) },
    { fn: 'createIncident', run: () => incidents.createIncident(db, incident) },
    {
      fn: 'updateIncidentInStates',
      run: () =>
        incidents.updateIncidentInStates(db, 'inc_1', ['open', 'notified'], {
          state: 'acknowledged',
          acknowledged_at: at,
          acknowledged_by: 'owner@acme.example',
          updated_at: at,
        }),
    },
    {
      fn: 'updateUnresolvedIncident',
      run: () => incidents.updateUnresolvedIncident(db, 'inc_1', { period: '2026-11-23', updated_at: at }),
    },
    { fn: 'markIncidentEscalated', run: () => incidents.markIncidentEscalated(db, 'inc_1', at) },
    {
      fn: 'markIncidentNotified',
      run: () => incidents.markIncidentNotified(db, 'inc_1', { notified_at: at, updated_at: at }),
    },
    { fn: 'countIncidentsByScope', run: () => incidents.countIncidentsByScope(db, at, until) },
  ],
  'alerts/outbox-repository': [
    {
      fn: 'createOutboxMessages',
      run: () =>
        outbox.createOutboxMessages(db, [
          {
            id: 'msg_1',
            incident_id: 'inc_1',
            event: 'incident.opened',
            channel: 'email',
            partner_id: 'acme',
            recipient_name: 'Owner',
            recipient: 'owner@acme.example',
            payload: '{}',
            state: 'kept',
            attempts: 0,
            next_attempt_at: at,
            created_at: at,
            delivered_at: at,
          },
        ]),
    },
    { fn: 'hasKeptMessage', run: () => outbox.hasKeptMessage(db, 'inc_1') },
    { fn: 'requeueSendingMessages', run: () => outbox.requeueSendingMessages(db, at) },
    { fn: 'countDueMessages', run: () => outbox.countDueMessages(db, at) },
    { fn: 'countUnsettledMessages', run: () => outbox.countUnsettledMessages(db) },
    {
      fn: 'claimDueMessages',
      run: () =>
        inTx((tx) => outbox.claimDueMessages(tx, { now: at, limit: 16, exclude: ['msg_0'], leaseUntil: until })),
      rows: () => [{ id: 'msg_1', attempts: 0 }],
    },
    { fn: 'markMessageDelivered', run: () => outbox.markMessageDelivered(db, 'msg_1', at) },
    { fn: 'markMessageGivenUp', run: () => outbox.markMessageGivenUp(db, 'msg_1', 'failed', 'HTTP 500') },
    { fn: 'scheduleMessageRetry', run: () => outbox.scheduleMessageRetry(db, 'msg_1', 'HTTP 503', until) },
    {
      fn: 'disableWebhookEndpoint',
      run: () => outbox.disableWebhookEndpoint(db, 'https://hooks.acme.example/parity', at, '410 Gone'),
    },
    { fn: 'listDisabledWebhookUrls', run: () => outbox.listDisabledWebhookUrls(db) },
    {
      fn: 'listWebhookEndpoints',
      run: () => outbox.listWebhookEndpoints(db, ['https://hooks.acme.example/parity']),
    },
    {
      fn: 'listMessagesForPartner',
      variant: 'a partner',
      run: () =>
        outbox.listMessagesForPartner(db, { kpis: ['lead_time'], partnerId: 'acme', withSteering: false, limit: 100 }),
    },
    {
      fn: 'listMessagesForPartner',
      variant: 'steering',
      run: () =>
        outbox.listMessagesForPartner(db, { kpis: ['lead_time'], partnerId: 'acme', withSteering: true, limit: 100 }),
    },
    { fn: 'countMessagesBySubject', run: () => outbox.countMessagesBySubject(db, at, until) },
  ],
  'governance/agreement-repository': [
    { fn: 'findActiveAgreement', run: () => agreements.findActiveAgreement(db), rows: none },
    {
      fn: 'installInitialAgreement',
      run: () => inTx((tx) => agreements.installInitialAgreement(tx, agreement, 'fixtures/demo-agreement.yaml', at)),
      rows: none,
    },
    {
      fn: 'createAgreementVersion',
      run: () =>
        agreements.createAgreementVersion(db, {
          version: 2,
          document: '{}',
          digest: hash,
          source: 'proposal prp_1',
          created_at: at,
          activated_at: at,
          proposal_id: 'prp_1',
        }),
    },
    { fn: 'upsertPartners', run: () => agreements.upsertPartners(db, agreement.partners, at) },
    { fn: 'findAgreementDocument', run: () => agreements.findAgreementDocument(db, 1) },
    { fn: 'findAgreementOf', run: () => agreements.findAgreementOf(db, 1) },
    { fn: 'listKpiIdsOfAllVersions', run: () => agreements.listKpiIdsOfAllVersions(db) },
    { fn: 'findLatestAgreementVersion', run: () => agreements.findLatestAgreementVersion(db) },
    { fn: 'listAgreementVersions', run: () => agreements.listAgreementVersions(db) },
    { fn: 'findPartnerById', run: () => agreements.findPartnerById(db, 'acme') },
  ],
  'governance/audit-repository': [
    {
      fn: 'AuditChain',
      variant: 'append: the first under the lock in a transaction, the next in one statement',
      run: async () => {
        const chain = new audit.AuditChain(db);
        await chain.append(entry, at);
        await chain.append({ ...entry, details: { i: 2 } }, at);
      },
      rows: (sql) => (sql.startsWith('select') ? [{ seq: 41, hash }] : []),
    },
    {
      fn: 'appendAuditIn',
      run: () => inTx((tx) => audit.appendAuditIn(tx, entry, at)),
      rows: (sql) => (sql.startsWith('select "seq"') ? [{ seq: 41, hash }] : []),
    },
    { fn: 'verifyAuditChain', run: () => audit.verifyAuditChain(db), rows: none },
    {
      fn: 'listAuditEntries',
      variant: 'the whole log, one action',
      run: () => audit.listAuditEntries(db, { after: 0, limit: 100, scope: 'all', action: 'token.created' }),
    },
    {
      fn: 'listAuditEntries',
      variant: "a partner's view, an action prefix",
      run: () => audit.listAuditEntries(db, { after: 10, limit: 100, scope: { partnerId: 'acme' }, action: 'query.' }),
    },
    { fn: 'listAgreementChanges', run: () => audit.listAgreementChanges(db, at, until) },
    { fn: 'countKpiReads', run: () => audit.countKpiReads(db, at, until) },
  ],
  'governance/proposal-repository': [
    { fn: 'lockProposals', run: () => inTx((tx) => proposals.lockProposals(tx)) },
    { fn: 'expireOpenProposals', run: () => proposals.expireOpenProposals(db, at) },
    { fn: 'listRecentProposals', run: () => proposals.listRecentProposals(db, 100) },
    { fn: 'findProposalById', run: () => proposals.findProposalById(db, 'prp_1') },
    { fn: 'findProposalForUpdate', run: () => inTx((tx) => proposals.findProposalForUpdate(tx, 'prp_1')) },
    { fn: 'findOpenProposal', run: () => proposals.findOpenProposal(db) },
    { fn: 'findProposalRejectedSince', run: () => proposals.findProposalRejectedSince(db, 'acme', at) },
    {
      fn: 'createProposal',
      run: () =>
        proposals.createProposal(db, {
          id: 'prp_1',
          base_version: 1,
          document: '{}',
          digest: hash,
          reason: 'a new KPI',
          changes: '[]',
          loosens_privacy: false,
          proposed_by: 'tok_admin',
          proposer_partner: 'acme',
          created_at: at,
          expires_at: until,
          state: 'open',
        }),
    },
    {
      fn: 'updateProposal',
      run: () => proposals.updateProposal(db, 'prp_1', { state: 'active', decided_at: at, result_version: 2 }),
    },
    {
      fn: 'createProposalDecision',
      run: () =>
        proposals.createProposalDecision(db, {
          proposal_id: 'prp_1',
          partner_id: 'globex',
          decision: 'approve',
          token_id: 'tok_admin',
          decided_at: at,
          note: null,
        }),
    },
    { fn: 'listProposalDecisions', run: () => proposals.listProposalDecisions(db, 'prp_1') },
  ],
  'governance/token-repository': [
    {
      fn: 'createToken',
      run: () => tokens.createToken(db, { partnerId: 'acme', role: 'analyst', name: 'analyst@acme.example' }, at),
      random: true,
    },
    { fn: 'findPrincipalByToken', run: () => tokens.findPrincipalByToken(db, 'pty_example', at), rows: none },
    {
      fn: 'findPrincipalByToken',
      variant: 'live, last used over a minute ago',
      run: () => tokens.findPrincipalByToken(db, 'pty_example', at),
      rows: (q) =>
        q.startsWith('select')
          ? [
              {
                id: 'tok_1',
                partner_id: 'acme',
                role: 'analyst',
                name: 'ana@acme.example',
                expires_at: null,
                revoked_at: null,
                last_used_at: new Date(at.getTime() - 5 * 60_000),
              },
            ]
          : [],
    },
    { fn: 'markTokenUsed', run: () => tokens.markTokenUsed(db, { id: 'tok_1', last_used_at: null }, at) },
    {
      fn: 'createPersonToken',
      run: () =>
        tokens.createPersonToken(
          db,
          {
            partnerId: 'acme',
            role: 'analyst',
            name: 'ana@acme.example',
            origin: 'oidc',
            createdBy: 'https://login.acme.example',
          },
          at,
        ),
      random: true,
    },
    { fn: 'findPersonToken', run: () => tokens.findPersonToken(db, 'acme', 'Ana@acme.example', 'oidc') },
    { fn: 'revokeToken', run: () => tokens.revokeToken(db, 'tok_1', at) },
    { fn: 'countTokens', run: () => tokens.countTokens(db) },
    { fn: 'listTokens', variant: "a partner's", run: () => tokens.listTokens(db, 'acme') },
    { fn: 'listTokens', variant: 'all', run: () => tokens.listTokens(db, null) },
    { fn: 'findToken', run: () => tokens.findToken(db, 'tok_1') },
    { fn: 'findTokenForUpdate', run: () => inTx((tx) => tokens.findTokenForUpdate(tx, 'tok_1')) },
    { fn: 'findReplacement', run: () => tokens.findReplacement(db, 'tok_1') },
    { fn: 'setTokenExpiry', run: () => tokens.setTokenExpiry(db, 'tok_1', until) },
    {
      fn: 'listUnrevokedTokensNamed',
      run: () => tokens.listUnrevokedTokensNamed(db, ['chair@example.org', 'owner@acme.example']),
    },
    {
      fn: 'revokeTokensOfPartnersOtherThan',
      run: () => tokens.revokeTokensOfPartnersOtherThan(db, ['acme', 'globex'], at),
    },
  ],
  'alerts/webhook-secret-repository': [
    { fn: 'listWebhookSecretStates', run: () => webhookSecrets.listWebhookSecretStates(db, 'acme') },
    {
      fn: 'findWebhookSecretState',
      run: () => webhookSecrets.findWebhookSecretState(db, 'acme', 'https://hooks.example/acme'),
    },
    {
      fn: 'rotateWebhookSecret',
      run: () => webhookSecrets.rotateWebhookSecret(db, 'acme', 'https://hooks.example/acme', at, until),
    },
  ],
  'governance/session-repository': [
    { fn: 'createSession', run: () => sessions.createSession(db, 'tok_1', at, limits), random: true },
    {
      fn: 'findPrincipalBySession',
      variant: 'live, last used over a minute ago',
      run: () => sessions.findPrincipalBySession(db, 'pts_example', at, limits),
      rows: () => [sessionRow(new Date(at.getTime() - 5 * 60_000), null)],
    },
    {
      fn: 'findPrincipalBySession',
      variant: 'its token revoked',
      run: () => sessions.findPrincipalBySession(db, 'pts_example', at, limits),
      rows: () => [sessionRow(at, at)],
    },
    { fn: 'endSession', run: () => sessions.endSession(db, 'pts_example') },
    { fn: 'endSessionsOfToken', run: () => sessions.endSessionsOfToken(db, 'tok_1') },
  ],
  'reviews/review-repository': [
    { fn: 'findReview', run: () => reviews.findReview(db, '2026-10') },
    {
      fn: 'keepReview',
      run: () =>
        reviews.keepReview(db, {
          month: '2026-10',
          snapshot: 7,
          agreement_version: 1,
          digest: hash,
          document: '{}',
          created_at: at,
        }),
    },
    { fn: 'listReviews', run: () => reviews.listReviews(db) },
    { fn: 'markReviewSent', run: () => reviews.markReviewSent(db, '2026-10', at) },
    {
      fn: 'markReviewSent',
      variant: 'not after a pause',
      run: () => reviews.markReviewSent(db, '2026-10', at, new Date(at.getTime() - 3_600_000)),
    },
    { fn: 'claimReviewSend', run: () => reviews.claimReviewSend(db, '2026-10', at) },
  ],
  'feedback/feedback-repository': [
    {
      fn: 'listAnnotations',
      run: () => feedback.listAnnotations(db, { kpi: 'lead_time', from: '2026-11-01', to: '2026-11-30', limit: 500 }),
    },
    {
      fn: 'listAnnotations',
      variant: 'all',
      run: () => feedback.listAnnotations(db, { kpi: 'lead_time', limit: 500 }),
    },
    { fn: 'findAnnotation', run: () => feedback.findAnnotation(db, 'ann_1') },
    { fn: 'createAnnotation', run: () => inTx((tx) => feedback.createAnnotation(tx, annotationRow)) },
    {
      fn: 'updateAnnotation',
      rows: () => [annotationRow],
      run: () =>
        inTx((tx) =>
          feedback.updateAnnotation(tx, 'ann_1', 1, {
            scope: 'acme',
            period_from: '2026-11-09',
            period_to: '2026-11-13',
            text: 'Strike at the north hub (Mon–Fri)',
            updated_at: at,
          }),
        ),
    },
    { fn: 'listAnnotationVersions', run: () => feedback.listAnnotationVersions(db, 'ann_1') },
    { fn: 'listComments', run: () => feedback.listComments(db, 'goal', 'faster_delivery', 1000) },
    { fn: 'countWrittenSince', run: () => feedback.countWrittenSince(db, 'comments', { partner: 'acme' }, at) },
    {
      fn: 'countWrittenSince',
      variant: 'notes of a partnerless author',
      run: () => feedback.countWrittenSince(db, 'annotations', { name: 'chair@example.org' }, at),
    },
    {
      fn: 'countMentionsSince',
      rows: () => [{ email: 'gus@globex.example', n: '3' }],
      run: () => feedback.countMentionsSince(db, { partner: 'acme' }, ['Gus@Globex.example', 'ina@globex.example'], at),
    },
    {
      fn: 'countMentionsSince',
      variant: 'by a partnerless author',
      run: () => feedback.countMentionsSince(db, { name: 'chair@example.org' }, ['gus@globex.example'], at),
    },
    {
      fn: 'createComment',
      run: () =>
        inTx((tx) =>
          feedback.createComment(tx, {
            id: 'cmt_1',
            target_kind: 'goal',
            target_id: 'faster_delivery',
            text: 'Can @gus@globex.example check?',
            author_partner: 'acme',
            author_name: 'ana@acme.example',
            mentions: ['gus@globex.example'],
            created_at: at,
          }),
        ),
    },
  ],
  'feedback/action-repository': [
    { fn: 'listRetroItems', run: () => actions.listRetroItems(db, '2026-10') },
    { fn: 'listIncidentsWithUntrackedActions', run: () => actions.listIncidentsWithUntrackedActions(db) },
    {
      fn: 'createRetroItem',
      run: () =>
        inTx((tx) =>
          actions.createRetroItem(tx, {
            id: 'rti_1',
            period: '2026-10',
            kind: 'strengthened',
            text: 'Both hubs shared the strike plan early',
            author_partner: 'acme',
            author_name: 'ana@acme.example',
            created_at: at,
          }),
        ),
    },
    { fn: 'createAction', run: () => inTx((tx) => actions.createAction(tx, actionRow)) },
    { fn: 'findAction', run: () => actions.findAction(db, 'act_1') },
    { fn: 'countActionsOf', run: () => actions.countActionsOf(db, 'acme', { open: true }) },
    { fn: 'countActionsOf', variant: 'recorded since', run: () => actions.countActionsOf(db, 'acme', { since: at }) },
    {
      fn: 'listActions',
      run: () => actions.listActions(db, { source: 'retrospective:2026-10', state: 'open', limit: 1000 }),
    },
    { fn: 'listActions', variant: 'all', run: () => actions.listActions(db, { limit: 1000 }) },
    { fn: 'markActionDone', run: () => inTx((tx) => actions.markActionDone(tx, 'act_1', 'gus@globex.example', at)) },
    { fn: 'listOverdueUnnotified', run: () => actions.listOverdueUnnotified(db, '2026-11-23') },
    { fn: 'claimOverdueNotice', run: () => inTx((tx) => actions.claimOverdueNotice(tx, 'act_1', at)) },
  ],
  'alerts/drill-repository': [
    {
      fn: 'createDrill',
      run: () =>
        inTx((tx) =>
          drills.createDrill(tx, {
            id: 'drl_1',
            kpi: 'lead_time',
            scope: 'globex',
            started_by: 'chair@example.org',
            started_at: at,
            ack_due_at: until,
            notified_at: null,
            acknowledged_at: null,
            acknowledged_by: null,
            escalated_at: null,
            escalated_to: null,
            ended_at: null,
            ended_by: null,
          }),
        ),
    },
    { fn: 'findDrill', run: () => drills.findDrill(db, 'drl_1') },
    { fn: 'listDrills', variant: 'steering: all', run: () => drills.listDrills(db, 50) },
    { fn: 'listDrills', variant: 'readable KPIs', run: () => drills.listDrills(db, 50, ['lead_time', 'error_rate']) },
    { fn: 'findRunningDrill', run: () => drills.findRunningDrill(db, 'lead_time', 'globex') },
    { fn: 'listDrillsDueForEscalation', run: () => drills.listDrillsDueForEscalation(db, at) },
    { fn: 'markDrillNotified', run: () => inTx((tx) => drills.markDrillNotified(tx, 'drl_1', at)) },
    {
      fn: 'markDrillEscalated',
      run: () => inTx((tx) => drills.markDrillEscalated(tx, 'drl_1', 'deputy@example.org', at)),
    },
    {
      fn: 'markDrillAcknowledged',
      run: () => inTx((tx) => drills.markDrillAcknowledged(tx, 'drl_1', 'gus@globex.example', at)),
    },
    { fn: 'markDrillEnded', run: () => inTx((tx) => drills.markDrillEnded(tx, 'drl_1', 'chair@example.org', at)) },
  ],
  'steering/decision-repository': [
    { fn: 'listDecisions', run: () => decisions.listDecisions(db, 200) },
    { fn: 'findDecision', run: () => decisions.findDecision(db, 'dec_1') },
    { fn: 'findSuperseding', run: () => decisions.findSuperseding(db, ['dec_1', 'dec_2']) },
    { fn: 'findSuperseding', variant: 'none asked', run: () => decisions.findSuperseding(db, []) },
    {
      fn: 'appendDecision',
      rows: (q) => (q.startsWith('select max') ? [{ n: 1 }] : [{}]),
      run: () =>
        inTx((tx) =>
          decisions.appendDecision(tx, {
            id: 'dec_2',
            title: 'A late feed raises an alert the same night',
            context: 'The Monday checks found late runs a week late.',
            options: ['Keep the Monday checks', 'Alert the same night'],
            decision: 'Alert the same night.',
            decision_makers: ['chair@example.org'],
            decided_on: '2026-11-20',
            consequences: 'Late runs are fixed the same night.',
            incidents: [],
            agreement_versions: [1],
            kpis: [],
            supersedes: 'dec_1',
            recorded_by: 'chair@example.org',
            created_at: at,
          }),
        ),
    },
  ],
  'governance/invitation-repository': [
    {
      fn: 'createInvitationRow',
      run: () =>
        inTx((tx) =>
          invitations.createInvitationRow(tx, {
            id: 'ivt_1',
            code_hash: hash,
            partner_id: 'acme',
            email: 'nina@acme.example',
            role: 'analyst',
            created_by: 'admin@acme.example',
            created_at: at,
            expires_at: until,
            used_at: null,
            revoked_at: null,
            token_id: null,
          }),
        ),
    },
    { fn: 'listPartnerInvitations', run: () => invitations.listPartnerInvitations(db, 'acme', 500) },
    { fn: 'findInvitation', run: () => invitations.findInvitation(db, 'ivt_1') },
    { fn: 'withdrawInvitation', run: () => inTx((tx) => invitations.withdrawInvitation(tx, 'ivt_1', 'acme', at)) },
    {
      fn: 'findInvitationByCodeForUpdate',
      run: () => inTx((tx) => invitations.findInvitationByCodeForUpdate(tx, hash)),
    },
    { fn: 'markInvitationUsed', run: () => inTx((tx) => invitations.markInvitationUsed(tx, 'ivt_1', 'tok_1', at)) },
  ],
  'goals/goal-repository': [
    {
      fn: 'recordGoalNotice',
      run: () =>
        inTx((tx) =>
          goalNotices.recordGoalNotice(tx, {
            goal_id: 'faster_delivery',
            kind: 'milestone_missed',
            key: '2026-09-30',
            agreement_version: 1,
            snapshot: 7,
            created_at: at,
          }),
        ),
    },
  ],
};

const actionRow = {
  id: 'act_1',
  source: 'retrospective:2026-10',
  kpi: null,
  description: 'Move the nightly job an hour earlier',
  owner_partner: 'globex',
  owner_name: 'Gus Gerber',
  owner_email: 'gus@globex.example',
  due: '2026-11-20',
  state: 'open' as const,
  done_at: null,
  done_by: null,
  notified_at: null,
  created_at: at,
  created_partner: 'acme',
};

const annotationRow = {
  id: 'ann_1',
  kpi: 'lead_time',
  scope: 'acme',
  period_from: '2026-11-09',
  period_to: '2026-11-13',
  text: 'Strike at the north hub',
  author_partner: 'acme',
  author_name: 'ana@acme.example',
  version: 1,
  created_at: at,
  updated_at: at,
};

const limits = { idleMs: 2 * 3_600_000, absoluteMs: 12 * 3_600_000 };

/** A session joined with its token, as findPrincipalBySession reads it. */
function sessionRow(lastSeen: Date, revokedAt: Date | null) {
  return {
    id_hash: 'h',
    last_seen_at: lastSeen,
    absolute_expires_at: until,
    token_id: 'tok_1',
    partner_id: 'acme',
    role: 'analyst',
    name: 'analyst@acme.example',
    expires_at: null,
    revoked_at: revokedAt,
  };
}

const modules: Record<string, Record<string, unknown>> = {
  'alerts/incident-repository': incidents,
  'alerts/outbox-repository': outbox,
  'governance/agreement-repository': agreements,
  'governance/audit-repository': audit,
  'governance/proposal-repository': proposals,
  'governance/token-repository': tokens,
  'governance/session-repository': sessions,
  'alerts/webhook-secret-repository': webhookSecrets,
  'goals/goal-repository': goalNotices,
  'feedback/feedback-repository': feedback,
  'feedback/action-repository': actions,
  'reviews/review-repository': reviews,
  'alerts/drill-repository': drills,
  'steering/decision-repository': decisions,
  'governance/invitation-repository': invitations,
};
/** Exports of the repositories that send no SQL. */
const helpers = new Set(['entryHash', 'hashToken', 'tokenView', 'forgetTokens', 'forgetSessions', 'tokenCacheEpoch']);

/** Hand-written statements without their source's indentation. */
function layout(sql: string): string {
  return sql
    .trim()
    .split('\n')
    .map((line, i) => (i === 0 ? line : `  ${line.trim()}`))
    .join('\n');
}

/** Long parameters (agreement documents) are shown by their size; random ones not at all. */
function showParams(params: readonly unknown[], random: boolean): string {
  if (random) return `${params.length} parameters (random ids and token hashes)`;
  return JSON.stringify(params.map((p) => (typeof p === 'string' && p.length > 120 ? `<${p.length} characters>` : p)));
}

describe('control-plane repositories', () => {
  it('every exported repository function has a case below', () => {
    for (const [name, mod] of Object.entries(modules)) {
      const functions = Object.entries(mod)
        .filter(([k, v]) => typeof v === 'function' && !helpers.has(k))
        .map(([k]) => k)
        .sort();
      expect([...new Set(cases[name]!.map((c) => c.fn))].sort(), name).toEqual(functions);
    }
  });

  it('the SQL every repository function sends is the committed one', async () => {
    const parts: string[] = [
      '# SQL of the control-plane repositories',
      '',
      'Generated by tests/unit/repository-sql.test.ts (Kysely compiles each repository function without a database);',
      'a change to what the room asks PostgreSQL shows up here in review. `begin` and `commit` mark the',
      "case's transaction; each statement's parameters follow it.",
      '',
    ];
    for (const [name, list] of Object.entries(cases)) {
      parts.push(`## services/${name}.ts`, '');
      for (const c of list) {
        driver.log.length = 0;
        driver.rows = c.rows ?? (() => [{}]);
        // Each case asks the database itself: nothing read by an earlier case is remembered.
        tokens.forgetTokens();
        sessions.forgetSessions();
        await c.run();
        parts.push(`### ${c.fn}${c.variant ? ` · ${c.variant}` : ''}`, '', '```sql');
        for (const q of driver.log) {
          if (typeof q === 'string') parts.push(`-- ${q}`);
          else parts.push(`${layout(q.sql)};`, `-- params: ${showParams(q.parameters, c.random ?? false)}`);
        }
        parts.push('```', '');
      }
    }
    await expect(parts.join('\n')).toMatchFileSnapshot('./__snapshots__/repository-sql.md');
  });
});
