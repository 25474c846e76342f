import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SingleBar, Presets } from 'cli-progress';
import { Command, InvalidArgumentError } from 'commander';
import pino from 'pino';
import YAML from 'yaml';
import { agreementJsonSchema, loadAgreementFile } from '../services/platform/agreement-schema.js';
import { createToken, roles, type Role } from '../services/governance/token-repository.js';
import { findPartnerById } from '../services/governance/agreement-repository.js';
import { AuditChain } from '../services/governance/audit-repository.js';
import { governanceCommands } from '../services/governance/governance-cli.js';
import { steeringCommands } from '../services/steering/steering-cli.js';
import { pushFile } from '../services/ingest/push-client.js';
import {
  ConfigError,
  DUCKDB_POOL_FLOOR_MB,
  duckdbBytes,
  loadConfig,
  processMemoryHint,
  type Config,
} from '../services/platform/config.js';
import { openControlDb } from '../services/platform/control-db.js';
import {
  createDemoInvitations,
  createDemoTokens,
  demoFirstVersion,
  demoHistoryStart,
  seedDemoFeedback,
  seedDemoPoints,
  seedDemoSteering,
} from './demo.js';
import { migrateControlDb } from '../services/platform/migrate.js';
import { StartupError } from '../services/platform/room.js';
import { openRoom } from './open-room.js';
import { serve } from './server.js';
import { runningRoomPid } from '../services/platform/room-lock.js';
import { loggerOptions } from '../services/platform/logger.js';
import { demoAgreementFile } from '../services/platform/paths.js';

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

function config(): Config {
  return loadConfig(process.env);
}

/** The environment without its empty values (loadConfig treats those as unset). */
function withoutEmpty(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
}

/** Refuses to open an embedded data directory another process is serving. */
function assertStoppedOrShared(cfg: Config, what: string): void {
  const pid = runningRoomPid(cfg.dataDir);
  if (pid && !cfg.databaseUrl) {
    throw new StartupError(
      `the room (pid ${pid}) is running on ${cfg.dataDir} and owns its embedded database; stop it to ${what}, or use the room's HTTP API with an admin token`,
    );
  }
}

/** The demo's memory budget unless PARITY_MEMORY_LIMIT says otherwise: a laptop's, not a server's. */
const DEMO_MEMORY_LIMIT = '512MB';

