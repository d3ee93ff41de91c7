/**
 * The sidebar as a data scientist uses it (#15): output notebooks open read-only, runs started
 * elsewhere appear, filters reach step metrics, badges stay out of the code and turn stale, validation
 * as you type, parameters survive tab switches, keyboard and contrast. Screenshots (light and dark)
 * go to test-results/.
 */
import { expect, galata, test } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import AxeBuilder from '@axe-core/playwright';

import { contrastRatio, parseColor } from '../../src/contrast';

const SHOTS = path.join(__dirname, '..', 'test-results');
const SIDEBAR = '#scanflow-sidebar';
const REPO = path.resolve(__dirname, '..', '..', '..');
const ROOT = path.join(REPO, 'labextension', 'ui-tests', '.galata-root', 'root');
const SCANFLOW = process.env.SCANFLOW_CLI || path.join(REPO, '.venv', 'bin', 'scanflow');
const PANEL = '.jp-NotebookPanel:not(.lm-mod-hidden)';

async function openWithSidebar(page: any, name: string): Promise<void> {
  await page.notebook.openByPath(`notebooks/${name}`);
  await page.notebook.activate(name);
  await page.sidebar.openTab('scanflow-sidebar');
  await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', `notebooks/${name}`);
}

function badge(page: Page, step: string) {
  return page.locator(`${PANEL} .sf-cell-badge[data-step="${step}"]`);
}

/** Run a notebook with the CLI in the server root, as a user in a terminal would (not through the sidebar). */
function cliRun(notebook: string, ...args: string[]): void {
  const done = spawnSync(SCANFLOW, ['run', notebook, ...args], { cwd: ROOT, encoding: 'utf-8', timeout: 170000 });
  expect(done.status, `${done.stdout}\n${done.stderr}`).toBe(0);
}

/** Every badge: font size >= 12 px and text/background contrast >= 4.5:1. */
async function checkBadgeContrast(page: Page, theme: string): Promise<void> {
  const styles = await page.locator(`${PANEL} .sf-cell-badge`).evaluateAll(els =>
    els.map(el => {
      const cs = getComputedStyle(el);
      let bgEl: Element | null = el;
      let bg = cs.backgroundColor;
      // a transparent badge shows what is behind it
      while (bgEl && /rgba\(.*, 0\)$|transparent/.test(bg)) {
        bgEl = bgEl.parentElement;
        bg = bgEl ? getComputedStyle(bgEl).backgroundColor : 'rgb(255, 255, 255)';
      }
      return { step: (el as HTMLElement).dataset.step, status: (el as HTMLElement).dataset.status, color: cs.color, bg, size: cs.fontSize };
    })
  );
  expect(styles.length).toBeGreaterThan(0);
  for (const s of styles) {
    const bg = parseColor(s.bg);
    const ratio = contrastRatio(parseColor(s.color, bg), bg);
    expect(parseFloat(s.size), `${theme} ${s.step} font`).toBeGreaterThanOrEqual(12);
    expect(ratio, `${theme} ${s.step} (${s.status}) ${s.color} on ${s.bg}`).toBeGreaterThanOrEqual(4.5);
  }
}

test.use({ autoGoto: true });

