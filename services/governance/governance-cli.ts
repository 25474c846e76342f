import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Config } from '../platform/config.js';
import { openControlDb } from '../platform/control-db.js';
import { StartupError } from '../platform/room.js';
import { api, remote, type Remote } from '../platform/room-client.js';
import { runningRoomPid } from '../platform/room-lock.js';
import { verifyAuditChain } from './audit-repository.js';
import { rotatePseudonymSecret } from './secret-rotation.js';
import type { AgreementChange } from './agreement-diff.js';
import type { ProposalView } from './proposal-service.js';
import type { TokenView } from './token-repository.js';

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

function printProposal(p: ProposalView): void {
  out(`proposal ${p.id}: ${p.state}${p.resultVersion ? ` (became version ${p.resultVersion})` : ''}`);
  out(
    `  changes version ${p.baseVersion}; proposed by ${p.proposedBy.partner} on ${p.createdAt}; expires ${p.expiresAt}`,
  );
  out(`  reason: ${p.reason}`);
  out(
    `  ${p.changes.length} change${p.changes.length === 1 ? '' : 's'}${p.loosensPrivacy ? ' — LOOSENS PRIVACY' : ''}:`,
  );
  for (const c of p.changes as AgreementChange[]) out(`    ${c.loosensPrivacy ? '!' : '-'} ${c.text}`);
  for (const w of p.widensTokens)
    out(`  ! token ${w.id} (${w.partner ?? '-'} ${w.role}, ${w.name}) would read more under this version`);
  out(
    `  decisions: ${p.decisions.map((d) => `${d.partner} ${d.decision}d${d.note ? ` (${d.note})` : ''}`).join(', ') || 'none'}`,
  );
  if (p.state === 'open') out(`  waiting for: ${p.waitingFor.join(', ')}`);
}

function printToken(t: TokenView): void {
  out(
    `${t.id}  ${t.role.padEnd(8)} ${t.state.padEnd(7)} ${t.name}${t.expiresAt ? `  expires ${t.expiresAt}` : ''}${t.replaces ? `  replaces ${t.replaces}` : ''}`,
  );
}

