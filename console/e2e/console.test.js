// The consoles end to end, in Debian's Chromium, against the running `make run` stack
// (scripts/demo with AIRLOCK_DEMO_STAY=1; scripts/console-e2e starts it and runs this file).
// What a user does is done in the browser; only what the design keeps out of it is done with the
// CLI: signing with a release manager's key (a private key never enters a web page).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { accessibilityViolations, launch, open, screenshot, signIn, stack, viewports } from './browser.js';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

const hub = stack.hub.url;
const gateway = stack.gateway.url;
const minute = 60_000;

function noProblems(page) {
  assert.deepEqual(page.problems, [], 'the browser logged errors');
}

// The page does not scroll sideways: everything fits the viewport's width (tables scroll in
// their own box).
async function fitsWidth(page) {
  const [content, viewport] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(content <= viewport, `the page is ${content} px wide in a ${viewport} px viewport`);
}

describe('hub console', () => {
  test('a wrong token is refused with a reason, and nothing is shown', async () => {
    const page = await open(browser);
    await page.goto(`${hub}/console/`);
    await page.getByLabel('API token').fill('alk_0000000000000000000000000000000000000000000000000000000000000000');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').filter({ hasText: 'check the token' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
    // The 401 of the refused sign-in is the one expected failure.
    page.problems = page.problems.filter((p) => !p.includes('401'));
    noProblems(page);
  });

  test('a release manager signs in and sees the example model, its versions, releases and channels', async () => {
    const page = await open(browser);
    await signIn(page, hub, stack.hub.tokens['release-manager']);
    await page.getByRole('link', { name: 'visual-inspection' }).waitFor();
    await screenshot(page, 'hub-models');
    await page.getByRole('link', { name: 'visual-inspection' }).click();
    await page.getByRole('region', { name: 'version 1.1.0' }).waitFor();
    await page.getByRole('region', { name: 'version 1.0.0' }).waitFor();
    const v110 = page.getByRole('region', { name: 'version 1.1.0' });
    assert.match(await v110.innerText(), /production/);
    assert.match(await v110.innerText(), /accuracy/);
    await screenshot(page, 'hub-model');
    await page.getByRole('link', { name: 'Releases' }).click();
    await page.getByRole('region', { name: 'Releases' }).getByText('publisher').first().waitFor();
    await page.getByRole('link', { name: 'Channels' }).click();
    const production = page.getByRole('region', { name: 'channel production' });
    await production.getByText('release-manager').first().waitFor();
    assert.match(await production.innerText(), /1\.1\.0/);
    await screenshot(page, 'hub-channels');
    // Not an admin: no audit log offered.
    assert.equal(await page.getByRole('link', { name: 'Audit log' }).count(), 0);
    noProblems(page);
  });

  test('a publisher is not offered to deploy; an admin sees the audit log', async () => {
    const publisher = await open(browser);
    await signIn(publisher, hub, stack.hub.tokens.publisher);
    await publisher.getByRole('link', { name: 'Deployments' }).click();
    await publisher.getByRole('region', { name: 'Deployments' }).waitFor();
    assert.equal(await publisher.getByRole('link', { name: 'New deployment' }).count(), 0);
    noProblems(publisher);

    const admin = await open(browser);
    await signIn(admin, hub, stack.hub.tokens.admin);
    await admin.getByRole('link', { name: 'Audit log' }).click();
    await admin.getByRole('region', { name: 'Audit log' }).getByText('deployment.create').first().waitFor();
    await screenshot(admin, 'hub-audit', { fullPage: false });
    noProblems(admin);
  });
});

