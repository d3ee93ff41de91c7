import { expect, galata, test } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SHOTS = path.join(__dirname, '..', 'test-results');
const SIDEBAR = '#scanflow-sidebar';

/** Open a notebook of the server root's `notebooks/` copy and the Scanflow sidebar next to it. */
async function openWithSidebar(page: Page & { notebook: any; sidebar: any }, name: string): Promise<void> {
  await page.notebook.openByPath(`notebooks/${name}`);
  await page.notebook.activate(name);
  await page.sidebar.openTab('scanflow-sidebar');
  await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', `notebooks/${name}`);
}

/** Record every status each badge shows from now on (steps can be faster than a poll). */
async function recordBadgeStatuses(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: Record<string, string[]> = {};
    (window as any).__sfSeen = seen;
    const note = (el: Element) => {
      const step = (el as HTMLElement).dataset.step!;
      const status = (el as HTMLElement).dataset.status!;
      const list = (seen[step] = seen[step] ?? []);
      if (list[list.length - 1] !== status) {
        list.push(status);
      }
    };
    new MutationObserver(records => {
      for (const r of records) {
        const el = r.target as Element;
        if (el instanceof HTMLElement && el.classList.contains('sf-cell-badge')) {
          note(el);
        }
        r.addedNodes.forEach(n => n instanceof HTMLElement && n.classList.contains('sf-cell-badge') && note(n));
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  });
}

function badge(page: Page, step: string) {
  return page.locator(`.jp-NotebookPanel:not(.lm-mod-hidden) .sf-cell-badge[data-step="${step}"]`);
}

test.use({ autoGoto: true });

test.describe('Scanflow sidebar', () => {
  test('diamond: DAG, local run with live badges, runs with metrics, bad filter', async ({ page }) => {
    await openWithSidebar(page as any, 'diamond.ipynb');
    const nodes = page.locator(`${SIDEBAR} .sf-dag-node`);
    await expect(nodes).toHaveCount(4);
    expect((await nodes.evaluateAll(els => els.map(e => e.getAttribute('data-node')))).sort()).toEqual([
      'features',
      'load',
      'stats',
      'train'
    ]);
    // Layers: load above features/stats (side by side) above train.
    const y = async (id: string) => (await page.locator(`${SIDEBAR} .sf-dag-node[data-node="${id}"]`).boundingBox())!.y;
    expect(await y('load')).toBeLessThan(await y('features'));
    expect(await y('features')).toBe(await y('stats'));
    expect(await y('stats')).toBeLessThan(await y('train'));
    // The backend picker lists the three backends; local is usable here.
    await expect(page.locator(`${SIDEBAR} select.sf-backend option[value="local"]`)).toBeEnabled();
    await expect(page.locator(`${SIDEBAR} select.sf-backend option`)).toHaveCount(3);
    // Badges on the four executor cells before any run.
    await expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .sf-cell-badge')).toHaveCount(4);
    await page.screenshot({ path: path.join(SHOTS, 'diamond-before-run.png') });

    await recordBadgeStatuses(page);
    const eventRequests: string[] = [];
    page.on('request', r => {
      if (/\/scanflow\/api\/runs\/[^/]+\/events/.test(r.url())) {
        eventRequests.push(r.url());
      }
    });
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    for (const step of ['load', 'features', 'stats', 'train']) {
      await expect(badge(page, step)).toHaveAttribute('data-status', 'succeeded', { timeout: 120000 });
      await expect(page.locator(`${SIDEBAR} .sf-dag-node[data-node="${step}"]`)).toHaveAttribute('data-status', 'succeeded');
    }
    const seen = await page.evaluate(() => (window as any).__sfSeen as Record<string, string[]>);
    expect(seen.train).toContain('running');
    expect(seen.train[seen.train.length - 1]).toBe('succeeded');
    await expect(badge(page, 'train')).toContainText(/succeeded · \d/);
    // Live status came over Server-Sent Events, without falling back to polling.
    expect(eventRequests.some(u => !u.includes('format=json'))).toBe(true);
    expect(eventRequests.filter(u => u.includes('format=json'))).toEqual([]);

    // Clicking a DAG node selects its cell.
    await page.locator(`${SIDEBAR} .sf-dag-node[data-node="stats"]`).click();
    await expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active')).toContainText('%%executor stats');

    // Runs: the new run (newest first) with its steps; train logged `accuracy`.
    const run = page.locator(`${SIDEBAR} .sf-run`).first();
    await expect(run.locator('.sf-pill')).toHaveText('succeeded', { timeout: 30000 });
    await run.locator('.sf-run-head').click();
    await expect(run.locator('.sf-step')).toHaveCount(4, { timeout: 30000 });
    await expect(run.locator('.sf-step[data-step="train"] .sf-kv-metrics')).toContainText('accuracy=');
    await page.screenshot({ path: path.join(SHOTS, 'diamond-after-run.png') });

    // A bad MLflow filter shows the server's message.
    await page.locator(`${SIDEBAR} .sf-filter-input`).fill('this is not a filter');
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    await expect(page.locator(`${SIDEBAR} .sf-filter-error`)).toBeVisible();
    await expect(page.locator(`${SIDEBAR} .sf-run`)).toHaveCount(0);
    await page.locator(`${SIDEBAR} .sf-filter-input`).fill('');
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    await expect(page.locator(`${SIDEBAR} .sf-run`)).toHaveCount(1);
  });

  test('failing_step: the failure is on the right cell, with its traceback in the log', async ({ page }) => {
    await openWithSidebar(page as any, 'failing_step.ipynb');
    await expect(page.locator(`${SIDEBAR} .sf-dag-node`)).toHaveCount(4);
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    await expect(badge(page, 'explode')).toHaveAttribute('data-status', 'failed', { timeout: 120000 });
    await expect(badge(page, 'explode')).toContainText('ValueError: this step fails on purpose');
    await expect(badge(page, 'prepare')).toHaveAttribute('data-status', 'succeeded');
    await expect(badge(page, 'independent')).toHaveAttribute('data-status', 'succeeded', { timeout: 60000 });
    await expect(badge(page, 'after_explode')).toHaveAttribute('data-status', 'skipped', { timeout: 60000 });
    // The failed badge sits on the `%%executor explode` cell.
    const cell = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell', {
      has: page.locator('.sf-cell-badge[data-step="explode"]')
    });
    await expect(cell).toContainText('%%executor explode');
    await expect(page.locator(`${SIDEBAR} .sf-dag-node[data-node="explode"]`)).toHaveAttribute('data-status', 'failed');
    await expect(page.locator(`${SIDEBAR} button[data-action="Resume"]`)).toBeEnabled({ timeout: 30000 });
    await page.screenshot({ path: path.join(SHOTS, 'failing-step.png') });

    await badge(page, 'explode').click();
    const dialog = page.locator('.jp-Dialog .sf-log');
    await expect(dialog.locator('.sf-log-ename')).toHaveText('ValueError: this step fails on purpose');
    await expect(dialog.locator('.sf-log-traceback')).toContainText('ValueError');
    await expect(dialog.locator('.sf-log-text')).toBeVisible();
    await page.screenshot({ path: path.join(SHOTS, 'failing-step-log.png') });
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);
  });

  test('agents_loop: start agents, see them running, stop them', async ({ page }) => {
    await openWithSidebar(page as any, 'agents_loop.ipynb');
    await expect(page.locator(`${SIDEBAR} .sf-dag-node.sf-kind-agent`)).toHaveCount(2);
    await expect(page.locator(`${SIDEBAR} button[data-action="Stop agents"]`)).toBeDisabled();
    await page.locator(`${SIDEBAR} button[data-action="Start agents"]`).click();
    try {
      for (const name of ['monitor', 'planner']) {
        await expect(page.locator(`${SIDEBAR} .sf-agent[data-agent="${name}"] .sf-pill`)).toHaveText('running', {
          timeout: 90000
        });
      }
      // #15: agent nodes take the agent's state; sensor values readable; next run never in the past.
      await expect(page.locator(`${SIDEBAR} .sf-dag-node[data-node="monitor"]`)).toHaveAttribute('data-status', 'running');
      const next = page.locator(`${SIDEBAR} .sf-agent .sf-sensor-next`);
      await expect(next.first()).toBeVisible();
      for (const text of await next.allTextContents()) {
        expect(text).toMatch(/^(in \d.*|due now|—)$/);
      }
      for (const text of await page.locator(`${SIDEBAR} .sf-agent .sf-sensor-value`).allTextContents()) {
        expect(text).not.toMatch(/^\{"/);
      }
      await page.locator(`${SIDEBAR} .sf-section-agents`).scrollIntoViewIfNeeded();
      await expect(page.locator(`${SIDEBAR} button[data-action="Start agents"]`)).toBeDisabled();
      await page.screenshot({ path: path.join(SHOTS, 'agents-running.png') });
    } finally {
      // Stop them even when an assertion above failed (agents outlive the server otherwise).
      const stop = page.locator(`${SIDEBAR} button[data-action="Stop agents"]`);
      if (await stop.isEnabled()) {
        await stop.click();
      }
    }
    // Stopped agents are listed as stopped or not at all.
    await expect(page.locator(`${SIDEBAR} .sf-agent .sf-pill`, { hasText: 'running' })).toHaveCount(0, { timeout: 60000 });
  });

  test('parameterised: the typed form sends edited parameters with the run', async ({ page }) => {
    await openWithSidebar(page as any, 'parameterised.ipynb');
    const nRows = page.locator(`${SIDEBAR} .sf-params input[name="n_rows"]`);
    await expect(nRows).toHaveAttribute('type', 'number');
    await expect(nRows).toHaveValue('50');
    await expect(page.locator(`${SIDEBAR} .sf-params input[name="label"]`)).toHaveAttribute('type', 'text');
    await nRows.fill('4.5');
    await expect(page.locator(`${SIDEBAR} .sf-params .sf-error-text`)).toHaveText("n_rows must be a whole number (got '4.5')");
    await expect(page.locator(`${SIDEBAR} button[data-action="Run"]`)).toBeDisabled();
    await nRows.fill('7');
    await page.locator(`${SIDEBAR} .sf-config summary`).click();
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    await expect(badge(page, 'report')).toHaveAttribute('data-status', 'succeeded', { timeout: 120000 });
    const run = page.locator(`${SIDEBAR} .sf-run`).first();
    await run.locator('.sf-run-head').click();
    await expect(run.locator('.sf-kv-params')).toContainText('n_rows=7');
    await page.screenshot({ path: path.join(SHOTS, 'parameterised.png') });
  });

  test('an invalid notebook lists its validation errors with a link to the cell; Run is refused', async ({ page, tmpPath }) => {
    const cell = (source: string) => ({ cell_type: 'code', metadata: {}, outputs: [], execution_count: null, source });
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
      cells: [
        cell('%load_ext scanflow_jupyter\n%scanflow_app broken'),
        cell('%%executor a --outputs x\nx = 1'),
        cell('%%executor b --inputs y --outputs z\nz = y')
      ]
    };
    await page.contents.uploadContent(JSON.stringify(nb), 'text', `${tmpPath}/broken.ipynb`);
    await page.notebook.openByPath(`${tmpPath}/broken.ipynb`);
    await page.notebook.activate('broken.ipynb');
    await page.sidebar.openTab('scanflow-sidebar');
    const message = page.locator(`${SIDEBAR} .sf-message.sf-error`);
    await expect(message).toContainText("executor 'b' needs input 'y'");
    await expect(message.locator("code")).toHaveText("--outputs y");
    await expect(page.locator(`${SIDEBAR} button[data-action="Run"]`)).toBeDisabled();
    await expect(page.locator(`${SIDEBAR} button[data-action="Run"]`)).toHaveAttribute('title', /fix the validation errors/);
    await message.locator('.sf-cell-link').click();
    await expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active')).toContainText('%%executor b');
    await page.screenshot({ path: path.join(SHOTS, 'validation.png') });
  });

  test('the palette offers Scanflow: Run pipeline', async ({ page }) => {
    await openWithSidebar(page as any, 'linear_chain.ipynb');
    expect(await page.evaluate(() => (window as any).jupyterapp.commands.hasCommand('scanflow:run-pipeline'))).toBe(true);
    await page.keyboard.press('Control+Shift+C');
    await page.locator('#modal-command-palette input').fill('Scanflow: Run');
    await expect(page.locator('#modal-command-palette .lm-CommandPalette-item', { hasText: 'Scanflow: Run pipeline' })).toBeVisible();
    await page.keyboard.press('Enter');
    for (const step of ['extract', 'transform', 'report']) {
      await expect(badge(page, step)).toHaveAttribute('data-status', /succeeded|cached/, { timeout: 120000 });
    }
  });
});