/** `parity agreement propose|approve|reject|show|versions`, `parity token list|issue|revoke|rotate`, `parity audit verify`. */
export function governanceCommands(p: Command, agreement: Command, token: Command, config: () => Config): void {
  remote(
    agreement
      .command('propose <file>')
      .description('propose a new agreement (YAML or JSON file) for every partner admin to approve'),
  )
    .requiredOption('--reason <text>', 'why the agreement should change')
    .option('--expires-in-days <n>', 'days until it expires unapproved', (v) => Number(v))
    .action(async (file: string, o: Remote & { reason: string; expiresInDays?: number }) => {
      const document = readFileSync(file, 'utf8');
      printProposal(
        await api<ProposalView>(o, 'POST', '/v1/agreement/proposals', {
          document,
          reason: o.reason,
          ...(o.expiresInDays !== undefined ? { expiresInDays: o.expiresInDays } : {}),
        }),
      );
    });
  remote(agreement.command('approve <id>').description('approve a proposal for your partner'))
    .option('--note <text>', 'a note kept with your approval')
    .action(async (id: string, o: Remote & { note?: string }) =>
      printProposal(
        await api<ProposalView>(
          o,
          'POST',
          `/v1/agreement/proposals/${encodeURIComponent(id)}/approve`,
          o.note ? { note: o.note } : {},
        ),
      ),
    );
  remote(agreement.command('reject <id>').description('reject a proposal for your partner'))
    .requiredOption('--reason <text>', 'why you reject it')
    .action(async (id: string, o: Remote & { reason: string }) =>
      printProposal(
        await api<ProposalView>(o, 'POST', `/v1/agreement/proposals/${encodeURIComponent(id)}/reject`, {
          reason: o.reason,
        }),
      ),
    );
  remote(
    agreement.command('show [id]').description('show a proposal and its diff (without an id: the recent proposals)'),
  ).action(async (id: string | undefined, o: Remote) => {
    if (id)
      return printProposal(await api<ProposalView>(o, 'GET', `/v1/agreement/proposals/${encodeURIComponent(id)}`));
    const { proposals } = await api<{ proposals: ProposalView[] }>(o, 'GET', '/v1/agreement/proposals');
    if (proposals.length === 0) out('no proposals');
    for (const pr of proposals) printProposal(pr);
  });
  remote(agreement.command('versions').description('list the agreement versions kept')).action(async (o: Remote) => {
    const { versions } = await api<{
      versions: { version: number; digest: string; activatedAt: string | null; source: string }[];
    }>(o, 'GET', '/v1/agreement/versions');
    for (const v of versions) out(`v${v.version}  ${v.activatedAt ?? '-'}  ${v.digest.slice(0, 16)}  ${v.source}`);
  });

  remote(
    token.command('list').description("list your partner's tokens (a partner admin, through the running room)"),
  ).action(async (o: Remote) => {
    for (const t of (await api<{ tokens: TokenView[] }>(o, 'GET', '/v1/tokens')).tokens) printToken(t);
  });
  remote(
    token
      .command('issue')
      .description('issue a token for your partner through the running room (a partner admin); printed once'),
  )
    .requiredOption('--role <role>', 'ingest, analyst, owner or admin')
    .requiredOption('--name <name>', "the user's e-mail or the system's name")
    .option('--expires <iso>', 'expiry date-time')
    .action(async (o: Remote & { role: string; name: string; expires?: string }) => {
      const t = await api<TokenView & { token: string }>(o, 'POST', '/v1/tokens', {
        role: o.role,
        name: o.name,
        ...(o.expires ? { expiresAt: o.expires } : {}),
      });
      err(`issued ${t.id} (${t.role} of ${t.partner}); it is shown once:`);
      out(t.token);
    });
  remote(token.command('revoke <id>').description("revoke one of your partner's tokens at once")).action(
    async (id: string, o: Remote) =>
      printToken(await api<TokenView>(o, 'DELETE', `/v1/tokens/${encodeURIComponent(id)}`)),
  );
  remote(token.command('rotate <id>').description('replace a token; the old one keeps working for --overlap-hours'))
    .option('--overlap-hours <h>', 'hours both tokens work (default 24)', (v) => Number(v))
    .action(async (id: string, o: Remote & { overlapHours?: number }) => {
      const t = await api<TokenView & { token: string; previous: TokenView }>(
        o,
        'POST',
        `/v1/tokens/${encodeURIComponent(id)}/rotate`,
        o.overlapHours !== undefined ? { overlapHours: o.overlapHours } : {},
      );
      err(
        `issued ${t.id} replacing ${t.previous.id}, which works until ${t.previous.expiresAt}; the new token is shown once:`,
      );
      out(t.token);
    });

  const secret = p.command('secret').description('the pseudonymisation secret');
  secret
    .command('rotate')
    .description(
      'rotate the pseudonymisation secret on a stopped room: re-key every stored pseudonym under a new key; subjects keep one pseudonym across it',
    )
    .action(async () => {
      const cfg = config();
      const pid = runningRoomPid(cfg.dataDir);
      if (pid)
        throw new StartupError(
          `the room (pid ${pid}) is running on ${cfg.dataDir}: stop it to rotate the secret (no batch may land while pseudonyms are re-keyed)`,
        );
      let last = 0;
      const r = await rotatePseudonymSecret(cfg, (done) => {
        if (done - last >= 100_000 || last === 0) err(`re-keying pseudonyms: ${done.toLocaleString('en')}…`);
        last = done;
      });
      out(
        `rotated: generation ${r.generation}; ${r.pseudonyms.toLocaleString('en')} pseudonyms re-keyed in ${r.points.toLocaleString('en')} points; the new key is in ${cfg.dataDir}/pseudonym-keys — back it up with the data directory`,
      );
    });

  const audit = p.command('audit').description('the hash-chained audit log');
  remote(
    audit
      .command('verify')
      .description(
        'recompute the audit hash chain and report the first broken link (directly from the control database; through the API when an embedded room is running)',
      ),
  ).action(async (o: Remote) => {
    const cfg = config();
    const pid = cfg.databaseUrl ? undefined : runningRoomPid(cfg.dataDir);
    let r: Awaited<ReturnType<typeof verifyAuditChain>>;
    if (pid) {
      if (!o.token)
        throw new StartupError(
          `the room (pid ${pid}) owns ${cfg.dataDir}: pass --token (a user token) to verify through its API, or stop it`,
        );
      r = await api(o, 'GET', '/v1/audit/verify');
      err(`verified through the running room at ${o.url}`);
    } else {
      const h = await openControlDb({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir });
      try {
        r = await verifyAuditChain(h.db);
      } finally {
        await h.close();
      }
      err(`verified directly in ${cfg.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : cfg.dataDir}`);
    }
    if (r.ok) out(`audit log intact: ${r.entries} entries verified`);
    else {
      out(`audit log BROKEN at entry ${r.brokenAt}: ${r.reason} (${r.entries - 1} entries before it verified)`);
      process.exitCode = 2;
    }
  });
}