describe('a deployment made in the hub console, approved in the gateway console', () => {
  test('deploy vibration-anomaly, approve it at plant-1, watch the devices take it', async () => {
    // A release manager's signatures make the channel (the CLI: keys stay out of the browser).
    const env = {
      ...process.env,
      AIRLOCK_HUB: hub,
      AIRLOCK_CA_FILE: stack.hub.ca,
      AIRLOCK_REGISTRY_TOKEN: stack.hub.tokens['release-manager'],
    };
    for (const key of ['manager-a', 'manager-b']) {
      execFileSync(stack.airlock, ['promote', 'vibration-anomaly', '1.0.0', '--channel', 'production', '-k', `${stack.work}/keys/${key}.key`], { env, stdio: 'pipe' });
    }

    const page = await open(browser);
    await signIn(page, hub, stack.hub.tokens['release-manager']);
    await page.getByRole('link', { name: 'Deployments' }).click();
    await page.getByRole('link', { name: 'New deployment' }).click();
    await page.getByLabel('Model').selectOption('vibration-anomaly');
    await page.getByLabel('Channel').selectOption('production');
    await page.getByRole('checkbox', { name: /plant-1/ }).check();
    await page.getByLabel(/Devices \(labels/).fill('line=3');
    await page.getByLabel('Waves', { exact: true }).fill('1,100%');
    await page.getByLabel(/Health window/).fill('3s');
    await page.getByRole('button', { name: 'Preview' }).click();
    const preview = page.getByRole('region', { name: 'Preview', exact: true });
    await preview.waitFor();
    assert.match(await preview.innerText(), /3 device/);
    await screenshot(page, 'hub-new-deployment');
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.getByRole('heading', { name: /vibration-anomaly 1\.0\.0/ }).waitFor();
    const id = page.url().split('/').at(-1);
    assert.match(id, /^dep-/);
    // The hub delivers it to plant-1, whose operator must approve it before any device gets it.
    await page.getByRole('region', { name: 'Deliveries' }).getByText('available').waitFor({ timeout: 2 * minute });
    // Paused and resumed from the hub: both recorded, and the deployment goes on.
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('heading', { level: 1 }).getByText('paused').waitFor();
    await page.getByRole('region', { name: 'History' }).getByText('paused', { exact: true }).waitFor();
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('region', { name: 'History' }).getByText('resumed', { exact: true }).waitFor();
    assert.equal(await page.getByRole('heading', { level: 1 }).getByText('paused').count(), 0);

    const operator = await open(browser, viewports.tablet);
    await signIn(operator, gateway, stack.gateway.token);
    // Before: no camera has the model.
    await operator.getByRole('link', { name: 'Devices' }).click();
    await operator.getByRole('region', { name: 'Devices' }).getByText('visual-inspection').first().waitFor();
    assert.equal(await operator.getByRole('region', { name: 'Devices' }).getByText(/vibration-anomaly/).count(), 0);
    await operator.getByRole('link', { name: 'Approvals' }).click();
    await operator.getByRole('row').filter({ hasText: id }).getByRole('link', { name: /vibration-anomaly 1\.0\.0/ }).click();
    await operator.getByRole('region', { name: 'Signed by' }).getByText('publisher').first().waitFor();
    await screenshot(operator, 'gateway-approval');
    await fitsWidth(operator);
    // By keyboard: the comment, then Tab to Approve and Enter.
    await operator.getByLabel(/Comment/).fill('vibration sensors on line 3 checked');
    await operator.getByLabel(/Comment/).focus();
    await operator.keyboard.press('Tab');
    await operator.keyboard.press('Enter');
    await operator.getByText('Decided by').waitFor();
    assert.match(await operator.getByRole('heading', { level: 1 }).innerText(), /approved/);

    // The rollout at the site: each device goes from pending to done, the canary first.
    await operator.getByRole('link', { name: 'Rollouts' }).click();
    await operator.getByRole('link', { name: id }).click();
    await operator.getByRole('heading', { level: 1 }).getByText('complete').waitFor({ timeout: 3 * minute });
    await screenshot(operator, 'gateway-rollout');
    await operator.getByRole('link', { name: 'Devices' }).click();
    const devices = operator.getByRole('region', { name: 'Devices' });
    await devices.getByText('vibration-anomaly').first().waitFor();
    assert.equal(await devices.getByText(/vibration-anomaly 1\.0\.0/).count(), 3);
    await screenshot(operator, 'gateway-devices');
    await fitsWidth(operator);

    // The hub hears of it: the site's rollout is complete on the deployment's page.
    await page.getByRole('region', { name: 'rollout at plant-1' }).getByText('complete').waitFor({ timeout: minute });
    await screenshot(page, 'hub-deployment');
    noProblems(page);
    noProblems(operator);
  });
});

describe('refusals in the browser', () => {
  test('an operator rejects a delivery with a comment; the release manager cancels the deployment', async () => {
    const page = await open(browser);
    await signIn(page, hub, stack.hub.tokens['release-manager']);
    await page.goto(`${hub}/console/#/deployments/new?model=visual-inspection`);
    await page.getByLabel('Channel').selectOption('production');
    await page.getByRole('checkbox', { name: /plant-1/ }).check();
    await page.getByLabel(/Devices \(labels/).fill('line=3');
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await page.getByRole('heading', { name: /visual-inspection 1\.1\.0/ }).waitFor();
    const id = page.url().split('/').at(-1);
    await page.getByRole('region', { name: 'Deliveries' }).getByText('available').waitFor({ timeout: 2 * minute });

    const operator = await open(browser);
    await signIn(operator, gateway, stack.gateway.token);
    await operator.getByRole('row').filter({ hasText: id }).getByRole('link').click();
    await operator.getByLabel(/Comment/).fill('not during the night shift');
    await operator.getByRole('button', { name: 'Reject' }).click();
    await operator.getByRole('heading', { level: 1 }).getByText('rejected').waitFor();
    assert.match(await operator.locator('main').innerText(), /not during the night shift/);

    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Cancel deployment' }).click();
    await page.getByRole('heading', { level: 1 }).getByText('cancelled').waitFor();
    await page.getByRole('region', { name: 'History' }).getByText('cancelled in the console').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Pause' }).count(), 0);
    noProblems(page);
    noProblems(operator);
  });
});

describe('gateway console', () => {
  test('an operator makes an enrollment token, sees it listed, and withdraws it', async () => {
    const page = await open(browser);
    await signIn(page, gateway, stack.gateway.token);
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByLabel('Labels the device gets').fill('line=4, cell=z');
    await page.getByRole('button', { name: 'Make a token' }).click();
    const shown = page.getByRole('status').filter({ hasText: 'shown once' });
    await shown.waitFor();
    assert.match(await shown.innerText(), /alken_[0-9a-f]{64}/);
    const row = page.getByRole('region', { name: 'Enrollment tokens' }).getByRole('row').filter({ hasText: 'cell=z' });
    await row.getByText('open').waitFor();
    await screenshot(page, 'gateway-enrollment');
    page.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: 'Withdraw' }).click();
    await row.waitFor({ state: 'detached' });
    noProblems(page);
  });

  test('a viewer sees the queue and the devices but is offered no action', async () => {
    const token = execFileSync(stack.gateway.binary, ['token', 'create', '--name', 'vera', '--role', 'viewer', '--config', stack.gateway.config], { encoding: 'utf8' }).trim();
    const page = await open(browser);
    await signIn(page, gateway, token);
    assert.match(await page.locator('.who').innerText(), /vera · viewer/);
    await page.getByRole('region', { name: 'Approvals' }).first().waitFor();
    await page.getByRole('region', { name: 'Approvals' }).first().getByRole('link').first().click();
    await page.getByRole('region', { name: 'Signed by' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0);
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByRole('region', { name: 'Devices' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Revoke' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Make a token' }).count(), 0);
    noProblems(page);
  });
});

