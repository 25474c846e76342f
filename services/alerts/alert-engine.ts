import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { durationMs, type Kpi } from '../platform/agreement-schema.js';
import { appendAuditIn } from '../governance/audit-repository.js';
import { inTransaction, type ControlTx, type IncidentRow } from '../platform/control-db.js';
import { BackgroundLoop } from '../platform/background-loop.js';
import type { Room } from '../platform/room.js';
import type { SeriesReader } from '../query/series-reader.js';
import type { Signal } from '../query/band-evaluation.js';
import {
  evaluateKpi,
  evaluationContext,
  type EvaluationContext,
  type KpiSummary,
  type ScopeSummary,
} from '../query/kpi-summary.js';
import { periodEnd } from '../platform/calendar.js';
import { runSeries } from '../query/series-service.js';
import { disclosureRules } from '../query/disclosure.js';
import {
  createIncident,
  listIncidentsDueForEscalation,
  listOwnerResolutions,
  listUnresolvedIncidents,
  markIncidentEscalated,
  markIncidentNotified,
  updateUnresolvedIncident,
} from './incident-repository.js';
import type { Notifier } from './notifier.js';
import { chairAt } from '../platform/steering-chair.js';
import { enqueue, ownerRecipients, steeringRecipients, type Recipient } from './outbox.js';
import { hasKeptMessage } from './outbox-repository.js';
import { dueAfter, maintenanceWindows, windowAt } from '../platform/maintenance.js';
import { Lifecycle } from '../platform/lifecycle.js';

const signalText: Record<Signal, string> = {
  band: 'outside the agreed band',
  '2of3beyond2sigma': 'run rule: 2 of the last 3 periods beyond 2σ on one side',
  '4of5beyond1sigma': 'run rule: 4 of the last 5 periods beyond 1σ on one side',
  '8onOneSide': 'run rule: 8 periods in a row on one side of the centre line',
};

/** Runs after an evaluation (goal notices); returns the notifications it wrote. */
export type EvaluationWatcher = (ctx: EvaluationContext, kpis: ReadonlySet<string> | null) => Promise<number>;

const incidentId = () => `inc_${randomBytes(9).toString('base64url')}`;

/** The share of the time evaluation may take under sustained ingest (BackgroundLoop maxShare). */
export const EVALUATION_SHARE = 0.1;

/**
 * Evaluates bands after every landed batch (for the KPIs it touched) and on a schedule (every
 * KPI, feed freshness, acknowledgement deadlines); opens, updates and resolves incidents and
 * writes their notifications to the outbox. It runs beside ingest, never in its path: a batch's
 * 2xx does not wait for it, and evaluations coalesce while one is running.
 */
export class AlertEngine {
  readonly #room: Room;
  readonly #notifier: Notifier;
  readonly #reader: SeriesReader;
  readonly #pending = new Set<string>();
  readonly #loop: BackgroundLoop;
  #full = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #watchers: EvaluationWatcher[] = [];
  readonly #log: Pick<Logger, 'info' | 'warn' | 'error'>;
  #unsubscribe: (() => void) | undefined;

