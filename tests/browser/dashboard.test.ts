import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { seedDemoPoints } from '../../assembly/demo.js';
import { artifactDir, launchChromium } from '../helpers/browser.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

// The demo room (nine months of its points, five KPIs, two partners) on a test clock, and real Chromium.
let t: TestRoom;
let browser: Browser;
// Two partner intranets on other origins: the room lets the first embed its components, not the second.
let intranetPage = '';
const intranets = [
  createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(intranetPage)),
  createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(intranetPage)),
];
const origins: string[] = [];
const tokens: Record<string, string> = {};
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

beforeAll(async () => {
  browser = await launchChromium();
  for (const server of intranets) {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origins.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  t = await startTestRoom({ env: { PARITY_EMBED_ORIGINS: origins[0]! } });
  // Nine months of the demo's points, not two years: what the page shows needs no more, and
  // seeding is most of this suite's time on a busy laptop.
  await seedDemoPoints(t.room, {
    from: new Date('2026-02-23T00:00:00Z'),
    to: new Date('2026-11-23T00:00:00Z'),
  });
  // A crafted breach: acme's lead time in the last closed week (from 2026-11-16) far above 72 h.
  const crafted = Array.from({ length: 3000 }, (_, i) =>
    JSON.stringify({
      kpi: 'lead_time',
      at: `2026-11-${16 + (i % 6)}T${String(6 + (i % 12)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00Z`,
      value: 400,
      subject: `CRAFT-${i}`,
      dims: { region: 'north' },
    }),
  ).join('\n');
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token('acme', 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: crafted,
  });
  expect(res.status, await res.clone().text()).toBe(202);
  await t.app.reader.rollups?.loop.idle();
  await t.app.alerts?.engine.idle();
  const named = async (key: string, partner: string, role: 'analyst' | 'owner' | 'steering', name: string) =>
    (tokens[key] = (await createToken(t.room.control.db, { partnerId: partner, role, name }, t.clock.now())).token);
  await named('acme', 'acme', 'analyst', 'acme analyst');
  await named('globex', 'globex', 'analyst', 'globex analyst');
  await named('ana', 'acme', 'owner', 'ana@acme.example');
  await named('gus', 'globex', 'owner', 'gus@globex.example');
}, timeout(240_000));
afterAll(async () => {
  for (const server of intranets) server.close();
  await browser?.close();
  await t?.close();
});

interface Session {
  page: Page;
  bodies: string[];
  errors: string[];
}

/** A fresh browser context signed in through the demo's sign-in link; every response body and console error kept. */
async function signIn(token: string, width = 1280): Promise<Session> {
  const context = await browser.newContext({ viewport: { width, height: 900 }, locale: 'en-GB' });
  const page = await context.newPage();
  const s: Session = { page, bodies: [], errors: [] };
  page.on('console', (m) => m.type() === 'error' && s.errors.push(m.text()));
  page.on('pageerror', (e) => s.errors.push(e.message));
  page.on('response', async (r) => {
    // What the room answered the page: the API's responses (the bundle itself is code, not data).
    if (new URL(r.url()).pathname.startsWith('/v1/')) s.bodies.push(await r.text().catch(() => ''));
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(t.url) && !r.url().startsWith('data:'))
      s.errors.push(`request to another host: ${r.url()}`);
  });
  await startSession(page, token);
  await page.goto(`${t.url}/`);
  await page.waitForSelector('parity-kpi-tile [data-testid="value"]');
  return s;
}

/** Signs the browser context in with a token, as the sign-in form does (the session cookie lands in the context). */
async function startSession(page: Page, token: string): Promise<void> {
  const res = await page.request.post(`${t.url}/v1/session`, { data: { token } });
  expect(res.status(), await res.text()).toBe(200);
}

