// The dashboard page in a real browser: Debian's Chromium driven by playwright-core (no browser
// download). The page is loaded while traffic flows; once it stops, the numbers on the page must equal a
// scrape of /metrics; the drain button (clicked) and the ready button (keyboard) must change where new
// connections go. Screenshots go to dist/test-output/.
import test from 'ava';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePromText, sumOf } from '../../src/admin/prom-text.js';
import { fetchVia, startAdminFor, startHttpBackend, startHttpsBackend } from '../helpers/admin-harness.js';
import { startProxy } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

// The page functions below run in the browser; the test's tsconfig has no DOM library.
declare const document: { body: { dataset: Record<string, string | undefined> }; documentElement: { scrollWidth: number }; querySelector(sel: string): { textContent: string | null } | null };
declare const window: { innerWidth: number };

const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url));

testWithTools({ chromium: 'chromium' }, 'dashboard in Chromium: numbers equal /metrics, drain and ready buttons steer new connections, readable on a phone', async (t) => {
  const { chromium } = await import('playwright-core');
  const a = await startHttpBackend('a');
  const b = await startHttpBackend('b');
  const secure = await startHttpsBackend('secure');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    routes:
      - { match: { protocol: tls }, to: secure }
      - { match: { protocol: http }, to: web }
pools:
  web: { servers: ["${a.address}", "${b.address}"] }
  secure: { servers: ["${secure.address}"] }
admin: { bind: "127.0.0.1:0" }
`);
  const admin = await startAdminFor(proxy, { historyIntervalMs: 200 });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  t.teardown(async () => {
    await browser.close();
    await admin.close();
    await proxy.stop();
    await Promise.all([a.close(), b.close(), secure.close()]);
  });
  mkdirSync(OUT, { recursive: true });

  // Traffic flows while the page loads: HTTP and TLS, bounded in count and time.
  let stop = false;
  let sent = 0;
  const traffic = (async () => {
    const deadline = Date.now() + 20_000;
    while (!stop && sent < 400 && Date.now() < deadline) {
      await fetchVia(proxy.port(), { tls: sent % 3 === 0 });
      sent++;
    }
  })();
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(admin.url);
  await page.waitForSelector('[data-listener="main"] [data-stat="accepted"]');
  while (sent < 30) await new Promise((r) => setTimeout(r, 20));
  stop = true;
  await traffic;
  await new Promise((r) => setTimeout(r, 100));
  // A refresh that began after the traffic stopped: then the page shows what a scrape shows.
  const after = Date.now();
  await page.waitForFunction((at) => Number(document.body.dataset['refreshed'] ?? 0) > at + 50, after, { timeout: 10_000 });
  const m = parsePromText((await admin.get('/metrics')).text);
  const shown = async (sel: string) => Number(((await page.textContent(sel)) ?? '').replace(/[^0-9]/g, ''));
  t.is(await shown('[data-listener="main"] [data-stat="accepted"]'), sumOf(m, 'twinport_connections_accepted_total', { listener: 'main' }));
  t.is(await shown('[data-listener="main"] [data-stat="active"]'), sumOf(m, 'twinport_connections_active', { listener: 'main' }));
  t.is(await shown('[data-listener="main"] [data-reason="done"] td.num'), sumOf(m, 'twinport_connections_total', { listener: 'main', reason: 'done' }));
  t.is(sumOf(m, 'twinport_connections_total', { listener: 'main', reason: 'done' }), sent);
  // The TLS share over the history: a third of the connections were TLS.
  await page.waitForFunction(() => /%/.test(document.querySelector('[data-listener="main"] [data-stat="tls-share"]')?.textContent ?? ''), undefined, { timeout: 10_000 });
  const share = await shown('[data-listener="main"] [data-stat="tls-share"]');
  t.true(share >= 20 && share <= 45, `TLS share shown: ${share} %`);
  t.truthy(await page.$('[data-listener="main"] .chart canvas'), 'the chart is drawn');
  // Server rows show state and health in text (not colour alone).
  const row = `table[data-pool="web"] tr[data-server="${a.address}"]`;
  t.is((await page.textContent(`${row} [data-field="state"]`))?.trim(), 'ready');
  t.is((await page.textContent(`${row} [data-field="health"]`))?.trim(), 'up (unchecked)');
  await page.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true });

  // Click "Drain" on a: the API is called, the row says so, and new connections avoid a.
  await page.getByRole('button', { name: `Drain ${a.address} in pool web` }).click();
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.trim() === 'drain', `${row} [data-field="state"]`);
  t.regex((await page.textContent('#message')) ?? '', /is now drain/);
  const before = a.requests;
  for (let i = 0; i < 6; i++) t.is((await fetchVia(proxy.port())).body, 'b\n');
  t.is(a.requests, before, 'no new connection reached the drained server');

  // "Ready" from the keyboard: focus the button, press Enter.
  await page.getByRole('button', { name: `Ready ${a.address} in pool web` }).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.trim() === 'ready', `${row} [data-field="state"]`);
  const bodies = new Set<string>();
  for (let i = 0; i < 4; i++) bodies.add((await fetchVia(proxy.port())).body);
  t.true(bodies.has('a\n'), 'ready sends connections to a again');

  // A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForFunction((at) => Number(document.body.dataset['refreshed'] ?? 0) > at, Date.now(), { timeout: 10_000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  t.true(overflow <= 1, `page is ${overflow}px wider than a 375px screen`);
  await page.screenshot({ path: join(OUT, 'dashboard-phone.png'), fullPage: true });
  t.true(statSync(join(OUT, 'dashboard.png')).size > 5000);
  t.log(`screenshots: ${join(OUT, 'dashboard.png')}, ${join(OUT, 'dashboard-phone.png')}`);
  t.deepEqual(errors, [], 'no script errors on the page');
});