test.describe('Scanflow sidebar (#15)', () => {
  test('linear_chain: badges above the code, output notebooks read-only, stale after an edit, keyboard, contrast', async ({
    page,
    tmpPath
  }) => {
    // A copy whose steps no earlier test ran: nothing is served from the cache (a cached step writes no
    // output notebook).
    const nb = JSON.parse(fs.readFileSync(path.join(REPO, 'notebooks', 'linear_chain.ipynb'), 'utf-8'));
    const token = `_fresh = ${Date.now()}  # the cache key ignores comments, not code\n`;
    for (const cell of nb.cells) {
      const source = Array.isArray(cell.source) ? cell.source.join('') : cell.source;
      if (source.startsWith('%%executor')) {
        cell.source = source.replace('\n', `\n${token}`);
      }
    }
    await page.contents.uploadContent(JSON.stringify(nb), 'text', `${tmpPath}/linear_chain.ipynb`);
    await page.notebook.openByPath(`${tmpPath}/linear_chain.ipynb`);
    await page.notebook.activate('linear_chain.ipynb');
    await page.sidebar.openTab('scanflow-sidebar');
    const nbPath = `${tmpPath}/linear_chain.ipynb`;
    await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', nbPath);
    await expect(badge(page, 'report')).toHaveCount(1);
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    for (const step of ['extract', 'transform', 'report']) {
      await expect(badge(page, step)).toHaveAttribute('data-status', /succeeded|cached/, { timeout: 120000 });
    }
    // Badges never overlap the code editor of their cell (they sit in a row above it).
    for (const step of ['extract', 'transform', 'report']) {
      const cell = page.locator(`${PANEL} .jp-Cell`, { has: page.locator(`.sf-cell-badge[data-step="${step}"]`) });
      const b = (await badge(page, step).boundingBox())!;
      const editor = (await cell.locator('.jp-InputArea-editor').boundingBox())!;
      const prompt = (await cell.locator('.jp-InputPrompt').boundingBox())!;
      expect(b.y + b.height, `${step} badge above the code`).toBeLessThanOrEqual(editor.y + 0.5);
      expect(b.x, `${step} badge aligned with the code`).toBeGreaterThanOrEqual(prompt.x + prompt.width - 1);
    }
    await checkBadgeContrast(page, 'light');
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-badges-light.png') });

    // Cell numbers: the DAG node says `cell N` and selecting it activates the N-th cell (1-based).
    const title = await page.locator(`${SIDEBAR} .sf-dag-node[data-node="transform"] title`).textContent();
    const n = Number(/cell (\d+)/.exec(title ?? '')![1]);
    await page.locator(`${SIDEBAR} .sf-dag-node[data-node="transform"]`).click();
    const active = await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.content.activeCellIndex);
    expect(active + 1).toBe(n);
    expect(n).toBe(5);

    // The log's "open output notebook": a read-only tab, no 404, no error, the sidebar keeps its notebook.
    await badge(page, 'transform').click();
    const open = page.locator('.jp-Dialog .sf-open-output');
    await expect(open).toBeVisible();
    await open.click();
    const viewer = page.locator('.sf-output-notebook:not(.lm-mod-hidden)');
    await expect(viewer).toBeVisible();
    await expect(viewer).toHaveAttribute('data-step', 'transform');
    await expect(viewer.locator('.sf-onb-source').filter({ hasText: 'scaled = scale(readings, 10)' })).toHaveCount(1);
    await expect(viewer.locator('.sf-onb-outputs')).not.toHaveCount(0);
    await expect(viewer.locator('.sf-onb-note')).toContainText('read-only');
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);
    await expect(page.locator('.Toastify__toast--error')).toHaveCount(0);
    await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', nbPath);
    await expect(page.locator(`${SIDEBAR} .sf-app-name`)).toContainText('linear-chain');
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-output-notebook.png') });
    // Closing it asks nothing (it is not a document).
    await page.locator('#jp-main-dock-panel .lm-TabBar-tab', { hasText: 'transform · output' }).locator('.lm-TabBar-tabCloseIcon').click();
    await expect(viewer).toHaveCount(0);
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);

    // The Runs section's `notebook` button opens the same viewer.
    await page.notebook.activate('linear_chain.ipynb');
    const run = page.locator(`${SIDEBAR} .sf-run`).first();
    await run.locator('.sf-run-head').click();
    await run.locator('.sf-step[data-step="report"] .sf-step-notebook').click();
    await expect(page.locator('.sf-output-notebook[data-step="report"]')).toBeVisible();
    await expect(page.locator('.Toastify__toast--error')).toHaveCount(0);
    await page.notebook.activate('linear_chain.ipynb');

    // Editing a step's cell makes its badge stale; the others keep their status.
    const before = await badge(page, 'extract').getAttribute('data-status');
    await page.notebook.setCell(4, 'code', `%%executor transform --inputs readings --outputs scaled\n${token}scaled = scale(readings, 100)`);
    await expect(badge(page, 'transform')).toHaveAttribute('data-status', 'stale');
    await expect(badge(page, 'transform')).toHaveText(/^stale · was (succeeded|cached)/);
    await expect(badge(page, 'extract')).toHaveAttribute('data-status', before!);

    // Keyboard: ⟳ and the Runs rows take focus; Enter on ⟳ reloads the runs.
    const refresh = page.locator(`${SIDEBAR} .sf-refresh`);
    await refresh.focus();
    expect(await page.evaluate(() => document.activeElement?.classList.contains('sf-refresh'))).toBe(true);
    const reloaded = page.waitForRequest(r => /\/scanflow\/api\/runs\?/.test(r.url()));
    await page.keyboard.press('Enter');
    await reloaded;
    await run.locator('.sf-run-head').focus();
    expect(await page.evaluate(() => document.activeElement?.classList.contains('sf-run-head'))).toBe(true);

    await page.theme.setDarkTheme();
    // the theme's variables reach the sidebar (its background turns dark) before measuring
    await expect
      .poll(async () => {
        const bgs = await page.evaluate(sel =>
          [sel, '#jp-menu-panel', '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook'].map(q => {
            const el = document.querySelector(q);
            return el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)';
          }),
          SIDEBAR
        );
        return Math.max(...bgs.map(bg => contrastRatio(parseColor(bg), [0, 0, 0])));
      })
      .toBeLessThan(3);
    await checkBadgeContrast(page, 'dark');
    // Headless Chromium's full-page screenshot can keep parts painted in the old theme (the computed
    // styles are dark): element screenshots are repainted.
    await page.locator(SIDEBAR).screenshot({ path: path.join(SHOTS, 'sidebar-only-dark.png') });
    await page.locator(`${PANEL} .jp-Cell`, { has: page.locator('.sf-cell-badge[data-step="transform"]') }).screenshot({
      path: path.join(SHOTS, 'sidebar-stale-cell-dark.png')
    });
    await page.theme.setLightTheme();
    await page.notebook.save(); // the scratch copy is deleted after the test: no unsaved-changes prompt
  });

  test('diamond: a CLI run appears without reload; filters reach step metrics; bad and empty filters', async ({ page }) => {
    await openWithSidebar(page, 'diamond.ipynb');
    const runs = page.locator(`${SIDEBAR} .sf-run`);
    const before = await runs.count();
    cliRun('notebooks/diamond.ipynb');
    // No reload: the sidebar finds the run in the store and the Runs section reloads.
    await expect(runs).toHaveCount(before + 1, { timeout: 30000 });
    await expect(badge(page, 'train')).toHaveAttribute('data-status', /succeeded|cached/, { timeout: 30000 });

    // `train` logs accuracy on its step run: the documented filter finds the pipeline run.
    const input = page.locator(`${SIDEBAR} .sf-filter-input`);
    await input.fill('metrics.accuracy > 0');
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    await expect(runs).not.toHaveCount(0);
    await expect(page.locator(`${SIDEBAR} .sf-filter-error`)).toHaveCount(0);
    // Filter again with the same text: it reloads.
    const again = page.waitForRequest(r => /\/scanflow\/api\/mlflow\/runs\?/.test(r.url()));
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    await again;
    await input.fill('metrics.accuracy > 2');
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    await expect(page.locator(`${SIDEBAR} .sf-runs-empty`)).toHaveText('No runs match “metrics.accuracy > 2”.');
    await input.fill('this is not a filter');
    await page.locator(`${SIDEBAR} .sf-filter button`).click();
    const error = page.locator(`${SIDEBAR} .sf-filter-error`);
    await expect(error).toBeVisible();
    await expect(error).not.toContainText('parentRunId');
    await expect(error).not.toContainText('IS NULL');
    await page.locator(`${SIDEBAR} .sf-section-runs`).scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-filter-error.png') });
  });

  test('validation as you type; Build disabled with the reason visible; parameters and backend survive tab switches', async ({
    page,
    tmpPath
  }) => {
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
      cells: [
        '%load_ext scanflow_jupyter\n%scanflow_app typing',
        '%%executor a --outputs x\nx = 1',
        '%%executor b --inputs x --outputs z\nz = x'
      ].map(source => ({ cell_type: 'code', metadata: {}, outputs: [], execution_count: null, source }))
    };
    await page.contents.uploadContent(JSON.stringify(nb), 'text', `${tmpPath}/typing.ipynb`);
    await page.notebook.openByPath(`${tmpPath}/typing.ipynb`);
    await page.notebook.activate('typing.ipynb');
    await page.sidebar.openTab('scanflow-sidebar');
    const build = page.locator(`${SIDEBAR} button[data-action="Build images"]`);
    await expect(page.locator(`${SIDEBAR} .sf-dag-node`)).toHaveCount(2);
    await expect(page.locator(`${SIDEBAR} .sf-message.sf-error`)).toHaveCount(0);
    // Typed, not saved: b now needs `y`, which nobody produces.
    await page.notebook.setCell(2, 'code', '%%executor b --inputs y --outputs z\nz = y');
    const message = page.locator(`${SIDEBAR} .sf-message.sf-error`);
    await expect(message).toContainText("executor 'b' needs input 'y'");
    await expect(page.locator(`${SIDEBAR} .sf-unsaved`)).toBeVisible();
    expect(await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.context.model.dirty)).toBe(true);
    await expect(build).toBeDisabled();
    await expect(page.locator(`${SIDEBAR} .sf-reasons li`, { hasText: 'Build images' })).toContainText(
      'fix the validation errors listed above first'
    );
    await expect(message.locator('.sf-cell-link')).toHaveText('cell 3');
    await message.locator('.sf-cell-link').focus();
    expect(await page.evaluate(() => document.activeElement?.classList.contains('sf-cell-link'))).toBe(true);
    await page.keyboard.press('Enter');
    await expect(page.locator(`${PANEL} .jp-Cell.jp-mod-active`)).toContainText('%%executor b');
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-typing-invalid.png') });
    // Typed back: valid again, without saving.
    await page.notebook.setCell(2, 'code', '%%executor b --inputs x --outputs z\nz = x');
    await expect(message).toHaveCount(0);
    await expect(page.locator(`${SIDEBAR} .sf-reasons`, { hasText: 'validation' })).toHaveCount(0);

    // Parameters and backend survive a tab switch; edited values are marked.
    // (the file browser is hidden behind the Scanflow tab: open it the way a link would)
    await page.evaluate(async () => {
      await (window as any).jupyterapp.commands.execute('docmanager:open', { path: 'notebooks/parameterised.ipynb' });
    });
    await page.notebook.activate('parameterised.ipynb');
    const nRows = page.locator(`${SIDEBAR} .sf-params input[name="n_rows"]`);
    await expect(nRows).toHaveValue('50');
    await expect(page.locator(`${SIDEBAR} .sf-param.sf-changed`)).toHaveCount(0);
    await nRows.fill('7');
    await expect(page.locator(`${SIDEBAR} .sf-param[data-param="n_rows"]`)).toHaveClass(/sf-changed/);
    const select = page.locator(`${SIDEBAR} select.sf-backend`);
    const docker = await page.locator(`${SIDEBAR} select.sf-backend option[value="docker"]`).isEnabled();
    if (docker) {
      await select.selectOption('docker');
    }
    await page.notebook.activate('typing.ipynb');
    await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', `${tmpPath}/typing.ipynb`);
    await page.notebook.activate('parameterised.ipynb');
    await expect(nRows).toHaveValue('7');
    await expect(page.locator(`${SIDEBAR} .sf-param[data-param="n_rows"]`)).toHaveClass(/sf-changed/);
    if (docker) {
      await expect(select).toHaveValue('docker');
    }
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-params-kept.png') });
    // Typed back to the notebook's value: no longer marked; ↺ resets.
    await nRows.fill('50');
    await expect(page.locator(`${SIDEBAR} .sf-param.sf-changed`)).toHaveCount(0);
    await nRows.fill('8');
    await page.locator(`${SIDEBAR} .sf-param[data-param="n_rows"] .sf-param-reset`).click();
    await expect(nRows).toHaveValue('50');
    // Unsaved edits of the scratch notebook would prompt at teardown: revert them.
    await page.notebook.activate('typing.ipynb');
    await page.notebook.save();
  });
});

