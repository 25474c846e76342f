import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import YAML from 'yaml';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { runParity } from '../helpers/spawn-room.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

/** `parity <args>` against this suite's room. */
const parity = (args: string[], env: Record<string, string> = {}) =>
  runParity(args, { DATABASE_URL: '', PARITY_URL: t.url, ...env });

let t: TestRoom;
let dir: string;
beforeAll(async () => {
  t = await startTestRoom();
  dir = mkdtempSync(join(tmpdir(), 'parity-gov-cli-'));
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('parity agreement propose | show | approve | reject (through the running room)', () => {
  it('a proposal from one admin waits for the other; the diff is printed in plain terms; the last approval activates it', async () => {
    const doc = YAML.parse(readFileSync(demoAgreementFile(), 'utf8'));
    doc.kpis.find((k: any) => k.id === 'lead_time').band.upper = 60;
    doc.defaults.minGroupSize = 3;
    const file = join(dir, 'v2.yaml');
    writeFileSync(file, YAML.stringify(doc));
    const acme = await t.token('acme', 'admin');
    const globex = await t.token('globex', 'admin');

    const proposed = await parity(['agreement', 'propose', file, '--reason', 'faster deliveries', '--token', acme]);
    expect(proposed.code, proposed.stderr).toBe(0);
    const id = /proposal (prp_[\w-]+): open/.exec(proposed.stdout)?.[1];
    expect(id).toBeDefined();
    expect(proposed.stdout).toContain('- KPI lead_time: band.upper 72 → 60');
    expect(proposed.stdout).toContain('! defaults.minGroupSize: 5 → 3 (loosens privacy: a lower minimum group size');
    expect(proposed.stdout).toContain('LOOSENS PRIVACY');
    expect(proposed.stdout).toContain('waiting for: globex');

    const again = await parity(['agreement', 'approve', id!, '--token', acme]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/409 partner acme already decided/);

    const shown = await parity(['agreement', 'show', '--token', globex]);
    expect(shown.stdout).toContain(`proposal ${id}: open`);
    const approved = await parity(['agreement', 'approve', id!, '--note', 'ok', '--token', globex]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain(`proposal ${id}: active (became version 2)`);
    const versions = await parity(['agreement', 'versions', '--token', globex]);
    expect(versions.stdout).toMatch(/^v2 .*proposal prp_/m);
    expect(t.room.agreement().version).toBe(2);

    const noToken = await parity(['agreement', 'show'], { PARITY_TOKEN: '' });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('--token or PARITY_TOKEN is required');
  });
});

describe('parity token issue | list | rotate | revoke (a partner admin, through the running room)', () => {
  it('issues a token printed once, rotates it with an overlap and revokes it', async () => {
    const admin = await t.token('globex', 'admin');
    const issued = await parity([
      'token',
      'issue',
      '--role',
      'analyst',
      '--name',
      'ana@globex.example',
      '--token',
      admin,
    ]);
    expect(issued.code, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    expect(token).toMatch(/^pty_/);
    const id = /issued (tok_[\w-]+)/.exec(issued.stderr)![1]!;
    const listed = await parity(['token', 'list', '--token', admin]);
    expect(listed.stdout).toMatch(new RegExp(`${id}\\s+analyst\\s+live\\s+ana@globex.example`));
    expect(listed.stdout).not.toContain(token);
    const rotated = await parity(['token', 'rotate', id, '--overlap-hours', '1', '--token', admin]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toContain(`replacing ${id}`);
    const revoked = await parity(['token', 'revoke', id, '--token', admin]);
    expect(revoked.stdout).toMatch(new RegExp(`${id}\\s+analyst\\s+revoked`));
    expect((await fetch(`${t.url}/v1/kpis`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    expect(
      (await fetch(`${t.url}/v1/kpis`, { headers: { authorization: `Bearer ${rotated.stdout.trim()}` } })).status,
    ).toBe(200);
  });
});

describe('parity audit verify', () => {
  it.skipIf(!inject('pgAdminUrl'))('finds a tampered row in PostgreSQL at that row', async () => {
    const env = { DATABASE_URL: t.databaseUrl!, PARITY_DATA_DIR: t.dataDir };
    const intact = await parity(['audit', 'verify'], env);
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.stdout).toMatch(/audit log intact: \d+ entries verified/);
    const victim = await t.room.control.db
      .selectFrom('audit_log')
      .select('seq')
      .where('action', '=', 'token.rotated')
      .executeTakeFirstOrThrow();
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    await sql`UPDATE audit_log SET details = jsonb_set(details, '{oldValidUntil}', '"2099-01-01T00:00:00.000Z"') WHERE seq = ${victim.seq}`.execute(
      t.room.control.db,
    );
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    const broken = await parity(['audit', 'verify'], env);
    expect(broken.code).toBe(2);
    expect(broken.stdout).toContain(`audit log BROKEN at entry ${victim.seq}: the entry does not match its hash`);
  });
});
