import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import YAML from 'yaml';
import type { DrillSheet } from '../alerts/alert-schemas.js';
import type { ActionView } from '../feedback/feedback-schemas.js';
import { StartupError } from '../platform/room.js';
import { api, remote, type Remote } from '../platform/room-client.js';
import type { Committee, DecisionView } from './steering-schemas.js';

const out = (s: string) => process.stdout.write(s + '\n');

function printDecision(d: DecisionView): void {
  out(`D-${d.number} ${d.id}  ${d.date}  ${d.title}${d.supersededBy ? `  (superseded by ${d.supersededBy})` : ''}`);
  out(`  decision: ${d.decision}`);
  out(`  by: ${d.decisionMakers.map((m) => m.name).join(', ')}; recorded by ${d.recordedBy} at ${d.recordedAt}`);
  if (d.supersedes) out(`  supersedes: ${d.supersedes}`);
  if (d.incidents.length) out(`  incidents: ${d.incidents.join(', ')}`);
  if (d.agreementVersions.length) out(`  agreement versions: ${d.agreementVersions.map((v) => `v${v}`).join(', ')}`);
}

const secs = (s: number | null) => (s === null ? '—' : `${Math.round(s)} s`);

function printDrill(d: DrillSheet): void {
  out(`${d.id}  DRILL  ${d.state.padEnd(12)} ${d.kpi.id} (${d.scope})  started ${d.startedAt} by ${d.startedBy}`);
  out(
    `  acknowledge by ${d.ackDueAt}; notified after ${secs(d.result.notifySeconds)}, acknowledged after ${secs(d.result.acknowledgeSeconds)}${d.acknowledgedBy ? ` (${d.acknowledgedBy})` : ''}, escalated after ${secs(d.result.escalateSeconds)}${d.chair ? ` to the committee (chair ${d.chair.name})` : ''}`,
  );
}

function printAction(a: ActionView): void {
  out(
    `${a.id}  ${a.state}${a.overdue ? ' OVERDUE' : ''}  due ${a.due}  ${a.owner.name}${a.owner.email ? ` <${a.owner.email}>` : ''}  ${a.description}  [${a.source}]`,
  );
}

/**
 * `parity steering show|decisions|decide`, `parity drill start|list|ack|end`, `parity actions
 * list|done`: what a committee member, an owner or an admin scripts, through the running room with
 * their own token.
 */
export function steeringCommands(p: Command): void {
  const steering = p.command('steering').description('the steering committee and its decision records');
  remote(steering.command('show').description('the members and the chair of today')).action(async (o: Remote) => {
    const c = await api<Committee>(o, 'GET', '/v1/steering');
    out(
      `chair: ${c.chair.name} <${c.chair.email}>${c.chair.since ? ` since ${c.chair.since}, until ${c.chair.until}` : ''}${c.chair.next ? `; next: ${c.chair.next.name}` : ''}`,
    );
    for (const m of c.members) out(`  ${m.chair ? '*' : '-'} ${m.name} <${m.email}>`);
  });
  remote(steering.command('decisions').description('the decision log, newest first')).action(async (o: Remote) => {
    const { decisions } = await api<{ decisions: DecisionView[] }>(o, 'GET', '/v1/decisions');
    if (!decisions.length) out('no decisions recorded');
    for (const d of decisions) printDecision(d);
  });
  remote(
    steering
      .command('decide <file>')
      .description(
        'record a decision (a steering member): a YAML or JSON file with title, context, options, decision, decisionMakers, date, consequences and optionally incidents, agreementVersions',
      ),
  )
    .option('--supersedes <id>', 'the earlier record this one replaces (records are never edited)')
    .action(async (file: string, o: Remote & { supersedes?: string }) => {
      let body: Record<string, unknown>;
      try {
        body = YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new StartupError(`cannot read ${file}: ${(e as Error).message}`);
      }
      if (!body || typeof body !== 'object' || Array.isArray(body))
        throw new StartupError(`${file} is not a decision record (expected a mapping of its fields)`);
      printDecision(
        await api<DecisionView>(o, 'POST', '/v1/decisions', {
          ...body,
          ...(o.supersedes ? { supersedes: o.supersedes } : {}),
        }),
      );
    });

  const drill = p.command('drill').description('escalation drills: the real notification chain, marked DRILL');
  remote(drill.command('start <kpi>').description('start a drill on a KPI (a steering member): its owners are told'))
    .option('--scope <scope>', "'combined' or a partner's id", 'combined')
    .option('--ack-within <duration>', "acknowledgement deadline, PT1M to P7D (default: the KPI's ackWithin)")
    .action(async (kpi: string, o: Remote & { scope: string; ackWithin?: string }) =>
      printDrill(
        await api<DrillSheet>(o, 'POST', '/v1/drills', {
          kpi,
          scope: o.scope,
          ...(o.ackWithin ? { ackWithin: o.ackWithin } : {}),
        }),
      ),
    );
  remote(drill.command('list').description('drills and their results, newest first')).action(async (o: Remote) => {
    const { drills } = await api<{ drills: DrillSheet[] }>(o, 'GET', '/v1/drills');
    if (!drills.length) out('no drills yet');
    for (const d of drills) printDrill(d);
  });
  remote(drill.command('ack <id>').description('acknowledge a drill (its owner): it ends, its times recorded')).action(
    async (id: string, o: Remote) =>
      printDrill(await api<DrillSheet>(o, 'POST', `/v1/drills/${encodeURIComponent(id)}/ack`)),
  );
  remote(drill.command('end <id>').description('end a drill without acknowledgement (a steering member)')).action(
    async (id: string, o: Remote) =>
      printDrill(await api<DrillSheet>(o, 'POST', `/v1/drills/${encodeURIComponent(id)}/end`)),
  );

  const actions = p.command('actions').description("the action tracker: retrospectives' and incidents' actions");
  remote(actions.command('list').description('tracked actions'))
    .option('--state <state>', 'open, done or overdue')
    .action(async (o: Remote & { state?: string }) => {
      const q = o.state ? `?state=${encodeURIComponent(o.state)}` : '';
      const { actions: list } = await api<{ actions: ActionView[] }>(o, 'GET', `/v1/actions${q}`);
      if (!list.length) out('no actions');
      for (const a of list) printAction(a);
    });
  remote(
    actions.command('done <id>').description('mark an action done (its owner, steering or its partner admin)'),
  ).action(async (id: string, o: Remote) =>
    printAction(await api<ActionView>(o, 'POST', `/v1/actions/${encodeURIComponent(id)}/done`)),
  );
}
