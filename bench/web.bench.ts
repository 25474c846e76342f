/**
 * npm run bench:web — in headless Chromium against the demo room (two years, five KPIs, two
 * partners): the time from navigation to the first KPI tile showing a value (overview) and to
 * the first rendered chart (detail page), median of BENCH_WEB_LOADS cold loads each (a fresh
 * browser context: empty cache), and the size of the shipped JS and CSS, gzipped.
 */
import { readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createToken } from '../services/governance/token-repository.js';
import { buildApp } from '../assembly/app.js';
import { loadConfig } from '../services/platform/config.js';
import { seedDemoPoints } from '../assembly/demo.js';
import { demoAgreementFile } from '../services/platform/paths.js';
import { openRoom } from '../assembly/open-room.js';
import { webDist } from '../assembly/web-routes.js';
import { launchChromium } from '../tests/helpers/browser.js';
import { median } from './rounds.js';

const LOADS = Number(process.env['BENCH_WEB_LOADS'] ?? 10);

// In the page before any script: note the moment (ms since navigation) the first tile shows a
// value and the first chart has drawn marks, looking into the components' shadow roots.
const probe = `
  (() => {
    const find = () => {
      const app = document.querySelector('parity-app')?.shadowRoot;
      if (!app) return;
      if (window.__tile === undefined) {
        for (const t of app.querySelectorAll('parity-kpi-tile')) {
          const v = t.shadowRoot?.querySelector('[data-testid="value"]')?.textContent ?? '';
          if (/\\d/.test(v)) { window.__tile = performance.now(); break; }
        }
      }
      if (window.__chart === undefined) {
        const c = app.querySelector('parity-kpi-chart')?.shadowRoot;
        if (c && c.querySelectorAll('svg .role-mark path, svg .role-mark line').length > 0) window.__chart = performance.now();
      }
    };
    const loop = () => { find(); if (window.__tile === undefined || window.__chart === undefined) requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  })();
`;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-web-'));
  const room = await openRoom(
    loadConfig({ PARITY_DATA_DIR: dir, PARITY_AGREEMENT: demoAgreementFile(), DATABASE_URL: '', LOG_LEVEL: 'warn' }),
  );
  const app = await buildApp(room);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stderr.write('seeding the demo partnership…\n');
  const points = await seedDemoPoints(room);
  await app.reader.rollups?.loop.idle();
  await app.alerts?.engine.idle();
  const token = (await createToken(room.control.db, { partnerId: 'acme', role: 'analyst', name: 'bench' }, new Date()))
    .token;
  const browser = await launchChromium();
  const measure = async (path: string, key: '__tile' | '__chart') => {
    const out: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      // Signed in as the sign-in form does: the room's session cookie lands in the context.
      const signIn = await context.request.post(`${url}/v1/session`, { data: { token } });
      if (signIn.status() !== 200) throw new Error(`sign-in answered ${signIn.status()}: ${await signIn.text()}`);
      await context.addInitScript(probe);
      const page = await context.newPage();
      await page.goto(`${url}${path}`);
      await page.waitForFunction(
        (k) => (window as unknown as Record<string, number | undefined>)[k] !== undefined,
        key,
        { timeout: 30_000 },
      );
      out.push(await page.evaluate((k) => (window as unknown as Record<string, number>)[k]!, key));
      await context.close();
    }
    return out;
  };
  process.stderr.write(`${LOADS} cold loads of the overview and of a detail page…\n`);
  const tile = await measure('/', '__tile');
  const chart = await measure('/#/kpi/lead_time', '__chart');
  await browser.close();
  await app.close();
  await room.close();
  rmSync(dir, { recursive: true, force: true });

  const assets = join(webDist(), 'assets');
  let js = 0;
  let css = 0;
  for (const f of readdirSync(assets)) {
    const gz = gzipSync(readFileSync(join(assets, f))).length;
    if (f.endsWith('.js')) js += gz;
    else if (f.endsWith('.css')) css += gz;
  }
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
  const lines = [
    `Web benchmark: demo room (${points.toLocaleString('en')} points, two years, five KPIs, two partners), headless Chromium, ${LOADS} cold loads each (fresh context, empty cache), 1280×900; ${process.platform} ${process.arch}, ${cpus().length} cores, node ${process.version}`,
    '',
    '| measure | median | min | max | target |',
    '|---|---:|---:|---:|---|',
    `| navigation → first KPI tile with a value | ${median(tile).toFixed(0)} ms | ${Math.min(...tile).toFixed(0)} ms | ${Math.max(...tile).toFixed(0)} ms | ≤ 500 ms: ${median(tile) <= 500 ? 'met' : 'MISSED'} |`,
    `| navigation → first rendered chart (detail) | ${median(chart).toFixed(0)} ms | ${Math.min(...chart).toFixed(0)} ms | ${Math.max(...chart).toFixed(0)} ms | ≤ 1 s: ${median(chart) <= 1000 ? 'met' : 'MISSED'} |`,
    `| shipped JS, gzip (all chunks) | ${kb(js)} | | | ≤ 400 KB: ${js <= 400 * 1024 ? 'met' : 'MISSED'} |`,
    `| shipped CSS, gzip | ${kb(css)} (styles live in the components) | | | |`,
    '',
    `summary: first tile ${median(tile).toFixed(0)} ms, first chart ${median(chart).toFixed(0)} ms (medians of ${LOADS} cold loads), ${kb(js)} of JS`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