  constructor(room: Room, reader: SeriesReader, notifier: Notifier, log: Pick<Logger, 'info' | 'warn' | 'error'>) {
    this.#room = room;
    this.#reader = reader;
    this.#notifier = notifier;
    this.#log = log;
    this.#loop = new BackgroundLoop(
      () => this.#run(),
      () => room.duck.slots.busy > 0,
      (err) => log.error({ err }, 'alerts: evaluation failed'),
      // Evaluation keeps to a tenth of the machine under sustained ingest (issue #4: ingest
      // slowed by at most 10 %), even when each run is long (a busy room, a large KPI): a breach
      // is then notified a few seconds later, never at the cost of the batches.
      { maxShare: EVALUATION_SHARE },
    );
  }

  /** Evaluations run so far and the last one's duration (for /metrics and the benchmark). */
  get stats(): { runs: number; lastMs: number } {
    return this.#loop.stats;
  }

  /** Starts evaluating, once however often asked; again after stop() has resolved. */
  start(): void {
    if (!this.#lifecycle.begin()) return;
    this.#loop.resume();
    // The store announces a batch once the snapshot watermark includes it, which evaluation reads at.
    this.#unsubscribe = this.#room.duck.touched.onChange((_snapshot, kpis) => this.request(kpis));
    this.#timer = setInterval(() => this.requestAll(), this.#room.config.evaluateEveryMs);
    this.#timer.unref();
    this.requestAll();
  }

  /** Stops after the evaluation under way, if any; callers while it runs share the one stop. */
  stop(): Promise<void> {
    return this.#lifecycle.stop(() => this.#stop());
  }

  async #stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#timer);
    this.#pending.clear();
    this.#full = false;
    await this.#loop.stop();
  }
  /** Once stopped, an evaluation under way ends at its next KPI or watcher, so shutdown is not held up. */
  readonly #lifecycle = new Lifecycle('alerts');

  /**
   * Runs `w` after each evaluation with its context and the KPIs evaluated (null: all): the
   * assembly hands the goals service in this way, so alerts knows nothing of goals.
   */
  watch(w: EvaluationWatcher): void {
    this.#watchers.push(w);
  }

  request(kpis: readonly string[]): void {
    for (const k of kpis) this.#pending.add(k);
    this.#loop.request();
  }

  /** Every KPI, feed freshness and acknowledgement deadlines (the schedule; tests after moving the clock). */
  requestAll(): void {
    this.#full = true;
    this.#loop.request({ scheduled: true });
  }

  /** Whether an evaluation is queued or running (for /metrics and the benchmark). */
  get busy(): boolean {
    return this.#loop.busy;
  }

  /** Resolves once no evaluation is queued or running. */
  async idle(): Promise<void> {
    await this.#loop.idle();
  }

  async #run(): Promise<void> {
    const full = this.#full;
    const ids = full ? null : new Set(this.#pending);
    this.#full = false;
    this.#pending.clear();
    if (full || ids!.size) await this.#evaluate(ids, full);
  }

  async #evaluate(ids: Set<string> | null, full: boolean): Promise<void> {
    // One snapshot under the version in force with it, from the judging to what is kept of it
    // (incidents and their figures, goal notices): a rewrite of the points (a new zone's days,
    // retention) commits before or after, never in between (DuckStore.stableRead).
    await this.#room.duck.stableRead(() => this.#evaluateAt(ids, full));
  }

  async #evaluateAt(ids: Set<string> | null, full: boolean): Promise<void> {
    const active = this.#room.agreement();
    const now = this.#room.clock.now();
    const ctx = evaluationContext(
      this.#reader,
      active.agreement,
      active.version,
      now,
      active.activatedAt ?? now,
      this.#room.duck.snapshots.latest,
    );
    let enqueued = 0;
    for (const kpi of active.agreement.kpis) {
      if (this.#lifecycle.stopped) return;
      if (ids && !ids.has(kpi.id)) continue;
      enqueued += await this.#applyKpi(ctx, kpi, await evaluateKpi(ctx, kpi));
    }
    for (const w of this.#watchers) {
      if (this.#lifecycle.stopped) break;
      try {
        enqueued += await w(ctx, ids);
      } catch (err) {
        this.#log.error({ err }, 'alerts: a watcher of the evaluation failed; it runs again with the next one');
      }
    }
    if (full) enqueued += await this.#escalate(now);
    if (enqueued) this.#notifier.kick();
  }

  async #applyKpi(ctx: EvaluationContext, kpi: Kpi, summary: KpiSummary): Promise<number> {
    const db = this.#room.control.db;
    const open = await listUnresolvedIncidents(db, kpi.id);
    // What the owners already closed: a resolution covers its period (and a stale feed until it next sends).
    const closed = await listOwnerResolutions(db, kpi.id);
    const covered = (kind: 'breach' | 'stale', scope: string, period: string | null, lastArrival: string | null) =>
      closed.some(
        (r) =>
          r.kind === kind &&
          r.scope === scope &&
          (kind === 'breach'
            ? r.period !== null && period !== null && r.period >= period
            : new Date(r.resolved_at!).getTime() >= (lastArrival ? Date.parse(lastArrival) : 0)),
      );
    let enqueued = 0;
    for (const s of summary.scopes) {
      const scope = s.group ?? 'combined';
      const existing = open.find((i) => i.kind === 'breach' && i.scope === scope);
      if (s.state === 'breach' && s.lastClosed && !existing && covered('breach', scope, s.lastClosed.period, null))
        continue;
      if (s.state === 'breach' && s.lastClosed)
        enqueued += await this.#breach(ctx, kpi, scope, s, summary.feeds, existing);
      else if (existing && s.inBandRun >= kpi.evaluate.consecutive) {
        const grain = kpi.evaluate.grain;
        const narrative = `Back in band for ${s.inBandRun} closed ${grain}${s.inBandRun === 1 ? '' : 's'} in a row (the agreement asks for ${kpi.evaluate.consecutive}); resolved automatically at snapshot ${ctx.snapshot}.`;
        enqueued += await this.#autoResolve(ctx, kpi, existing, narrative);
      }
    }
    for (const feed of summary.feeds) {
      const existing = open.find((i) => i.kind === 'stale' && i.scope === feed.partner);
      if (feed.stale && !existing && !covered('stale', feed.partner, null, feed.lastArrival)) {
        const reason = `no batch of ${kpi.id} from ${feed.partner} ${feed.lastArrival ? `since ${feed.lastArrival}` : 'yet'}; one was due by ${feed.dueBy}`;
        const row = this.#newIncident(ctx, kpi, feed.partner, 'stale', reason, {
          freshness: JSON.stringify(summary.feeds),
        });
        // A stale feed is that partner's data side: only its owners hear of it.
        enqueued += await this.#open(ctx, kpi, row, ownerRecipients(kpi, feed.partner));
      } else if (
        !feed.stale &&
        existing &&
        feed.lastArrival !== null &&
        // Inside a maintenance window a feed is not stale, but it has resumed only if a batch came since.
        (feed.maintenanceUntil === null || Date.parse(feed.lastArrival) > new Date(existing.opened_at).getTime())
      ) {
        enqueued += await this.#autoResolve(
          ctx,
          kpi,
          existing,
          `The feed resumed: last batch at ${feed.lastArrival}; resolved automatically.`,
        );
      }
    }
    return enqueued;
  }

  #newIncident(
    ctx: EvaluationContext,
    kpi: Kpi,
    scope: string,
    kind: 'breach' | 'stale',
    reason: string,
    extra: Partial<Record<keyof IncidentRow, unknown>>,
  ): IncidentRow {
    const now = ctx.now;
    return {
      id: incidentId(),
      kpi: kpi.id,
      scope,
      kind,
      state: 'open',
      opened_at: now,
      updated_at: now,
      first_period: null,
      period: null,
      grain: null,
      value: null,
      suppressed: false,
      band: null,
      reason,
      snapshot: ctx.snapshot,
      digest: null,
      agreement_version: ctx.agreementVersion,
      freshness: '[]',
      ack_due_at: new Date(now.getTime() + durationMs(kpi.escalation.ackWithin)),
      notified_at: null,
      acknowledged_at: null,
      acknowledged_by: null,
      escalated_at: null,
      resolved_at: null,
      resolved_by: null,
      resolution: null,
      fact_sheet: null,
      ...extra,
    } as IncidentRow;
  }

  /** The figure a breach reports, with the digest of the series request that reproduces it. */
  async #figure(ctx: EvaluationContext, kpi: Kpi, scope: string, s: ScopeSummary, feeds: KpiSummary['feeds']) {
    const grain = kpi.evaluate.grain;
    const period = s.lastClosed!.period;
    const series = await runSeries(ctx.reader, ctx.agreementVersion, {
      kpi,
      grain,
      from: period,
      to: periodEnd(period, grain),
      by: { kind: scope === 'combined' ? 'none' : 'partner' },
      snapshot: ctx.snapshot,
      timezone: ctx.agreement.partnership.timezone,
      rules: disclosureRules(ctx.agreement, kpi),
    });
    return {
      grain,
      period,
      first_period: s.outOfBandSince ?? period,
      value: s.lastClosed!.suppressed ? null : s.lastClosed!.value,
      suppressed: s.lastClosed!.suppressed,
      band: JSON.stringify(s.band),
      reason: signalText[s.signal ?? 'band'],
      snapshot: ctx.snapshot,
      digest: series.digest,
      agreement_version: ctx.agreementVersion,
      freshness: JSON.stringify(feeds),
    };
  }

  async #breach(
    ctx: EvaluationContext,
    kpi: Kpi,
    scope: string,
    s: ScopeSummary,
    feeds: KpiSummary['feeds'],
    existing: IncidentRow | undefined,
  ): Promise<number> {
    const figure = await this.#figure(ctx, kpi, scope, s, feeds);
    if (!existing)
      return this.#open(
        ctx,
        kpi,
        this.#newIncident(ctx, kpi, scope, 'breach', figure.reason, figure),
        ownerRecipients(kpi, scope),
      );
    if (existing.period === figure.period && Number(existing.snapshot) === ctx.snapshot) return 0;
    // A repeated breach updates the one open incident (the dedup key); nobody is notified again.
    await inTransaction(this.#room.control.db, async (tx) => {
      // Only while it is still open: an owner may have resolved it since it was read.
      const r = await updateUnresolvedIncident(tx, existing.id, {
        ...figure,
        first_period: existing.first_period ?? figure.first_period,
        updated_at: ctx.now,
      });
      if (r && existing.period !== figure.period)
        await appendAuditIn(
          tx,
          {
            actor: 'alerts',
            partnerId: null,
            action: 'incident.updated',
            target: existing.id,
            details: { kpi: kpi.id, scope, period: figure.period, snapshot: ctx.snapshot },
          },
          ctx.now,
        );
    });
    return 0;
  }

  async #open(ctx: EvaluationContext, kpi: Kpi, row: IncidentRow, recipients: Recipient[]): Promise<number> {
    try {
      return await inTransaction(this.#room.control.db, async (tx) => {
        const stored = await createIncident(tx, row);
        await appendAuditIn(
          tx,
          {
            actor: 'alerts',
            partnerId: null,
            action: 'incident.opened',
            target: row.id,
            details: { kpi: kpi.id, scope: row.scope, kind: row.kind, period: row.period, snapshot: ctx.snapshot },
          },
          ctx.now,
        );
        const n = await enqueue(tx, this.#room, {
          incident: stored,
          kpi,
          event: 'incident.opened',
          recipients,
          now: ctx.now,
        });
        await markNotifiedIfKept(tx, row.id, row.kpi, ctx.now);
        return n;
      });
    } catch (err) {
      // The open-incident key: another evaluation opened it first.
      if ((err as { code?: string }).code === '23505') return 0;
      throw err;
    }
  }

  async #autoResolve(ctx: EvaluationContext, kpi: Kpi, incident: IncidentRow, narrative: string): Promise<number> {
    return inTransaction(this.#room.control.db, async (tx) => {
      const r = await updateUnresolvedIncident(tx, incident.id, {
        state: 'resolved',
        resolved_at: ctx.now,
        resolved_by: 'alerts',
        resolution: 'auto',
        updated_at: ctx.now,
        fact_sheet: JSON.stringify({ cause: null, narrative, actions: [] }),
      });
      if (!r) return 0;
      await appendAuditIn(
        tx,
        {
          actor: 'alerts',
          partnerId: null,
          action: 'incident.resolved',
          target: incident.id,
          details: { kpi: kpi.id, scope: incident.scope, resolution: 'auto', snapshot: ctx.snapshot },
        },
        ctx.now,
      );
      return resolvedNotifications(tx, this.#room, kpi, r, ctx.now);
    });
  }

  /**
   * Incidents nobody acknowledged within `ackWithin` go to the steering contacts, once (time in a
   * maintenance window not counted).
   */
  async #escalate(now: Date): Promise<number> {
    const db = this.#room.control.db;
    const agreement = this.#room.agreement().agreement;
    const due = await listIncidentsDueForEscalation(db, now);
    let enqueued = 0;
    for (const inc of due) {
      const kpi = agreement.kpis.find((k) => k.id === inc.kpi);
      if (!kpi) continue;
      // Time inside a maintenance window of the partner concerned (any partner's, for a combined
      // figure) does not count towards the acknowledgement deadline: no escalation inside one.
      const windows = maintenanceWindows(agreement, inc.scope === 'combined' ? null : inc.scope);
      const opened = new Date(inc.opened_at);
      const ackDue = dueAfter(windows, opened, new Date(inc.ack_due_at).getTime() - opened.getTime());
      if (windowAt(windows, now) || ackDue > now) continue;
      enqueued += await inTransaction(db, async (tx) => {
        const r = await markIncidentEscalated(tx, inc.id, now);
        if (!r) return 0;
        await appendAuditIn(
          tx,
          {
            actor: 'alerts',
            partnerId: null,
            action: 'incident.escalated',
            target: inc.id,
            details: {
              kpi: inc.kpi,
              scope: inc.scope,
              ackDueAt: new Date(inc.ack_due_at).toISOString(),
              chair: chairAt(agreement, now).email,
            },
          },
          now,
        );
        return enqueue(tx, this.#room, {
          incident: r,
          kpi,
          event: 'incident.escalated',
          recipients: steeringRecipients(agreement),
          now,
          chair: (({ name, email }) => ({ name, email }))(chairAt(agreement, now)),
        });
      });
    }
    return enqueued;
  }
}

/** Without SMTP or a webhook the notification is kept for the dashboard: the incident counts as notified. */
export async function markNotifiedIfKept(tx: ControlTx, id: string, kpi: string, now: Date): Promise<void> {
  if (!(await hasKeptMessage(tx, id))) return;
  if (await markIncidentNotified(tx, id, { notified_at: now }))
    await appendAuditIn(
      tx,
      {
        actor: 'alerts',
        partnerId: null,
        action: 'incident.notified',
        target: id,
        details: { channel: 'dashboard', kpi },
      },
      now,
    );
}

/** A resolution goes to the owners who were told of the incident, and to steering if it was escalated. */
export async function resolvedNotifications(
  tx: ControlTx,
  room: Room,
  kpi: Kpi,
  incident: IncidentRow,
  now: Date,
): Promise<number> {
  const recipients = ownerRecipients(kpi, incident.scope);
  if (incident.escalated_at) recipients.push(...steeringRecipients(room.agreement().agreement));
  return enqueue(tx, room, { incident, kpi, event: 'incident.resolved', recipients, now });
}
