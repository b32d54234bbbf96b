// What the console tests share: the running stack's addresses and tokens (stack.json, written by
// scripts/demo), Debian's Chromium driven by playwright-core, and a page that records every
// console error and failed request so that a test can assert there were none.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const stack = JSON.parse(readFileSync(process.env.AIRLOCK_STACK ?? '', 'utf8'));
export const shots = process.env.AIRLOCK_SCREENSHOTS ?? '';

export const viewports = {
  desktop: { width: 1280, height: 800 },
  // A 10-inch tablet held upright, as an operator carries it on the shop floor.
  tablet: { width: 800, height: 1280 },
};

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

// A new page at the viewport; page.problems collects console errors, uncaught exceptions and
// failed requests (a 4xx/5xx the test did not expect shows up here too).
export async function open(browser, viewport = viewports.desktop) {
  // The demo's CAs are not the system's: the hub and the gateway are on loopback, made by the
  // test's own scripts/demo, so their certificates are not what is under test here.
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') {
      page.problems.push(`console: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => page.problems.push(`exception: ${e.message}`));
  page.on('requestfailed', (r) => page.problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return page;
}

export async function signIn(page, url, token) {
  await page.goto(`${url}/console/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

// name.png in AIRLOCK_SCREENSHOTS (docs/console/ when renewing the docs' pictures): the whole page,
// or with fullPage false what the viewport shows (for a page as long as the audit log).
export async function screenshot(page, name, { fullPage = true } = {}) {
  if (!shots) {
    return;
  }
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

// The page's accessibility violations by axe-core's WCAG 2.1 A and AA rules, as
// "rule: what (where)" lines. Evaluated through the DevTools protocol, which the page's
// Content-Security-Policy does not govern, so the console's own policy stays as it ships.
const axeSource = readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
export async function accessibilityViolations(page) {
  const violations = await page.evaluate(async (source) => {
    (0, eval)(source);
    const result = await window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')})`);
  }, axeSource);
  return violations;
}