async function runServe(withDemo: boolean): Promise<void> {
  let invitations: Awaited<ReturnType<typeof createDemoInvitations>> = [];
  const cfg = withDemo
    ? loadConfig({ PARITY_MEMORY_LIMIT: DEMO_MEMORY_LIMIT, ...withoutEmpty(process.env) })
    : config();
  const log = pino(loggerOptions(cfg.logLevel));
  // The demo's room starts on its first version and, once its history has landed, its partners
  // co-sign the file's agreement (seedDemoPoints): the dashboard shows an agreement change.
  const demoFile = withDemo && cfg.agreementFile === undefined ? demoAgreementFile() : undefined;
  const room = await openRoom(cfg, {
    ...(withDemo ? { defaultAgreementFile: demoAgreementFile() } : {}),
    ...(demoFile
      ? {
          firstVersion: {
            of: demoFirstVersion,
            source: 'the first version: lead time by week and month',
            at: demoHistoryStart(new Date()),
          },
        }
      : {}),
    log,
  });
  try {
    if (withDemo) {
      const tokens = await createDemoTokens(room);
      const bar = process.stderr.isTTY
        ? new SingleBar(
            { format: 'seeding demo points {partner} |{bar}| {value} points', hideCursor: true },
            Presets.shades_classic,
          )
        : undefined;
      let started = false;
      let lastLogged = 0;
      // The partners' nights arrive interleaved: the bar and the log count all partners' points.
      const perPartner = new Map<string, number>();
      const seeded = await seedDemoPoints(room, {
        ...(demoFile ? { amend: YAML.parse(readFileSync(demoFile, 'utf8')) as unknown } : {}),
        onProgress: (partner, n) => {
          perPartner.set(partner, n);
          const all = [...perPartner.values()].reduce((a, b) => a + b, 0);
          if (bar) {
            if (!started) bar.start(1_000_000, 0, { partner });
            started = true;
            bar.update(all, { partner });
          } else if (all - lastLogged >= 200_000) {
            lastLogged = all;
            err(`seeding demo points: ${all.toLocaleString('en')} (now ${partner})`);
          }
        },
      }); // through its own lander, closed when done: the served app lands through another
      bar?.stop();
      if (seeded) {
        await seedDemoFeedback(room);
        await seedDemoSteering(room);
      }
      if (seeded)
        out(
          `seeded ${seeded.toLocaleString('en')} demo points (two years, ${room.agreement().agreement.partners.length} partners)`,
        );
      invitations = await createDemoInvitations(room);
      if (tokens.length) {
        out('\nDemo tokens for systems and the CLI (shown once; only their SHA-256 is kept):');
        for (const t of tokens)
          out(
            `  ${(t.partner ?? '-').padEnd(8)} ${t.role.padEnd(9)} ${t.token}${t.role === 'owner' ? `  ${t.name}` : ''}`,
          );
        out('');
      } else {
        out(
          'demo tokens were printed at the first start; make new ones with `parity token create --partner P --role R`',
        );
      }
    }
    await serve(room, {
      onListening: (url) => {
        out(
          `Parity room serving ${room.agreement().agreement.partnership.title} on ${url} (dashboard: ${url}/, API docs: ${url}/docs)`,
        );
        // One-time sign-in links for the demo's people, new at every start.
        if (invitations.length) out('  sign in (one-time links, valid 24 h; new ones at every start):');
        for (const i of invitations)
          out(`    ${i.partner.padEnd(8)} ${i.role.padEnd(9)} ${i.email.padEnd(24)} ${url}${i.path}`);
        if (cfg.memoryLimit !== null)
          out(
            `  memory budget ${Math.round(cfg.memoryLimit / 1024 ** 2)} MiB (PARITY_MEMORY_LIMIT): DuckDB ${cfg.duckdbMemory} on ${cfg.duckdbThreads} thread${cfg.duckdbThreads === 1 ? '' : 's'}, ${cfg.ingestConcurrency} batch${cfg.ingestConcurrency === 1 ? '' : 'es'} in flight, ${cfg.workerHeap.oldMb} MB per ingest worker`,
          );
        // Only for a budget the operator chose: the demo's own default is a laptop's, not a limit.
        const hint = process.env['PARITY_MEMORY_LIMIT']
          ? processMemoryHint(cfg.memoryLimit, process.env, process.execArgv)
          : undefined;
        if (hint) out(`  hint: ${hint}`);
        if (duckdbBytes(cfg.duckdbMemory) < DUCKDB_POOL_FLOOR_MB * 1e6)
          out(
            `  warning: DuckDB's pool (PARITY_DUCKDB_MEMORY=${cfg.duckdbMemory}) is below ${DUCKDB_POOL_FLOOR_MB}MB: a large batch's release step and rollup refresh can run out of memory (README, Configuration)`,
          );
      },
    });
  } catch (e) {
    await room.close().catch(() => undefined);
    throw e;
  }
}