/** axe-core's serious and critical WCAG 2 A/AA violations on the page, each with the offending markup. */
async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: {
          run(
            ctx: unknown,
            opts: unknown,
          ): Promise<{ violations: { id: string; impact: string; nodes: { html: string }[] }[] }>;
        };
      }
    ).axe;
    return axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
  });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${JSON.stringify(v.nodes.map((n) => n.html.slice(0, 200)))}`);
}

/** Waits until the detail page's chart has a Vega view. */
async function chartDrawn(page: Page): Promise<void> {
  await page.waitForFunction(
    () =>
      (
        document.querySelector('parity-app')?.shadowRoot?.querySelector('parity-kpi-chart') as unknown as {
          view?: unknown;
        }
      )?.view !== undefined,
  );
}

async function api<T>(path: string, token: string): Promise<T> {
  const res = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status, path).toBe(200);
  return (await res.json()) as T;
}

interface Kpis {
  snapshot: number;
  digest: string;
  kpis: {
    id: string;
    unit: string;
    measure: string;
    scopes: { group: string | null; lastClosed: { value: number | null; suppressed: boolean } | null }[];
  }[];
}

async function tilesOf(page: Page): Promise<Record<string, string>> {
  return page.$$eval('parity-app', (apps) => {
    const root = apps[0]!.shadowRoot!;
    const out: Record<string, string> = {};
    for (const tile of root.querySelectorAll('parity-kpi-tile'))
      out[tile.getAttribute('data-kpi')!] = tile
        .shadowRoot!.querySelector('[data-testid="value"]')!
        .textContent!.replace(/\s+/g, ' ')
        .trim();
    return out;
  });
}

const inApp = (page: Page, selector: string) =>
  page.$eval('parity-app', (app, sel) => app.shadowRoot!.querySelector(sel)?.textContent?.trim() ?? null, selector);

describe('the joint dashboard in Chromium', () => {
  it('shows analysts of both partners the same tile values and digest, equal to the API', async () => {
    const a = await signIn(tokens['acme']!);
    const g = await signIn(tokens['globex']!);
    const apiKpis = await api<Kpis>('/v1/kpis', tokens['acme']!);
    const tilesA = await tilesOf(a.page);
    const tilesG = await tilesOf(g.page);
    expect(Object.keys(tilesA).sort()).toEqual(apiKpis.kpis.map((k) => k.id).sort());
    expect(tilesA).toEqual(tilesG);
    for (const k of apiKpis.kpis) {
      const last = k.scopes.find((s) => s.group === null)!.lastClosed;
      // A withheld figure shows as withheld, never as a number; a rate as a percentage (no unit
      // beside it), other figures with their unit, each equal to the API's value as rounded.
      if (last?.value == null) {
        expect(tilesA[k.id], k.id).toBe(`${last?.suppressed ? 'withheld' : '—'} ${k.unit}`);
        continue;
      }
      const m = /^([\d,]+(?:\.\d+)?)( %)? ?(.*)$/.exec(tilesA[k.id]!)!;
      const shown = Number(m[1]!.replaceAll(',', ''));
      const decimals = m[1]!.split('.')[1]?.length ?? 0;
      if (k.measure === 'rate') {
        expect([m[2], m[3]], k.id).toEqual([' %', '']);
        expect(Math.abs(shown - last.value * 100), k.id).toBeLessThanOrEqual(0.5 * 10 ** -decimals + 1e-9);
      } else {
        expect(m[3], k.id).toBe(k.unit);
        expect(Math.abs(shown - last.value), k.id).toBeLessThanOrEqual(0.5 * 10 ** -decimals + 1e-9);
      }
    }
    const digestA = await a.page.$eval('parity-app', (app) =>
      app.shadowRoot!.querySelector('[data-testid="digest"]')!.getAttribute('title'),
    );
    const digestG = await g.page.$eval('parity-app', (app) =>
      app.shadowRoot!.querySelector('[data-testid="digest"]')!.getAttribute('title'),
    );
    expect(digestA).toBe(apiKpis.digest);
    expect(digestG).toBe(apiKpis.digest);
    expect(await inApp(a.page, '[data-testid="snapshot"]')).toBe(String(apiKpis.snapshot));
    expect(await inApp(a.page, '[data-testid="who"]')).toMatch(/acme analyst \(analyst\) for Acme Logistics/);
    expect([...a.errors, ...g.errors]).toEqual([]);
    await a.page.context().close();
    await g.page.context().close();
  });

  it("shows a partner's breach on the overview while the combined figure is in band: every scope with its own state", async () => {
    const k = await api<{ kpis: { id: string; scopes: { group: string | null; state: string }[] }[] }>(
      '/v1/kpis',
      tokens['acme']!,
    );
    // Some KPI whose combined figure is in band while a partner's own is out of it.
    const mixed = k.kpis.find(
      (x) =>
        x.scopes.find((s) => s.group === null)?.state === 'ok' && x.scopes.some((s) => s.group && s.state === 'breach'),
    );
    expect(mixed, JSON.stringify(k.kpis.map((x) => [x.id, x.scopes.map((s) => [s.group, s.state])]))).toBeDefined();
    const breached = mixed!.scopes.find((s) => s.group && s.state === 'breach')!.group!;
    const s = await signIn(tokens['globex']!);
    const tile = await s.page.$eval(
      'parity-app',
      (app, id) => {
        const root = app.shadowRoot!.querySelector(`parity-kpi-tile[data-kpi="${id}"]`)!.shadowRoot!;
        return {
          head: root.querySelector('h3 .state')!.getAttribute('data-state'),
          headText: root.querySelector('h3 .state')!.textContent,
          scopes: [...root.querySelectorAll('[data-testid="scopes"] tr')].map((tr) => [
            tr.getAttribute('data-scope'),
            tr.getAttribute('data-state'),
            tr.querySelector('th')!.textContent!.trim(),
          ]),
          change: root.querySelector('[data-testid="change"]')!.textContent!.trim(),
          period: root.querySelector('[data-testid="period"]')!.textContent!.trim(),
        };
      },
      mixed!.id,
    );
    const name = breached === 'acme' ? 'Acme Logistics' : 'Globex Freight';
    expect(tile.head).toBe('breach');
    expect(tile.headText).toContain(name);
    expect(tile.scopes).toContainEqual([breached, 'breach', name]);
    // Period labels name the grain; the change is a percentage (or percentage points for a rate).
    expect(tile.period).toMatch(/^(week of|\d{1,2} \w+ \d{4}|\w+ \d{4})/);
    expect(tile.change).toMatch(/^[+−±][\d.,]+ (%|pp)$|^—$/);
    // The side-by-side table shows the same states.
    const side = await s.page.$eval(
      'parity-app',
      (app, [id, g]) =>
        app
          .shadowRoot!.querySelector('[data-testid="side-by-side"]')!
          .querySelector(`a[href="#/kpi/${id}"]`)!
          .closest('tr')!
          .querySelector(`td[data-scope="${g}"]`)!
          .getAttribute('data-state'),
      [mixed!.id, breached] as const,
    );
    expect(side).toBe('breach');
    // Rates read as percentages.
    const rate = await s.page.$eval(
      'parity-app',
      (app) =>
        app
          .shadowRoot!.querySelector('parity-kpi-tile[data-kpi="error_rate"]')!
          .shadowRoot!.querySelector('[data-testid="value"]')!.textContent,
    );
    expect(rate).toMatch(/%/);
    await s.page.context().close();
  });

  it('never shows a need-to-know KPI to a user without need-to-know, in the page or any response', async () => {
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/kpi/lead_time`);
    await a.page.waitForSelector('parity-app >> parity-kpi-chart');
    await a.page.goto(`${t.url}/#/incidents`);
    await a.page.waitForTimeout(300);
    const text = await a.page.$eval('parity-app', (app) => app.shadowRoot!.textContent ?? '');
    expect(text).not.toMatch(/compliance/i);
    expect(a.bodies.join('\n')).not.toMatch(/"compliance"|Data-protection compliance/);
    // The named owner sees it.
    const dpo = (
      await createToken(
        t.room.control.db,
        { partnerId: 'acme', role: 'owner', name: 'dpo@acme.example' },
        t.clock.now(),
      )
    ).token;
    const d = await signIn(dpo);
    expect(Object.keys(await tilesOf(d.page))).toContain('compliance');
    await a.page.context().close();
    await d.page.context().close();
  });

  it('draws the band and marks breaches on the detail chart; a suppressed period is a gap with its reason; the table has the API cells', async () => {
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/kpi/lead_time`);
    await chartDrawn(a.page);
    const chart = await a.page.$eval('parity-app', (app) => {
      const c = app.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
        view: { data(n: string): unknown[] };
        shadowRoot: ShadowRoot;
      };
      return {
        band: c.view.data('band').length,
        breaches: c.view.data('breaches').length,
        cells: c.view.data('cells').length,
        held: c.view.data('held') as { period: string; reason: string }[],
        svgPaths: c.shadowRoot.querySelectorAll('svg path').length,
      };
    });
    const breaches = await api<{ breaches: unknown[] }>('/v1/breaches?kpi=lead_time', tokens['acme']!);
    // Nine months seeded: a band for each of the ~38 weeks judged.
    expect(chart.band).toBeGreaterThan(30);
    expect(breaches.breaches.filter((b) => (b as { group: string | null }).group === null).length).toBeGreaterThan(0);
    expect(chart.breaches).toBe(breaches.breaches.filter((b) => (b as { group: string | null }).group === null).length);
    expect(chart.svgPaths).toBeGreaterThan(3);
    // The demo's late correction (two of globex's orders of Wednesday 2026-11-11) is below k: the
    // week holding it is drawn at its earlier value, ringed, and says why.
    expect(chart.held.map((h) => h.period)).toContain('2026-11-09');
    expect(chart.held[0]!.reason).toMatch(/The value of snapshot \d+: newer points wait/);
    // The table view holds the same cells as the API.
    const series = await api<{ cells: { period: string; group: string | null; value: number | null }[] }>(
      '/v1/kpis/lead_time/series?grain=week',
      tokens['acme']!,
    );
    await a.page.waitForFunction(
      () =>
        document.querySelector('parity-app')!.shadowRoot!.querySelectorAll('[data-testid="cells"] tbody tr').length > 0,
    );
    const rowsOf = () =>
      a.page.$eval('parity-app', (app) =>
        [...app.shadowRoot!.querySelectorAll('[data-testid="cells"] tbody tr')].map((r) => [
          r.getAttribute('data-period'),
          r.getAttribute('data-group'),
          r.getAttribute('data-value'),
        ]),
      );
    // Newest first, 25 a page: the pages together are the API's cells.
    const expected = series.cells
      .map((c) => [c.period, c.group ?? '', c.value === null ? '' : String(c.value)])
      .sort((x, y) => (x[0]! < y[0]! ? 1 : -1));
    const seen: (string | null)[][] = [];
    for (let page = 0; page < Math.ceil(expected.length / 25); page++) {
      const rows = await rowsOf();
      expect(rows.length).toBe(Math.min(25, expected.length - page * 25));
      seen.push(...rows);
      if ((page + 1) * 25 < expected.length) {
        const first = rows[0]![0];
        await a.page.click('parity-app >> [data-testid="pager"] >> button:has-text("Next")');
        await a.page.waitForFunction(
          (p) =>
            document
              .querySelector('parity-app')!
              .shadowRoot!.querySelector('[data-testid="cells"] tbody tr')!
              .getAttribute('data-period') !== p,
          first,
        );
      }
    }
    expect(seen).toEqual(expected);
    // Sorted by value, lowest first, at a click on its heading.
    await a.page.click('parity-app >> [data-testid="cells"] >> th.num >> button');
    await a.page.waitForFunction(() =>
      document
        .querySelector('parity-app')!
        .shadowRoot!.querySelector('[data-testid="cells"] th[aria-sort="ascending"]'),
    );
    const byValue = (await rowsOf()).map((r) => Number(r[2]));
    expect(byValue).toEqual([...byValue].sort((x, y) => x - y));
    // The last quarter compared with the one before: each group's mean of its disclosed periods,
    // from the same series the API serves for those dates.
    await a.page.selectOption('parity-app >> #preset', 'quarter');
    await chartDrawn(a.page);
    await a.page.selectOption('parity-app >> #compare', 'previous');
    await a.page.waitForSelector('parity-app >> [data-testid="comparison"] tbody tr');
    const from = await a.page.$eval(
      'parity-app',
      (app) => (app.shadowRoot!.querySelector('#from') as HTMLInputElement).value,
    );
    // The closed weeks shown, and as many weeks just before them (the open week in neither).
    const summary = await api<{
      kpis: { id: string; scopes: { lastClosed: { period: string } | null }[] }[];
    }>('/v1/kpis', tokens['acme']!);
    const lastClosed = summary.kpis.find((x) => x.id === 'lead_time')!.scopes[0]!.lastClosed!.period;
    const now = await api<{ cells: { period: string }[] }>(
      `/v1/kpis/lead_time/series?grain=week&from=${from}`,
      tokens['acme']!,
    );
    const weeks = [...new Set(now.cells.map((c) => c.period))].filter((p) => p <= lastClosed).sort();
    const back = (d: string, days: number) => new Date(Date.parse(d) - days * 86_400_000).toISOString().slice(0, 10);
    const n = weeks.length;
    const before = await api<{ cells: { group: string | null; value: number | null }[] }>(
      `/v1/kpis/lead_time/series?grain=week&from=${back(weeks[0]!, 7 * n)}&to=${back(weeks.at(-1)!, 7 * n - 6)}`,
      tokens['acme']!,
    );
    const values = before.cells.filter((c) => c.group === null && c.value !== null).map((c) => c.value!);
    expect(values.length).toBeGreaterThan(0);
    const mean = values.reduce((x, y) => x + y, 0) / values.length;
    // The table can be drawn from the compared series of the range before the quarter was chosen
    // until the quarter's comes back (a dash, seen once in CI under load): wait for the mean.
    const shownMean = () =>
      a.page.$eval('parity-app', (app) =>
        Number(
          app
            .shadowRoot!.querySelector('[data-testid="comparison"] tbody tr td:nth-of-type(2)')!
            .textContent!.replaceAll(',', ''),
        ),
      );
    for (let i = 0; i < 100 && !(Math.abs((await shownMean()) - mean) < 0.6); i++) await a.page.waitForTimeout(100);
    expect(Math.abs((await shownMean()) - mean)).toBeLessThan(0.6);
    // team_satisfaction weekly by partner has withheld cells (minGroupSize 8): gaps with their reason.
    await a.page.goto(`${t.url}/#/kpi/team_satisfaction`);
    await a.page.waitForSelector('parity-app >> #by');
    await a.page.$eval('parity-app', (app) => {
      for (const [id, value] of [
        ['#grain', 'week'],
        ['#by', 'partner'],
      ]) {
        const sel = app.shadowRoot!.querySelector(id!) as HTMLSelectElement;
        sel.value = value!;
        sel.dispatchEvent(new Event('change'));
      }
    });
    await a.page.waitForFunction(
      () => {
        const c = document.querySelector('parity-app')!.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
          view?: { data(n: string): { reason: string }[] };
          by?: string;
        };
        return c?.by === 'partner' && (c.view?.data('suppressed').length ?? 0) > 0;
      },
      undefined,
      { timeout: timeout(10_000) },
    );
    const gaps = await a.page.$eval('parity-app', (app) =>
      (
        app.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
          view: { data(n: string): { reason: string }[] };
        }
      ).view.data('suppressed'),
    );
    expect(gaps[0]!.reason).toMatch(
      /withheld: (A partner contributes fewer than 8 distinct subjects|Withheld so that another)/,
    );
    await a.page.context().close();
  });

  it('draws a control band period by period, as the API judged each period', async () => {
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/kpi/error_rate`);
    await chartDrawn(a.page);
    const drawn = await a.page.$eval('parity-app', (app) => {
      const c = app.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
        view: { data(n: string): { period: string; lower: number; upper: number }[] };
      };
      return c.view.data('band').map((b) => [b.period, b.lower, b.upper]);
    });
    const api_ = await api<{
      bands: {
        group: string | null;
        period: string;
        lower: number | null;
        upper: number | null;
        method: string | null;
      }[];
    }>('/v1/kpis/error_rate/bands', tokens['acme']!);
    const combined = api_.bands.filter((b) => b.group === null && b.method === 'control');
    expect(combined.length).toBeGreaterThan(20);
    expect(drawn).toEqual(combined.map((b) => [b.period, b.lower, b.upper]));
    expect(new Set(combined.map((b) => b.upper!.toFixed(6))).size).toBeGreaterThan(5);
    await a.page.context().close();
  });

  it('lets the named owner acknowledge and resolve an incident from the page; another user gets no controls', async () => {
    const open = (
      await api<{ incidents: { id: string; kpi: { id: string }; scope: string; state: string }[] }>(
        '/v1/incidents?state=active&kpi=lead_time',
        tokens['ana']!,
      )
    ).incidents;
    const target = open.find((i) => i.scope === 'acme' || i.scope === 'combined');
    expect(target, 'the demo data breaches lead_time').toBeDefined();
    const other = await signIn(tokens['gus']!);
    await other.page.goto(`${t.url}/#/incidents`);
    await other.page.waitForSelector(`parity-app >> [data-incident="${target!.id}"]`);
    const gusButtons = await other.page.$eval(
      'parity-app',
      (app, id) => app.shadowRoot!.querySelector(`[data-incident="${id}"]`)!.querySelectorAll('button').length,
      target!.id,
    );
    if (target!.scope === 'acme') expect(gusButtons).toBe(0);

    const ana = await signIn(tokens['ana']!);
    await ana.page.goto(`${t.url}/#/incidents`);
    const card = `parity-app >> [data-incident="${target!.id}"]`;
    await ana.page.waitForSelector(card);
    await ana.page.click(`${card} >> button:has-text("Acknowledge")`);
    await expect
      .poll(async () => (await api<{ state: string }>(`/v1/incidents/${target!.id}`, tokens['ana']!)).state)
      .toBe('acknowledged');
    await ana.page.click(`${card} >> details.resolve-form > summary`);
    await ana.page.selectOption(`${card} >> select[name="cause"]`, 'capacity');
    await ana.page.fill(`${card} >> textarea[name="narrative"]`, 'Peak season at the north hub.');
    await ana.page.fill(`${card} >> input[name="action"]`, 'Weekend shift');
    await ana.page.fill(`${card} >> input[name="actionOwner"]`, 'Ana Amsel');
    await ana.page.fill(`${card} >> input[name="due"]`, '2026-12-15');
    await ana.page.click(`${card} >> button:has-text("Resolve")`);
    await expect
      .poll(async () => (await api<{ state: string }>(`/v1/incidents/${target!.id}`, tokens['ana']!)).state)
      .toBe('resolved');
    const sheet = await api<{ cause: string; narrative: string; actions: unknown[] }>(
      `/v1/incidents/${target!.id}`,
      tokens['ana']!,
    );
    expect(sheet).toMatchObject({
      cause: 'capacity',
      narrative: 'Peak season at the north hub.',
      actions: [{ description: 'Weekend shift', owner: 'Ana Amsel', due: '2026-12-15' }],
    });
    expect(ana.errors).toEqual([]);
    await other.page.context().close();
    await ana.page.context().close();
  });

  it("opens the chart at an incident's period from its fact sheet: the address carries grain, scope and range", async () => {
    const active = await api<{
      incidents: { id: string; kpi: { id: string }; grain: string; period: string; scope: string }[];
    }>('/v1/incidents?state=active&limit=100', tokens['acme']!);
    const inc = active.incidents.find((i) => i.period && i.scope !== 'combined')!;
    expect(inc).toBeDefined();
    const s = await signIn(tokens['acme']!);
    await s.page.goto(`${t.url}/#/incidents`);
    await s.page.click(`parity-app >> [data-incident="${inc.id}"] >> summary:has-text("Fact sheet")`);
    await s.page.click(`parity-app >> [data-incident="${inc.id}"] >> a:has-text("Show on the chart")`);
    await chartDrawn(s.page);
    const at = (d: string, days: number) => new Date(Date.parse(d) + days * 86_400_000).toISOString().slice(0, 10);
    const controls = await s.page.$eval('parity-app', (app) =>
      ['#grain', '#by', '#from', '#to'].map((sel) => (app.shadowRoot!.querySelector(sel) as HTMLInputElement).value),
    );
    expect(controls).toEqual([inc.grain, 'partner', at(inc.period, -56), at(inc.period, 56)]);
    expect(s.page.url()).toContain(`#/kpi/${inc.kpi.id}?`);
    expect(s.errors).toEqual([]);
    await s.page.context().close();
  });

  it('filters the incidents page by state, KPI and scope, showing what the API lists', async () => {
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/incidents`);
    await a.page.waitForSelector('parity-app >> [data-testid="incident-list"]');
    const shown = async () => {
      await a.page.waitForFunction(
        () =>
          !document
            .querySelector('parity-app')!
            .shadowRoot!.querySelector('[data-testid="incident-list"]')!
            .textContent!.includes('Loading'),
      );
      return a.page.$eval('parity-app', (app) =>
        [...app.shadowRoot!.querySelectorAll('[data-testid="incident-list"] [data-incident]')].map((e) =>
          e.getAttribute('data-incident'),
        ),
      );
    };
    const pick = async (id: string, value: string) => {
      await a.page.$eval(
        'parity-app',
        (app, [sel, v]) => {
          const el = app.shadowRoot!.querySelector(sel!) as HTMLSelectElement;
          el.value = v!;
          el.dispatchEvent(new Event('change'));
        },
        [id, value],
      );
    };
    const listed = async (q: string) =>
      (await api<{ incidents: { id: string }[] }>(`/v1/incidents?limit=200${q}`, tokens['acme']!)).incidents.map(
        (i) => i.id,
      );
    expect(await shown()).toEqual(await listed('&state=active'));
    await pick('#f-state', '');
    await a.page.waitForTimeout(50);
    expect(await shown()).toEqual(await listed(''));
    await pick('#f-kpi', 'lead_time');
    await pick('#f-scope', 'acme');
    await a.page.waitForTimeout(50);
    const filtered = await listed('&kpi=lead_time&scope=acme');
    expect(filtered.length).toBeGreaterThan(0);
    expect(await shown()).toEqual(filtered);
    await pick('#f-state', 'resolved');
    await a.page.waitForTimeout(50);
    expect(await shown()).toEqual(await listed('&state=resolved&kpi=lead_time&scope=acme'));
    expect(a.errors).toEqual([]);
    await a.page.context().close();
  });

  it('shows the intent, the stage gate and each goal as the API judges it; the chart draws the target line and milestones', async () => {
    type Goals = {
      intent: string;
      stage: { current: string; criteria: { kpi: string; met: boolean | null }[] };
      goals: {
        id: string;
        kpi: string;
        state: string;
        progress: number | null;
        nextMilestone: { date: string; state: string } | null;
        targetLine: { date: string; target: number }[];
        milestones: { date: string; target: number }[];
      }[];
    };
    const a = await signIn(tokens['acme']!);
    const goals = await api<Goals>('/v1/goals', tokens['acme']!);
    expect(goals.goals.length).toBeGreaterThanOrEqual(2);
    const shown = await a.page.$eval('parity-app', (app) => {
      const root = app.shadowRoot!;
      return {
        intent: root.querySelector('[data-testid="intent"]')?.textContent ?? '',
        stage: root.querySelector('[data-testid="stage"]')?.textContent?.replace(/\s+/g, ' ').trim() ?? '',
        criteria: [...root.querySelectorAll('[data-testid="intent"] li[data-kpi]')].map((li) => li.textContent!),
        goals: [...root.querySelectorAll('[data-goal]')].map((el) => ({
          id: el.getAttribute('data-goal'),
          state: el.querySelector(':scope > p > [data-state]')?.getAttribute('data-state'),
          progress: el.querySelector('[role="progressbar"]')?.getAttribute('aria-valuenow') ?? null,
          next: el.querySelector('[data-testid="next-milestone"]')?.textContent?.replace(/\s+/g, ' ').trim() ?? null,
        })),
      };
    });
    expect(shown.intent).toContain(goals.intent);
    expect(shown.stage).toMatch(/^Stage: Field test · To enter Rollout:/);
    expect(shown.criteria).toHaveLength(goals.stage.criteria.length);
    expect(shown.goals.map((g) => [g.id, g.state, g.progress])).toEqual(
      goals.goals.map((g) => [g.id, g.state, g.progress === null ? null : String(Math.round(g.progress * 100))]),
    );
    for (const [i, g] of goals.goals.entries())
      if (g.nextMilestone) expect(shown.goals[i]!.next).toContain(g.nextMilestone.date.slice(0, 4));
    expect(await axeViolations(a.page), 'axe on the overview with goals').toEqual([]);

    // The lead-time chart: the target line and the milestones of the lead-time goal, as served.
    const lead = goals.goals.find((g) => g.kpi === 'lead_time')!;
    await a.page.goto(`${t.url}/#/kpi/lead_time`);
    await chartDrawn(a.page);
    const drawn = await a.page.$eval('parity-app', (app) => {
      const c = app.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
        view: { data(n: string): { period: string; target: number }[] };
      };
      const pick = (n: string) => c.view.data(n).map((r) => [r.period, r.target]);
      return { targets: pick('targets'), milestones: pick('milestones') };
    });
    expect(drawn.targets).toEqual(lead.targetLine.map((p) => [p.date, p.target]));
    expect(drawn.milestones).toEqual(lead.milestones.map((m) => [m.date, m.target]));
    expect(a.errors).toEqual([]);
    await a.page.context().close();
  });

  it("lets a partner annotate a KPI's days from the page; both partners see the note on the chart and in the list, as text", async () => {
    const text = 'Strike at the north hub <script>window.__pwned = 1</script>';
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/kpi/customer_value`);
    await chartDrawn(a.page);
    const root = 'document.querySelector("parity-app").shadowRoot';
    await a.page.fill(`parity-app >> #note-from`, '2026-11-09');
    await a.page.fill(`parity-app >> #note-to`, '2026-11-13');
    await a.page.selectOption(`parity-app >> #note-scope`, 'acme');
    await a.page.fill(`parity-app >> #note-text`, text);
    await a.page.click(`parity-app >> [data-testid="note-form"] button[type="submit"]`);
    await a.page.waitForFunction(`${root}.querySelectorAll('[data-testid="notes"] li').length === 1`);
    const listed = await api<{ annotations: { id: string; text: string; scope: string }[] }>(
      '/v1/kpis/customer_value/annotations',
      tokens['globex']!,
    );
    expect(listed.annotations.map((n) => [n.text, n.scope])).toEqual([[text, 'acme']]);
    expect(await axeViolations(a.page), 'axe on the detail page with a note').toEqual([]);
    await a.page.context().close();
    for (const who of ['globex', 'acme']) {
      const s = await signIn(tokens[who]!);
      await s.page.goto(`${t.url}/#/kpi/customer_value`);
      await chartDrawn(s.page);
      await s.page.waitForFunction(`${root}.querySelectorAll('[data-testid="notes"] li').length === 1`);
      const seen = await s.page.$eval('parity-app', (app) => {
        const chart = app.shadowRoot!.querySelector('parity-kpi-chart') as unknown as {
          view: { data(n: string): { text: string; period: string; end: string }[] };
        };
        return {
          drawn: chart.view.data('notes'),
          listed: app.shadowRoot!.querySelector('[data-testid="notes"] .note-text')!.textContent,
          scripts: app.shadowRoot!.querySelectorAll('[data-testid="notes"] script').length,
          pwned: (window as unknown as { __pwned?: number }).__pwned ?? 0,
        };
      });
      // Drawn over the days it covers, the words as written, never run as markup.
      expect(
        seen.drawn.map((n) => [n.text, n.period, n.end]),
        who,
      ).toEqual([[text, '2026-11-09', '2026-11-14']]);
      expect(seen.listed).toBe(text);
      expect([seen.scripts, seen.pwned]).toEqual([0, 0]);
      // In the table too: on acme's rows of the periods it covers, once broken down by partner.
      await s.page.selectOption('parity-app >> #by', 'partner');
      await s.page.waitForFunction(`!!${root}.querySelector('[data-testid="cells"] tr[data-group="acme"]')`);
      const noted = await s.page.$$eval('parity-app', (apps) =>
        [...apps[0]!.shadowRoot!.querySelectorAll('[data-testid="cells"] tbody tr')]
          .filter((tr) => (tr.querySelector('.note-cell')?.textContent ?? '').trim() !== '')
          .map((tr) => [
            tr.getAttribute('data-group'),
            tr.getAttribute('data-period'),
            tr.querySelector('.note-cell')!.textContent!.includes('Strike at the north hub <script>'),
          ]),
      );
      expect(noted.length, who).toBeGreaterThan(0);
      expect(noted.every(([g, p, has]) => g === 'acme' && p! >= '2026-11-01' && p! <= '2026-11-13' && has)).toBe(true);
      expect(s.errors).toEqual([]);
      await s.page.context().close();
    }
  });

  it("discusses a goal on the overview: a comment with a mention reaches the other partner's page, as text", async () => {
    const text = 'Can @gus@globex.example cover Saturdays? <img src=x onerror="window.__pwned=1">';
    const root = 'document.querySelector("parity-app").shadowRoot';
    const open = async (token: string) => {
      const s = await signIn(token);
      await s.page.goto(`${t.url}/#/`);
      await s.page.waitForFunction(`!!${root}.querySelector('[data-testid="goal-discussion"]')`);
      await s.page.click('parity-app >> [data-testid="goal-discussion"] >> nth=0 >> summary');
      await s.page.waitForFunction(
        `!!${root}.querySelector('[data-testid="goal-discussion"] [data-testid="comment-form"]')`,
      );
      return s;
    };
    const a = await open(tokens['acme']!);
    await a.page.fill('parity-app >> [data-testid="goal-discussion"] >> nth=0 >> textarea', text);
    await a.page.click('parity-app >> [data-testid="goal-discussion"] >> nth=0 >> button[type="submit"]');
    await a.page.waitForFunction(`${root}.querySelectorAll('[data-testid="comments"] li').length === 1`);
    expect(await axeViolations(a.page), 'axe with a goal discussion open').toEqual([]);
    await a.page.context().close();
    const goals = await api<{ goals: { id: string }[] }>('/v1/goals', tokens['globex']!);
    const thread = await api<{ comments: { text: string; mentions: string[] }[] }>(
      `/v1/threads/goal/${goals.goals[0]!.id}`,
      tokens['globex']!,
    );
    expect(thread.comments.map((c) => [c.text, c.mentions])).toEqual([[text, ['gus@globex.example']]]);
    const g = await open(tokens['globex']!);
    await g.page.waitForFunction(`${root}.querySelectorAll('[data-testid="comments"] li').length === 1`);
    const seen = await g.page.$eval('parity-app', (app) => ({
      text: app.shadowRoot!.querySelector('[data-testid="comments"] .comment-text')!.textContent,
      imgs: app.shadowRoot!.querySelectorAll('[data-testid="comments"] img').length,
      pwned: (window as unknown as { __pwned?: number }).__pwned ?? 0,
    }));
    expect(seen).toEqual({ text, imgs: 0, pwned: 0 });
    expect(g.errors).toEqual([]);
    await g.page.context().close();
  });

  it("shows the retrospective's overdue action on the overview of the other partner", async () => {
    const res = await fetch(`${t.url}/v1/retrospectives/2026-10/actions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['acme']!}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        description: 'Alert on a late nightly run',
        owner: 'gus@globex.example',
        due: '2026-11-02',
      }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const g = await signIn(tokens['globex']!);
    await g.page.goto(`${t.url}/#/`);
    await g.page.waitForFunction(
      `!!document.querySelector("parity-app").shadowRoot.querySelector('[data-testid="overdue-actions"]')`,
    );
    const text = await g.page.$eval(
      'parity-app',
      (app) => app.shadowRoot!.querySelector('[data-testid="overdue-actions"]')!.textContent ?? '',
    );
    expect(text).toContain('Alert on a late nightly run');
    expect(text).toContain('Gus Gerber');
    expect(await axeViolations(g.page), 'axe with overdue actions').toEqual([]);
    await g.page.context().close();
  });

  it('writes a retrospective from its page: items and an action as text, seen by the other partner, marked done by its owner', async () => {
    const root = 'document.querySelector("parity-app").shadowRoot.querySelector("parity-retro").shadowRoot';
    const evil = 'Late feed <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';
    const a = await signIn(tokens['acme']!);
    await a.page.goto(`${t.url}/#/retro/2026-09`);
    await a.page.waitForFunction(`!!${root}?.querySelector('[data-testid="retro-weakened"] textarea')`);
    await a.page.fill('parity-app >> parity-retro >> [data-testid="retro-weakened"] >> textarea', evil);
    await a.page.click('parity-app >> parity-retro >> [data-testid="retro-weakened"] >> button[type="submit"]');
    await a.page.waitForFunction(`${root}.querySelectorAll('[data-testid="retro-weakened"] li').length === 1`);
    await a.page.fill('parity-app >> parity-retro >> #a-desc', 'Publish the export schedule <b>both</b> ways');
    await a.page.fill('parity-app >> parity-retro >> #a-owner', 'gus@globex.example');
    await a.page.fill('parity-app >> parity-retro >> #a-due', '2026-12-15');
    await a.page.click('parity-app >> parity-retro >> [data-testid="action-form"] >> button[type="submit"]');
    await a.page.waitForFunction(`${root}.querySelectorAll('[data-testid="retro-actions"] tbody tr').length === 1`);
    // A bad owner is refused on the form, naming the field.
    await a.page.fill('parity-app >> parity-retro >> #a-desc', 'Someone else');
    await a.page.fill('parity-app >> parity-retro >> #a-owner', 'nobody@nowhere.example');
    await a.page.fill('parity-app >> parity-retro >> #a-due', '2026-12-15');
    await a.page.click('parity-app >> parity-retro >> [data-testid="action-form"] >> button[type="submit"]');
    await a.page.waitForFunction(`(${root}.querySelector('[role="alert"]')?.textContent ?? '').includes('body.owner')`);
    expect(await axeViolations(a.page), 'axe on the retrospective page').toEqual([]);
    // (The browser logs the refused request itself; nothing else went wrong.)
    expect(a.errors.filter((e) => !e.includes('status of 400'))).toEqual([]);
    await a.page.context().close();

    const api9 = await api<{ weakened: { text: string }[]; actions: { id: string; state: string }[] }>(
      '/v1/retrospectives/2026-09',
      tokens['globex']!,
    );
    expect(api9.weakened.map((i) => i.text)).toEqual([evil]);
    const g = await signIn(tokens['gus']!);
    await g.page.goto(`${t.url}/#/retro/2026-09`);
    await g.page.waitForFunction(`${root}?.querySelectorAll('[data-testid="retro-actions"] tbody tr').length === 1`);
    const seen = await g.page.evaluate(`({
      text: ${root}.querySelector('[data-testid="retro-weakened"] li').textContent,
      scripts: ${root}.querySelectorAll('[data-testid="retro-weakened"] script, [data-testid="retro-weakened"] img, [data-testid="retro-actions"] b').length,
      pwned: window.__pwned ?? 0,
    })`);
    expect(seen).toMatchObject({ scripts: 0, pwned: 0 });
    expect((seen as { text: string }).text).toContain(evil);
    await g.page.click('parity-app >> parity-retro >> [data-testid="retro-actions"] >> button');
    await g.page.waitForFunction(`!${root}.querySelector('[data-testid="retro-actions"] tbody button')`);
    const after = await api<{ actions: { state: string; doneBy: string }[] }>(
      '/v1/retrospectives/2026-09',
      tokens['acme']!,
    );
    expect(after.actions.map((x) => [x.state, x.doneBy])).toEqual([['done', 'gus@globex.example']]);
    expect(g.errors).toEqual([]);
    await g.page.context().close();
  });

  it('runs the committee from its page: a drill the owner acknowledges, a decision recorded and superseded, all as text', async () => {
    const root = 'document.querySelector("parity-app").shadowRoot.querySelector("parity-steering").shadowRoot';
    tokens['chair'] ??= (
      await createToken(
        t.room.control.db,
        { partnerId: 'acme', role: 'steering', name: 'chair@example.org' },
        t.clock.now(),
      )
    ).token;
    // The scheduled evaluation runs on a real-time interval: run it now, at the latest snapshot,
    // so one that falls inside this test refreshes nothing and only the drill could.
    await t.app.reader.rollups?.loop.idle();
    t.app.alerts?.engine.requestAll();
    await t.app.alerts?.engine.idle();
    const before = await api<{ incidents: unknown[] }>('/v1/incidents?limit=500', tokens['acme']!);
    const c = await signIn(tokens['chair']!);
    await c.page.goto(`${t.url}/#/steering`);
    await c.page.waitForFunction(`!!${root}?.querySelector('[data-testid="drill-form"]')`);
    expect(await c.page.evaluate(`${root}.querySelector('[data-testid="chair"]').textContent`)).toContain(
      'Dmitri Weiss',
    );
    await c.page.selectOption('parity-app >> parity-steering >> #drill-kpi', 'lead_time');
    await c.page.selectOption('parity-app >> parity-steering >> #drill-scope', 'globex');
    await c.page.click('parity-app >> parity-steering >> [data-testid="drill-form"] >> button[type="submit"]');
    await c.page.waitForFunction(`${root}.querySelectorAll('[data-testid="drills"] tbody tr').length === 1`);
    const evil = '<script>window.__pwned=1</script>Cover <img src=x onerror="window.__pwned=2"> Saturdays';
    await c.page.fill('parity-app >> parity-steering >> #d-title', evil);
    await c.page.fill('parity-app >> parity-steering >> #d-context', evil);
    await c.page.fill('parity-app >> parity-steering >> #d-options', 'Globex covers\nAcme covers');
    await c.page.fill('parity-app >> parity-steering >> #d-decision', evil);
    await c.page.fill('parity-app >> parity-steering >> #d-consequences', evil);
    await c.page.fill('parity-app >> parity-steering >> #d-date', '2026-11-20');
    await c.page.click('parity-app >> parity-steering >> [data-testid="decision-form"] >> button[type="submit"]');
    await c.page.waitForFunction(`${root}.querySelectorAll('[data-testid="decision"]').length === 1`);
    await c.page.fill('parity-app >> parity-steering >> #d-title', 'Acme covers Saturdays after all');
    await c.page.fill('parity-app >> parity-steering >> #d-context', 'Globex could not staff it.');
    await c.page.fill('parity-app >> parity-steering >> #d-options', 'Acme covers');
    await c.page.fill('parity-app >> parity-steering >> #d-decision', 'Acme covers Saturdays.');
    await c.page.fill('parity-app >> parity-steering >> #d-consequences', 'Acme pays the shift.');
    await c.page.fill('parity-app >> parity-steering >> #d-date', '2026-11-22');
    await c.page.selectOption('parity-app >> parity-steering >> #d-supersedes', { index: 1 });
    await c.page.click('parity-app >> parity-steering >> [data-testid="decision-form"] >> button[type="submit"]');
    await c.page.waitForFunction(`${root}.querySelectorAll('[data-testid="decision"]').length === 2`);
    expect(await axeViolations(c.page), 'axe on the steering page').toEqual([]);
    expect(c.errors).toEqual([]);
    await c.page.context().close();

    // The owner sees the drill, marked DRILL, and acknowledges it from the page.
    const g = await signIn(tokens['gus']!);
    await g.page.goto(`${t.url}/#/steering`);
    await g.page.waitForFunction(`${root}?.querySelectorAll('[data-testid="drills"] tbody button').length === 1`);
    expect(await g.page.evaluate(`${root}.querySelector('[data-testid="drills"] tbody').textContent`)).toContain(
      'DRILL',
    );
    await g.page.click('parity-app >> parity-steering >> [data-testid="drills"] >> tbody >> button');
    await g.page.waitForFunction(
      `${root}.querySelector('[data-testid="drills"] tbody').textContent.includes('acknowledged')`,
    );
    const drills = await api<{ drills: { state: string; acknowledgedBy: string }[] }>('/v1/drills', tokens['globex']!);
    expect(drills.drills.map((d) => [d.state, d.acknowledgedBy])).toEqual([['acknowledged', 'gus@globex.example']]);
    // The decision log as the other partner reads it: text, the first record superseded by the second.
    const log = await g.page.evaluate(`({
      first: ${root}.querySelectorAll('[data-testid="decision"]')[1].textContent,
      superseded: ${root}.querySelectorAll('[data-testid="decision"].superseded').length,
      tags: ${root}.querySelectorAll('[data-testid="decisions"] script, [data-testid="decisions"] img').length,
      pwned: window.__pwned ?? 0,
    })`);
    expect(log).toMatchObject({ superseded: 1, tags: 0, pwned: 0 });
    expect((log as { first: string }).first).toContain(evil);
    expect((log as { first: string }).first).toContain('superseded by D-2');
    // No form for a non-member; no incident was touched by the drill.
    expect(
      await g.page.evaluate(`!!${root}.querySelector('[data-testid="decision-form"], [data-testid="drill-form"]')`),
    ).toBe(false);
    expect(await api('/v1/incidents?limit=500', tokens['acme']!)).toEqual(before);
    expect(g.errors).toEqual([]);
    await g.page.context().close();
  });

  it('shows the monthly review, the same document for both partners, as the API serves it', async () => {
    const review = await api<{
      digest: string;
      kpis: { title: string; scopes: unknown[] }[];
      serviceLevels: { partners: { partner: string; feeds: { periods: number; onTime: number } }[] };
    }>('/v1/reviews/2026-10', tokens['acme']!);
    // The demo's nightly deliveries: service levels measured for both partners.
    const feeds = review.serviceLevels.partners.filter((p) => p.feeds.periods > 0);
    expect(feeds.map((p) => p.partner)).toEqual(['acme', 'globex']);
    const seen: string[] = [];
    for (const who of ['acme', 'globex']) {
      const s = await signIn(tokens[who]!);
      await s.page.goto(`${t.url}/#/review/2026-10`);
      await s.page.waitForFunction(
        () =>
          !!document
            .querySelector('parity-app')
            ?.shadowRoot?.querySelector('parity-review')
            ?.shadowRoot?.querySelector('[data-testid="review-source"]'),
      );
      const page = await s.page.$eval('parity-app', (app) => {
        const r = app.shadowRoot!.querySelector('parity-review')!.shadowRoot!;
        return {
          digest: r.querySelector('[data-testid="review-source"] code')!.getAttribute('title'),
          rows: r.querySelectorAll('table')[0]!.querySelectorAll('tbody tr').length,
          text: r.textContent ?? '',
        };
      });
      expect(page.digest).toBe(review.digest);
      expect(page.rows).toBe(review.kpis.reduce((n, k) => n + k.scopes.length, 0));
      for (const k of review.kpis) expect(page.text).toContain(k.title);
      expect(page.text).not.toContain('Data-protection compliance');
      // Service levels: each partner's feed periods on time as the API counts them; the demo's window.
      expect(page.text).toContain('Service levels');
      for (const p of feeds) expect(page.text).toContain(`${p.feeds.onTime} / ${p.feeds.periods}`);
      expect(page.text).toContain('Globex warehouse system upgrade');
      seen.push(page.digest!);
      expect(await axeViolations(s.page), `axe on the review page (${who})`).toEqual([]);
      expect(s.errors).toEqual([]);
      await s.page.context().close();
    }
    expect(seen[0]).toBe(seen[1]);
  });

  it('works at 1280 and 390 px on every page: no sideways scrolling, screenshots, axe clean, no console errors', async () => {
    const dir = artifactDir();
    tokens['adminAcme'] ??= (
      await createToken(
        t.room.control.db,
        { partnerId: 'acme', role: 'admin', name: 'admin@acme.example' },
        t.clock.now(),
      )
    ).token;
    /** What sticks out past the viewport's right edge, to say where the page overflows. */
    const overflowing = (page: Page) =>
      page.evaluate(() => {
        if (document.documentElement.scrollWidth <= window.innerWidth + 1) return [];
        // What sticks out and is not inside a box that scrolls or clips it.
        const up = (e: Element): Element | null => e.parentElement ?? (e.getRootNode() as ShadowRoot).host ?? null;
        const clipped = (e: Element) => {
          for (let a = up(e); a; a = up(a)) if (getComputedStyle(a).overflowX !== 'visible') return true;
          return false;
        };
        const out: string[] = [];
        const walk = (root: Document | ShadowRoot) => {
          for (const el of root.querySelectorAll('*')) {
            const r = el.getBoundingClientRect();
            if (r.right > window.innerWidth + 1 && r.width > 0 && !clipped(el))
              out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(r.right)}px`);
            if (el.shadowRoot) walk(el.shadowRoot);
          }
        };
        walk(document);
        // (Text wider than its box — an unbreakable word — sticks out without any box doing so.)
        return out.length ? out.slice(0, 8) : [`the page is ${document.documentElement.scrollWidth}px wide`];
      });
    for (const width of [1280, 390]) {
      for (const [who, pages] of [
        ['acme', ['', 'kpi/lead_time', 'incidents', 'review/2026-10', 'retro/2026-10', 'steering', 'transparency']],
        ['adminAcme', ['governance']],
      ] as const) {
        const s = await signIn(tokens[who]!, width);
        s.page.on('response', (r) => r.status() >= 400 && s.errors.push(`${r.status()} ${new URL(r.url()).pathname}`));
        for (const path of pages) {
          await s.page.goto(`${t.url}/#/${path}`);
          await s.page.waitForLoadState('networkidle');
          if (path.startsWith('kpi/')) {
            await chartDrawn(s.page);
            await s.page.selectOption('parity-app >> #by', 'partner');
            await chartDrawn(s.page);
            await s.page.waitForLoadState('networkidle');
          }
          const name = path.replaceAll('/', '-') || 'overview';
          await s.page.screenshot({ path: join(dir, `${name}-${width}.png`), fullPage: true });
          expect(await overflowing(s.page), `${path || 'overview'} at ${width}px`).toEqual([]);
          if (width === 390 || path === '' || path.startsWith('kpi/'))
            expect(await axeViolations(s.page), `axe on ${path || 'overview'} at ${width}px`).toEqual([]);
        }
        expect(s.errors).toEqual([]);
        await s.page.context().close();
      }
    }
  });

  it('is keyboard navigable: sign in, reach a tile and open its detail without a mouse', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${t.url}/`);
    await page.waitForSelector('parity-app >> #token');
    // Tab to the token field (past the language switch), type, Enter submits.
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.querySelector('parity-app')!.shadowRoot!.activeElement?.id === 'token'))
        break;
    }
    await page.keyboard.type(tokens['acme']!);
    await page.keyboard.press('Enter');
    await page.waitForSelector('parity-kpi-tile [data-testid="value"]');
    // Tab until the lead time tile's link has focus; Enter opens the detail page.
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => {
        const tile = document
          .querySelector('parity-app')!
          .shadowRoot!.querySelector('parity-kpi-tile[data-kpi="lead_time"]');
        return tile?.shadowRoot?.activeElement?.tagName === 'A';
      });
    }
    expect(reached).toBe(true);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash === '#/kpi/lead_time');
    await page.waitForSelector('parity-app >> #grain');
    await context.close();
  });

  it('switches to German: numbers and dates by locale', async () => {
    const s = await signIn(tokens['acme']!);
    await s.page.$eval('parity-app', (app) => {
      const sel = app.shadowRoot!.querySelector('header select') as HTMLSelectElement;
      sel.value = 'de';
      sel.dispatchEvent(new Event('change'));
    });
    await s.page.waitForFunction(() =>
      /Kennzahlen/.test(document.querySelector('parity-app')!.shadowRoot!.textContent ?? ''),
    );
    expect(await s.page.evaluate(() => document.documentElement.lang)).toBe('de');
    const tiles = await tilesOf(s.page);
    expect(Object.values(tiles).some((v) => /\d,\d/.test(v))).toBe(true);
    // KPI titles and units from the agreement's translations; role names and period labels in German.
    expect(tiles['lead_time']).toMatch(/ Stunden$/);
    const german = await s.page.$eval('parity-app', (app) => ({
      title: app.shadowRoot!.querySelector('parity-kpi-tile[data-kpi="lead_time"]')!.shadowRoot!.querySelector('h3 a')!
        .textContent,
      who: app.shadowRoot!.querySelector('[data-testid="who"]')!.textContent,
      period: app
        .shadowRoot!.querySelector('parity-kpi-tile[data-kpi="lead_time"]')!
        .shadowRoot!.querySelector('[data-testid="period"]')!.textContent,
      side: app.shadowRoot!.querySelector('[data-testid="side-by-side"] h2')!.textContent,
    }));
    expect(german).toEqual({
      title: 'Durchlaufzeit',
      who: 'Angemeldet als acme analyst (Analyst:in) für Acme Logistics',
      period: expect.stringMatching(/^Woche ab \d{1,2}\.\d{2}\.\d{4}$/),
      side: 'Partner im Vergleich',
    });
    // The detail page too: its title, unit and the breakdown's dimension.
    await s.page.goto(`${t.url}/#/kpi/lead_time`);
    await chartDrawn(s.page);
    expect(await inApp(s.page, 'parity-kpi-detail h2')).toBe('Durchlaufzeit (Stunden)');
    expect(
      await s.page.$eval('parity-app', (app) =>
        [...app.shadowRoot!.querySelectorAll('#by option')].map((o) => o.textContent!.trim()),
      ),
    ).toEqual(['Gesamt', 'Nach Partner', 'Region']);
    expect(await axeViolations(s.page), 'axe in German').toEqual([]);
    expect(s.errors).toEqual([]);
    await s.page.context().close();
  });

  it('shows the metadata report the API gives (counts and times only); the operator lands on it and gets no KPI', async () => {
    const report = await api<{
      partners: { partner: string; batches: number; pointsAccepted: number | null }[];
      feeds: unknown[];
    }>('/v1/transparency', tokens['globex']!);
    const s = await signIn(tokens['globex']!);
    await s.page.goto(`${t.url}/#/transparency`);
    await s.page.waitForSelector('parity-transparency table');
    const rows = await s.page.$$eval('parity-app', (apps) => {
      const view = apps[0]!.shadowRoot!.querySelector('parity-transparency')!.shadowRoot!;
      return [...view.querySelectorAll('table')][0]!.innerText;
    });
    // globex reads its own point counts; another partner's show as a dash.
    for (const p of report.partners)
      expect(rows).toContain(
        `${p.partner}\t${p.batches}\t${p.pointsAccepted === null ? '–' : new Intl.NumberFormat('en-GB').format(p.pointsAccepted)}`,
      );
    expect(report.partners.find((p) => p.partner === 'acme')!.pointsAccepted).toBeNull();
    expect(report.partners.find((p) => p.partner === 'globex')!.pointsAccepted).toBeGreaterThan(0);
    expect(await axeViolations(s.page)).toEqual([]);
    await s.page.screenshot({ path: join(artifactDir(), 'transparency-1280.png'), fullPage: true });
    expect(s.errors).toEqual([]);
    await s.page.context().close();

    const operator = (
      await createToken(t.room.control.db, { partnerId: null, role: 'operator', name: 'host' }, t.clock.now())
    ).token;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
    const page = await context.newPage();
    const answered: { path: string; status: number }[] = [];
    page.on(
      'response',
      (r) =>
        new URL(r.url()).pathname.startsWith('/v1/') &&
        answered.push({ path: new URL(r.url()).pathname, status: r.status() }),
    );
    await startSession(page, operator);
    await page.goto(`${t.url}/`);
    await page.waitForSelector('parity-transparency table');
    expect(await page.$$('parity-kpi-tile')).toHaveLength(0);
    expect(answered.filter((a) => a.status >= 400)).toEqual([]);
    expect(answered.map((a) => a.path)).not.toContain('/v1/kpis');
    await context.close();
  });

  it('embeds the tile and chart in a partner intranet page on another origin with a read token; an origin the room does not list gets nothing', async () => {
    const kpis = await api<Kpis>('/v1/kpis', tokens['acme']!);
    const expected = kpis.kpis.find((k) => k.id === 'lead_time')!.scopes.find((x) => x.group === null)!.lastClosed!
      .value!;
    intranetPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme intranet</title></head><body>
      <h1>Lead time</h1>
      <parity-kpi-tile kpi="lead_time" token="${tokens['acme']}"></parity-kpi-tile>
      <parity-kpi-chart kpi="lead_time" grain="week" token="${tokens['acme']}"></parity-kpi-chart>
      <script type="module" src="${t.url}/embed.js"></script></body></html>`;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on(
      'request',
      (r) =>
        !r.url().startsWith(t.url) &&
        !r.url().startsWith(origins[0]!) &&
        !r.url().startsWith('data:') &&
        errors.push(`request to ${r.url()}`),
    );
    await page.goto(origins[0]!);
    await page.waitForSelector('parity-kpi-tile [data-testid="value"]');
    const shown = await page.$eval(
      'parity-kpi-tile',
      (el) => el.shadowRoot!.querySelector('[data-testid="value"]')!.textContent!,
    );
    expect(shown.replace(/[^\d.]/g, '')).toBe(
      new Intl.NumberFormat('en-GB', { maximumFractionDigits: 2, useGrouping: false }).format(expected),
    );
    await page.waitForFunction(() => !!document.querySelector('parity-kpi-chart')?.shadowRoot?.querySelector('svg'));
    await page.screenshot({ path: join(artifactDir(), 'embedded-intranet-1280.png'), fullPage: true });
    expect(errors).toEqual([]);
    await context.close();

    const other = await browser.newContext();
    const stranger = await other.newPage();
    await stranger.goto(origins[1]!);
    await stranger.waitForTimeout(1500);
    expect(
      await stranger.$$eval('parity-kpi-tile', (els) =>
        els.map((el) => el.shadowRoot?.querySelector('[data-testid="value"]')?.textContent ?? null),
      ),
    ).toEqual([null]);
    await other.close();
  });

  it("lets each partner admin read a proposal's diff and approve it from the page, and issue and revoke its own tokens", async () => {
    const doc = structuredClone(
      (await api<{ agreement: Record<string, any> }>('/v1/agreement', await t.token('acme', 'admin'))).agreement,
    );
    doc.kpis.find((k: any) => k.id === 'lead_time').band.upper = 80;
    doc.defaults.minGroupSize = 4;
    const proposed = await fetch(`${t.url}/v1/agreement/proposals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token('acme', 'admin')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ document: doc, reason: 'wider lead-time band' }),
    });
    expect(proposed.status).toBe(201);
    const globexAdmin = (
      await createToken(t.room.control.db, { partnerId: 'globex', role: 'admin', name: 'globex admin' }, t.clock.now())
    ).token;
    const s = await signIn(globexAdmin);
    await s.page.goto(`${t.url}/#/governance`);
    await s.page.waitForSelector('parity-governance [data-proposal]');
    await s.page.waitForSelector('parity-governance tr[data-token]');
    const text = await s.page.$eval(
      'parity-app',
      (app) => (app.shadowRoot!.querySelector('parity-governance') as HTMLElement).shadowRoot!.textContent!,
    );
    expect(text).toContain('KPI lead_time: band.upper 72 → 80');
    expect(text).toMatch(/defaults\.minGroupSize: 5 → 4 \(loosens privacy/);
    expect(text).toContain('waiting for: globex');
    expect(await axeViolations(s.page)).toEqual([]);
    await s.page.screenshot({ path: join(artifactDir(), 'governance-1280.png'), fullPage: true });

    await s.page.locator('parity-governance [data-proposal] input[name="note"]').fill('agreed on the call');
    await s.page.locator('parity-governance [data-proposal] button[value="approve"]').click();
    await s.page.waitForFunction(() =>
      (
        document.querySelector('parity-app')!.shadowRoot!.querySelector('parity-governance') as HTMLElement
      ).shadowRoot!.textContent!.includes('active'),
    );
    expect((await api<{ version: number }>('/v1/agreement', globexAdmin)).version).toBe(2);

    await s.page.locator('parity-governance #t-name').fill('pat@globex.example');
    await s.page.locator('parity-governance button:has-text("Issue token")').click();
    await s.page.waitForSelector('parity-governance [data-testid="issued-token"]');
    const issued = (await s.page.locator('parity-governance [data-testid="issued-token"]').textContent())!.trim();
    expect(issued).toMatch(/^pty_/);
    expect((await fetch(`${t.url}/v1/kpis`, { headers: { authorization: `Bearer ${issued}` } })).status).toBe(200);
    const tokenId = await s.page.$eval(
      'parity-app',
      (app) =>
        (app.shadowRoot!.querySelector('parity-governance') as HTMLElement)
          .shadowRoot!.querySelector('[role="status"]')!
          .textContent!.match(/tok_[\w-]+/)![0],
    );
    await s.page.locator(`parity-governance tr[data-token="${tokenId}"] button:has-text("Revoke")`).click();
    await s.page.waitForSelector(`parity-governance tr[data-token="${tokenId}"] >> text=revoked`);
    expect((await fetch(`${t.url}/v1/kpis`, { headers: { authorization: `Bearer ${issued}` } })).status).toBe(401);
    // The token list says when each was made and last used (the issued one was used above).
    const used = await s.page
      .locator(`parity-governance tr[data-token="${tokenId}"] [data-testid="last-used"]`)
      .textContent();
    expect(used).not.toBe('never');

    // An invitation from the page: its one-time link signs the person in, in another browser.
    await s.page.locator('parity-governance #i-email').fill('nina@globex.example');
    await s.page.locator('parity-governance #i-role').selectOption('analyst');
    await s.page.locator('parity-governance [data-testid="invite-form"] button[type="submit"]').click();
    await s.page.waitForSelector('parity-governance [data-testid="invite-link"]');
    const link = (await s.page.locator('parity-governance [data-testid="invite-link"]').textContent())!.trim();
    expect(link).toMatch(new RegExp(`^${t.url}/#invite=inv_`));
    expect(await axeViolations(s.page), 'axe with the invitations').toEqual([]);
    expect(s.errors).toEqual([]);
    await s.page.context().close();
    const nina = await browser.newContext({ locale: 'en-GB' });
    const page = await nina.newPage();
    await page.goto(link);
    await page.waitForSelector('parity-kpi-tile [data-testid="value"]');
    expect(await inApp(page, '[data-testid="who"]')).toBe(
      'Signed in as nina@globex.example (analyst) for Globex Freight',
    );
    await nina.close();
  });
  it('fetches the overview again when a new agreement version takes a snapshot between the tiles and the goals', async () => {
    // The goals are asked at the tiles' snapshot; a version that came into force in between took a
    // snapshot of its own, so that one is refused (the same bytes or a refusal) and the page asks again.
    const doc = structuredClone(
      (await api<{ agreement: Record<string, any> }>('/v1/agreement', await t.token('acme', 'admin'))).agreement,
    );
    doc.kpis.find((k: any) => k.id === 'lead_time').band.upper = 90;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const goals: number[] = [];
    // Statuses of the change's two calls, asserted outside the route handler (a throw there would
    // only fail the page's request).
    const changeStatuses: number[] = [];
    let changed = false;
    await page.route('**/v1/goals?*', async (route) => {
      if (!changed) {
        changed = true;
        const proposed = await fetch(`${t.url}/v1/agreement/proposals`, {
          method: 'POST',
          headers: { authorization: `Bearer ${await t.token('acme', 'admin')}`, 'content-type': 'application/json' },
          body: JSON.stringify({ document: doc, reason: 'a wider band while the page loads' }),
        });
        const id = ((await proposed.json()) as { id?: string }).id;
        changeStatuses.push(proposed.status);
        const approved = await fetch(`${t.url}/v1/agreement/proposals/${id}/approve`, {
          method: 'POST',
          headers: { authorization: `Bearer ${await t.token('globex', 'admin')}`, 'content-type': 'application/json' },
          body: '{}',
        });
        changeStatuses.push(approved.status);
      }
      // The first ask, sent after the change, is refused; the page's second is answered.
      const res = await route.fetch();
      goals.push(res.status());
      await route.fulfill({ response: res });
    });
    await startSession(page, tokens['acme']!);
    await page.goto(`${t.url}/`);
    await page.waitForSelector('parity-kpi-tile [data-testid="value"]');
    const latest = t.room.duck.snapshots.latest;
    expect(t.room.duck.agreementInForce?.since).toBe(latest);
    expect(changeStatuses).toEqual([201, 200]);
    expect(goals).toEqual([400, 200]);
    expect(await inApp(page, '[data-testid="snapshot"]')).toBe(String(latest));
    expect(await inApp(page, '[role="alert"]')).toBeNull();
    expect(errors).toEqual([]);
    await context.close();
  });
});