// The user's settings go with every request: the run records its MLflow runs in the user's store,
// and the Runs section reads them from there.
const USER_STORE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-galata-store-'));
const USER_STORE = `sqlite:///${path.join(USER_STORE_DIR, 'mlflow.db')}`;

test.describe('Scanflow settings', () => {
  test.use({
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      'scanflow-jupyter:plugin': { trackingUri: USER_STORE, namespace: 'team-ui' }
    }
  });

  test('the tracking URI setting is applied to runs and to the Runs section', async ({ page }) => {
    await openWithSidebar(page as any, 'linear_chain.ipynb');
    await page.locator(`${SIDEBAR} .sf-config summary`).click();
    const config = page.locator(`${SIDEBAR} .sf-config`);
    await expect(config).toContainText(USER_STORE);
    await expect(config).toContainText('team-ui');
    await expect(config.locator('.sf-setting-source')).toHaveCount(2);
    await expect(config).not.toContainText('not applied');
    // (the badges may still show the palette test's run: follow this run in the Runs section)
    const posted = page.waitForRequest(r => r.method() === 'POST' && /\/scanflow\/api\/runs(\?|$)/.test(r.url()));
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    expect((await posted).postDataJSON().settings).toEqual({ tracking_uri: USER_STORE, namespace: 'team-ui' });
    // The Runs section lists the user's store: this run only.
    const run = page.locator(`${SIDEBAR} .sf-run`);
    await expect(run).toHaveCount(1, { timeout: 60000 });
    await expect(run.locator('.sf-pill')).toHaveText('succeeded', { timeout: 120000 });
    expect(fs.existsSync(path.join(USER_STORE_DIR, 'mlflow.db'))).toBe(true);
    await page.screenshot({ path: path.join(SHOTS, 'settings.png') });
  });
});