test.describe('Scanflow run comparison (#15)', () => {
  test('two runs side by side: parameters, step metrics and durations, differences marked', async ({ page }) => {
    await openWithSidebar(page, 'parameterised.ipynb');
    const runs = page.locator(`${SIDEBAR} .sf-run`);
    const before = await runs.count();
    cliRun('notebooks/parameterised.ipynb', '-p', 'n_rows=7');
    cliRun('notebooks/parameterised.ipynb', '-p', 'n_rows=9');
    await expect(runs).toHaveCount(before + 2, { timeout: 30000 });
    await runs.nth(0).locator('.sf-compare-pick').check();
    await expect(page.locator(`${SIDEBAR} .sf-compare-hint`)).toBeVisible();
    await runs.nth(1).locator('.sf-compare-pick').check();
    const table = page.locator(`${SIDEBAR} .sf-compare-table`);
    const nRows = table.locator('tr[data-row="params:n_rows"]');
    await expect(nRows).toHaveClass(/sf-differs/);
    await expect(nRows.locator('td').nth(1)).toHaveText('9');
    await expect(nRows.locator('td').nth(2)).toHaveText('7');
    await expect(table.locator('tr[data-row="params:label"]')).not.toHaveClass(/sf-differs/);
    await expect(table.locator('tr[data-row="steps:make_data"]')).toBeVisible();
    await expect(table.locator('tr[data-row="steps:report"]')).toBeVisible();
    await page.locator(`${SIDEBAR} .sf-section-runs`).scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-compare.png') });
    await page.locator(`${SIDEBAR} .sf-compare-close`).click();
    await expect(table).toHaveCount(0);
  });
});