async function runMigrate(): Promise<void> {
  const cfg = config();
  assertStoppedOrShared(cfg, 'migrate it (a running room applies migrations at start)');
  const h = await openControlDb({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir });
  try {
    const applied = await migrateControlDb(h.db);
    out(
      `${h.kind === 'postgres' ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${cfg.dataDir}`}: ${applied.length ? `applied ${applied.join(', ')}` : 'already up to date'}`,
    );
  } finally {
    await h.close();
  }
}

async function runTokenCreate(o: { partner?: string; role: Role; name?: string; expires?: string }): Promise<void> {
  const cfg = config();
  assertStoppedOrShared(cfg, 'create a token directly');
  const h = await openControlDb({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir });
  try {
    await migrateControlDb(h.db);
    if (o.role === 'operator' && o.partner)
      throw new StartupError('--partner: an operator token belongs to no partner');
    if (o.role !== 'operator') {
      if (!o.partner) throw new StartupError('--partner is required for this role');
      const p = await findPartnerById(h.db, o.partner);
      if (!p) throw new StartupError(`--partner: no partner ${o.partner} in this room's agreement`);
    }
    const expiresAt = o.expires ? new Date(o.expires) : null;
    if (expiresAt && Number.isNaN(expiresAt.getTime()))
      throw new StartupError('--expires: expected an ISO-8601 date-time');
    const name = o.name ?? `${o.partner ?? 'operator'} ${o.role}`;
    const { token, id } = await createToken(
      h.db,
      { partnerId: o.partner ?? null, role: o.role, name, expiresAt },
      new Date(),
    );
    await new AuditChain(h.db).append(
      {
        actor: 'cli',
        partnerId: o.partner ?? null,
        action: 'token.created',
        target: id,
        details: { role: o.role, name },
      },
      new Date(),
    );
    err(
      `created token ${id} (${o.role}${o.partner ? ` of ${o.partner}` : ''}) directly in ${h.kind === 'postgres' ? 'PostgreSQL' : cfg.dataDir}; it is shown once:`,
    );
    out(token);
  } finally {
    await h.close();
  }
}

function runValidate(file: string): number {
  const r = loadAgreementFile(file);
  if (r.ok) {
    out(`${file}: valid (${r.agreement.partners.length} partners, ${r.agreement.kpis.length} KPIs)`);
    return 0;
  }
  for (const p of r.problems) err(`${p.path}: ${p.message}`);
  err(`${file}: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`);
  return 1;
}

async function runPush(
  file: string,
  o: { url: string; token?: string; type?: string; key?: string; partial?: boolean },
): Promise<number> {
  if (!o.token) throw new StartupError('--token or PARITY_TOKEN is required (a partner ingest token)');
  const bar = process.stderr.isTTY
    ? new SingleBar(
        { format: `pushing ${file} |{bar}| {percentage}% {value}/{total} bytes`, hideCursor: true },
        Presets.shades_classic,
      )
    : undefined;
  let lastPct = -1;
  const result = await pushFile({
    url: o.url,
    token: o.token,
    file,
    ...(o.type ? { contentType: o.type } : {}),
    ...(o.key ? { idempotencyKey: o.key } : {}),
    partial: o.partial ?? false,
    onProgress: (sent, total) => {
      if (bar) {
        if (lastPct < 0) bar.start(total, 0);
        bar.update(sent);
        lastPct = 0;
      } else {
        const pct = total ? Math.floor((sent / total) * 10) * 10 : 100;
        if (pct !== lastPct) err(`pushing ${file}: ${pct}% (${sent}/${total} bytes)`);
        lastPct = pct;
      }
    },
    onRetry: (attempt, reason, delay) => {
      bar?.stop();
      lastPct = -1;
      err(
        `attempt ${attempt} failed (${reason}); retrying in ${(delay / 1000).toFixed(1)} s with the same Idempotency-Key`,
      );
    },
  });
  bar?.stop();
  if (result.ok) {
    const r = result.receipt;
    out(
      `${result.status === 200 ? 'already landed (same Idempotency-Key and body)' : 'landed'}: batch ${String(r['batchId'])}, snapshot ${String(r['snapshot'])}, ${String(r['accepted'])} accepted, ${String(r['rejected'])} rejected, checksum ${String(r['checksum'])}`,
    );
    for (const e of (r['errors'] as { row?: number; field: string; message: string }[] | undefined) ?? [])
      err(`  row ${e.row ?? '?'}: ${e.field}: ${e.message}`);
    return 0;
  }
  err(`push failed after ${result.attempts} attempt${result.attempts === 1 ? '' : 's'}: ${result.message}`);
  const errors = (result.problem?.['errors'] as { row?: number; field: string; message: string }[] | undefined) ?? [];
  for (const e of errors.slice(0, 20)) err(`  row ${e.row ?? '?'}: ${e.field}: ${e.message}`);
  if (errors.length > 20) err(`  … and ${errors.length - 20} more in the response`);
  return 1;
}