/** A code cell of a notebook written by a test. */
const codeCell = (source: string) => ({ cell_type: 'code', metadata: {}, outputs: [], execution_count: null, source });

/** Write a notebook into the test's folder, open it and the Scanflow sidebar next to it. */
async function writeAndOpen(page: any, dir: string, name: string, sources: string[]): Promise<void> {
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: sources.map(codeCell)
  };
  expect(await page.contents.uploadContent(JSON.stringify(nb), 'text', `${dir}/${name}`)).toBe(true);
  await page.notebook.openByPath(`${dir}/${name}`);
  await page.notebook.activate(name);
  await page.sidebar.openTab('scanflow-sidebar');
  await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', `${dir}/${name}`);
}

test.describe('Scanflow cancel', () => {
  test('Cancel kills the running step; the dependent does not run; Resume is offered', async ({ page, tmpPath }) => {
    await writeAndOpen(page, tmpPath, 'slowcancel.ipynb', [
      '%load_ext scanflow_jupyter\n%scanflow_app slowcancel',
      '%%executor slow --outputs x\nimport time\ntime.sleep(60)\nx = 1',
      '%%executor after --inputs x --outputs y\ny = x + 1'
    ]);
    await expect(page.locator(`${SIDEBAR} .sf-dag-node`)).toHaveCount(2);
    const cancel = page.locator(`${SIDEBAR} button[data-action="Cancel"]`);
    const resume = page.locator(`${SIDEBAR} button[data-action="Resume"]`);
    await expect(cancel).toBeDisabled();
    await expect(cancel).toHaveAttribute('title', /no run is in progress/);
    await recordBadgeStatuses(page);
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    await expect(badge(page, 'slow')).toHaveAttribute('data-status', 'running', { timeout: 60000 });
    await expect(cancel).toBeEnabled();
    await expect(resume).toBeDisabled();
    await page.screenshot({ path: path.join(SHOTS, 'cancel-running.png') });

    const started = Date.now();
    const cancelled = page.waitForResponse(r => r.request().method() === 'POST' && /\/runs\/[^/]+\/cancel/.test(r.url()));
    await cancel.click();
    expect((await cancelled).status()).toBe(202);
    await expect(badge(page, 'slow')).toHaveAttribute('data-status', 'killed', { timeout: 30000 });
    await expect(badge(page, 'slow')).toContainText(/^killed/);
    // Cancelled is not a failure: a neutral blue-grey, not the failure red (#15).
    await expect(badge(page, 'slow')).toHaveCSS('background-color', 'rgb(84, 110, 122)');
    // Well before the 60 s sleep would have ended.
    expect(Date.now() - started).toBeLessThan(30000);
    await expect(page.locator(`${SIDEBAR} .sf-dag-node[data-node="slow"]`)).toHaveAttribute('data-status', 'killed');
    // The dependent never ran: killed/skipped/pending, never succeeded.
    await expect(badge(page, 'after')).toHaveAttribute('data-status', /^(killed|skipped|pending|none)$/);
    const seen = await page.evaluate(() => (window as any).__sfSeen as Record<string, string[]>);
    expect(seen.slow).toContain('running');
    expect(seen.after ?? []).not.toContain('running');
    expect(seen.after ?? []).not.toContain('succeeded');
    await expect(cancel).toBeDisabled({ timeout: 30000 });
    await expect(resume).toBeEnabled({ timeout: 30000 });
    // The Runs section lists the run as killed.
    const run = page.locator(`${SIDEBAR} .sf-run`).first();
    await expect(run.locator('.sf-pill')).toHaveText('killed', { timeout: 60000 });
    await page.locator(`${SIDEBAR} .sf-section-runs`).scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'cancel-killed.png') });
  });
});