test.describe('Scanflow resumed runs (#15)', () => {
  test('a resumed run says which run it resumed; run names are short', async ({ page }) => {
    await openWithSidebar(page, 'failing_step.ipynb');
    await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
    await expect(badge(page, 'explode')).toHaveAttribute('data-status', 'failed', { timeout: 120000 });
    const resume = page.locator(`${SIDEBAR} button[data-action="Resume"]`);
    await expect(resume).toBeEnabled({ timeout: 30000 });
    const first = page.locator(`${SIDEBAR} .sf-run`).first();
    await expect(first.locator('.sf-pill')).toHaveText('failed', { timeout: 30000 });
    const firstName = (await first.locator('.sf-run-name').textContent())!;
    expect(firstName).toMatch(/^#\w+$/);
    await resume.click();
    await expect(page.locator(`${SIDEBAR} .sf-run`).first().locator('.sf-resumed-from')).toHaveText(
      ` · resumed from ${firstName}`,
      { timeout: 120000 }
    );
    await page.locator(`${SIDEBAR} .sf-section-runs`).scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-resumed.png') });
  });
});

test.describe('Scanflow build failure (#15)', () => {
  // A base image on a registry port nothing listens on: the pull is refused at once (a real failure).
  test.use({
    mockSettings: { ...galata.DEFAULT_SETTINGS, 'scanflow-jupyter:plugin': { baseImage: '127.0.0.1:9/scanflow-nope:1' } }
  });

  test('a failed image build says what failed and the fix, and opens its log', async ({ page }) => {
    const config = await (await page.request.get('/scanflow/api/config')).json();
    const docker = (config.backends as Array<{ name: string; available: boolean; reason: string | null }>).find(b => b.name === 'docker')!;
    if (!docker.available) {
      if (process.env.CI === 'true') {
        throw new Error(`CI=true but the docker backend is unavailable: ${docker.reason}`);
      }
      test.skip(true, `docker unavailable: ${docker.reason}`);
    }
    expect(config.default_base_image).toBeTruthy();
    await openWithSidebar(page, 'linear_chain.ipynb');
    await page.locator(`${SIDEBAR} .sf-config summary`).click();
    await expect(page.locator(`${SIDEBAR} .sf-config`)).toContainText('127.0.0.1:9/scanflow-nope:1');
    await page.locator(`${SIDEBAR} button[data-action="Build images"]`).click();
    const toast = page.locator('.Toastify__toast', { hasText: 'Image build failed' });
    await expect(toast).toBeVisible({ timeout: 120000 });
    await expect(toast).toContainText('127.0.0.1:9/scanflow-nope:1');
    await expect(toast).toContainText('Fix:');
    await expect(toast).not.toContainText('"status"');
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-build-failed.png') });
    await toast.getByRole('button', { name: 'Show image build log' }).click();
    const log = page.locator('.jp-Dialog .sf-job-log');
    await expect(log.locator('.sf-job-failure')).toContainText('127.0.0.1:9/scanflow-nope:1');
    await expect(log.locator('.sf-job-detail').first()).toContainText('Fix:');
    await expect(log.locator('.sf-job-log-text')).not.toBeEmpty();
    await page.screenshot({ path: path.join(SHOTS, 'sidebar-build-log.png') });
    await page.locator('.jp-Dialog .jp-mod-accept').click();
  });
});

test.describe('Scanflow sidebar accessibility (#15)', () => {
  test('axe-core: no serious or critical violations in the sidebar, light and dark', async ({ page }) => {
    await openWithSidebar(page, 'diamond.ipynb');
    await expect(page.locator(`${SIDEBAR} .sf-dag-node`)).toHaveCount(4);
    // with a finished run listed and open (pills, steps, links) and its coloured DAG
    const runs = page.locator(`${SIDEBAR} .sf-run`);
    const before = await runs.count();
    cliRun('notebooks/diamond.ipynb');
    await expect(runs).toHaveCount(before + 1, { timeout: 30000 });
    const run = runs.first();
    await expect(page.locator(`${SIDEBAR} .sf-dag-node[data-node="train"]`)).toHaveAttribute('data-status', /succeeded|cached/);
    await run.locator('.sf-run-head').click();
    await expect(run.locator('.sf-step')).toHaveCount(4, { timeout: 30000 });
    for (const theme of ['light', 'dark']) {
      if (theme === 'dark') {
        await page.theme.setDarkTheme();
        await expect
          .poll(async () => contrastRatio(parseColor(await page.locator(SIDEBAR).evaluate(el => getComputedStyle(el).backgroundColor)), [0, 0, 0]))
          .toBeLessThan(3);
      }
      const results = await new AxeBuilder({ page }).include(SIDEBAR).analyze();
      const serious = results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
      const report = serious.map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).slice(0, 4).join(' | ')}`);
      expect(report, `${theme} theme`).toEqual([]);
      await page.locator(SIDEBAR).screenshot({ path: path.join(SHOTS, `sidebar-axe-${theme}.png`) });
    }
    await page.theme.setLightTheme();
  });
});