/** `parity review send`: asks the room to send a closed month's review again (POST /v1/reviews/{month}/send). */
async function runReviewSend(o: { month: string; url: string; token?: string }): Promise<number> {
  if (!o.token) throw new StartupError('--token or PARITY_TOKEN is required (a steering or partner admin token)');
  let res: Response;
  try {
    res = await fetch(`${o.url.replace(/\/$/, '')}/v1/reviews/${encodeURIComponent(o.month)}/send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
  } catch (e) {
    err(`could not reach the room at ${o.url}: ${(e as Error).message}`);
    return 1;
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status === 202) {
    out(
      `sent the review of ${String(body['month'])} (digest ${String(body['digest'])}): ${String(body['messages'])} messages`,
    );
    return 0;
  }
  err(
    `the room answered ${res.status}: ${String(body['detail'] ?? body['title'] ?? '')}${body['field'] ? ` (${String(body['field'])})` : ''}`,
  );
  return 1;
}

function roleArg(v: string): Role {
  if (!(roles as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${roles.join(', ')}`);
  return v as Role;
}

export function program(): Command {
  const p = new Command('parity')
    .description('Parity: a neutral data clean room with a shared KPI dashboard')
    .showHelpAfterError();
  p.command('serve')
    .description('serve the room (PARITY_AGREEMENT names the agreement on first start)')
    .action(() => runServe(false));
  p.command('demo')
    .description('serve the room with the demo partnership: demo agreement, tokens and two years of points')
    .action(() => runServe(true));
  p.command('migrate').description('apply control-plane migrations').action(runMigrate);
  const token = p.command('token').description('manage tokens');
  token
    .command('create')
    .description('create a token and print it once')
    .option('--partner <id>', 'the partner the token acts for (not for operator)')
    .requiredOption('--role <role>', `one of ${roles.join(', ')}`, roleArg)
    .option('--name <name>', 'a name to recognise it by')
    .option('--expires <iso>', 'expiry date-time')
    .action(runTokenCreate);
  const agreement = p.command('agreement').description('agreement files');
  agreement
    .command('validate <file>')
    .description('check an agreement file; print every problem with its path')
    .action((file: string) => {
      process.exitCode = runValidate(file);
    });
  agreement
    .command('schema')
    .description('print the JSON Schema of the agreement file (for editors)')
    .option('-o, --output <file>', 'write to a file')
    .action((o: { output?: string }) => {
      const text = JSON.stringify(agreementJsonSchema(), null, 2) + '\n';
      if (o.output) writeFileSync(o.output, text);
      else process.stdout.write(text);
    });
  p.command('push <file>')
    .description(
      'push a CSV, NDJSON, JSON or Arrow file of points to a room (streams; retries with the same Idempotency-Key)',
    )
    .option('--url <url>', 'the room', process.env['PARITY_URL'] ?? 'http://localhost:8080')
    .option('--token <token>', 'a partner ingest token (default: PARITY_TOKEN)', process.env['PARITY_TOKEN'])
    .option('--type <mime>', 'content type, when the file extension does not say')
    .option('--key <key>', 'Idempotency-Key (default: derived from the file content)')
    .option('--partial', 'land the valid points even if some are invalid')
    .action(
      async (file: string, o: { url: string; token?: string; type?: string; key?: string; partial?: boolean }) => {
        process.exitCode = await runPush(file, o);
      },
    );
  p.command('review')
    .description('monthly reviews')
    .command('send')
    .description("send a closed month's review again by e-mail to the partners' contacts and the steering committee")
    .requiredOption('--month <YYYY-MM>', 'the month')
    .option('--url <url>', 'the room', process.env['PARITY_URL'] ?? 'http://localhost:8080')
    .option('--token <token>', 'a steering or partner admin token (default: PARITY_TOKEN)', process.env['PARITY_TOKEN'])
    .action(async (o: { month: string; url: string; token?: string }) => {
      process.exitCode = await runReviewSend(o);
    });
  governanceCommands(p, agreement, token, config);
  steeringCommands(p);
  return p;
}

/** The `parity` binary. */
export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof StartupError) {
      err(`parity: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main(process.argv);