test.describe('Scanflow images', () => {
  // The offline base image (`scanflow build-base`): no registry is reachable on CI machines.
  test.use({
    mockSettings: { ...galata.DEFAULT_SETTINGS, 'scanflow-jupyter:plugin': { baseImage: 'scanflow/base' } }
  });

  test('Build images builds the step images with Docker, or says why it cannot', async ({ page }) => {
    test.setTimeout(240000);
    const config = await (await page.request.get('/scanflow/api/config?base_image=scanflow%2Fbase')).json();
    const docker = (config.backends as Array<{ name: string; available: boolean; reason: string | null }>).find(
      b => b.name === 'docker'
    )!;
    expect(docker).toBeTruthy();
    if (!docker.available && process.env.CI === 'true') {
      throw new Error(`CI=true but the docker backend is unavailable: ${docker.reason}`);
    }
    await openWithSidebar(page as any, 'linear_chain.ipynb');
    const build = page.locator(`${SIDEBAR} button[data-action="Build images"]`);
    if (!docker.available) {
      // Without an engine the button is disabled and says why.
      await expect(build).toBeDisabled();
      await expect(build).toHaveAttribute('title', `Build images unavailable: docker: ${docker.reason}`);
      await page.screenshot({ path: path.join(SHOTS, 'build-no-docker.png') });
      return;
    }
    await expect(build).toBeEnabled();
    await page.locator(`${SIDEBAR} .sf-config summary`).click();
    await expect(page.locator(`${SIDEBAR} .sf-config`)).toContainText('scanflow/base');
    const posted = page.waitForRequest(r => r.method() === 'POST' && /\/scanflow\/api\/builds(\?|$)/.test(r.url()));
    const finished = page.waitForResponse(
      async r => {
        if (r.request().method() !== 'GET' || !/\/scanflow\/api\/builds\/[^/?]+/.test(r.url())) {
          return false;
        }
        const body = await r.json().catch(() => null);
        return !!body && !['queued', 'running', 'pending', 'building'].includes(body.status);
      },
      { timeout: 180000 }
    );
    await build.click();
    expect((await posted).postDataJSON().settings).toEqual({ base_image: 'scanflow/base' });
    await expect(build).toBeDisabled();
    await expect(build).toHaveText('Build images…');
    await expect(page.getByText('Image build running…')).toBeVisible();
    const job = await (await finished).json();
    expect(job.status, job.log).toBe('succeeded');
    expect(Object.keys(job.images).sort()).toEqual(['extract', 'report', 'transform']);
    // The UI reports the finished build with the images it made.
    const note = page.locator('.Toastify__toast', { hasText: 'Image build succeeded' });
    await expect(note).toBeVisible({ timeout: 20000 });
    await expect(note).toContainText('Image build succeeded: 3 images for extract, transform, report');
    for (const image of Object.values(job.images as Record<string, string>)) {
      expect(image).toMatch(/^scanflow\/linear-chain-(extract|transform|report):\w+$/);
    }
    await expect(build).toBeEnabled();
    await page.screenshot({ path: path.join(SHOTS, 'build-images.png') });
  });
});