describe('monitoring', () => {
  test('a drift alert appears on the hub after shifted inputs reach a camera', async () => {
    const page = await open(browser);
    await signIn(page, hub, stack.hub.tokens['release-manager']);
    await page.goto(`${hub}/console/#/monitor/visual-inspection?since=15m`);
    await page.getByRole('region', { name: 'Summary per version' }).waitFor();
    const alerts = page.getByRole('region', { name: 'Drift alerts' });
    const before = (await alerts.count()) ? await alerts.locator('tbody tr').count() : 0;

    // cam-a had only calm pictures so far; now its lighting changes too.
    const requests = readFileSync(stack.drift_inputs, 'utf8').split('\n').filter(Boolean);
    for (const body of requests) {
      const answer = await fetch(`${stack.agents[0]}/v2/models/visual-inspection/infer`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
      });
      assert.equal(answer.status, 200);
    }
    await page.waitForFunction(
      (n) => document.querySelectorAll('[aria-label="Drift alerts"] tbody tr').length > n,
      before,
      { timeout: 2 * minute, polling: 1000 },
    );
    await page.getByRole('status').filter({ hasText: 'drift alert' }).waitFor();
    await screenshot(page, 'hub-monitoring');
    noProblems(page);
  });

  test("the gateway shows its own site's telemetry and drift alerts", async () => {
    const page = await open(browser, viewports.tablet);
    await signIn(page, gateway, stack.gateway.token);
    await page.getByRole('link', { name: 'Telemetry' }).click();
    await page.getByLabel('Model').selectOption('visual-inspection');
    await page.getByRole('region', { name: 'Summary per version' }).getByText('1.1.0').waitFor();
    await page.getByRole('region', { name: 'Drift alerts' }).getByText('image/channel0').first().waitFor();
    await page.getByRole('status').filter({ hasText: 'drift alert' }).waitFor();
    await fitsWidth(page);
    await screenshot(page, 'gateway-telemetry');
    noProblems(page);
  });

  test('every page fits 1280×800 and a 10-inch tablet, and passes axe-core\'s WCAG 2.1 AA rules', async () => {
    const consoles = [
      [hub, stack.hub.tokens.admin, ['#/models', '#/models/visual-inspection', '#/models/visual-inspection/releases', '#/models/visual-inspection/channels', '#/deployments', `#/deployments/${stack.deployments[1]}`, '#/deployments/new', '#/monitor/visual-inspection', '#/gateways', '#/gateways/plant-1', '#/audit']],
      [gateway, stack.gateway.token, ['#/approvals', '#/devices', '#/rollouts', `#/rollouts/${stack.deployments[1]}`, '#/telemetry']],
    ];
    for (const [name, viewport] of Object.entries(viewports)) {
      for (const [url, token, pages] of consoles) {
        const page = await open(browser, viewport);
        await signIn(page, url, token);
        for (const hash of pages) {
          await page.goto(`${url}/console/${hash}`);
          await page.locator('main h1').first().waitFor();
          await page.waitForLoadState('networkidle');
          await fitsWidth(page);
          assert.deepEqual(await accessibilityViolations(page), [], `${url}/console/${hash} at ${name}`);
          if (hash === pages[0]) {
            await screenshot(page, `${url === hub ? 'hub' : 'gateway'}-${name}`);
          }
        }
        noProblems(page);
      }
    }
  });
});
