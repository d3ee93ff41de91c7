/**
 * #15: "MLflow ↗" links (the server starts the project's MLflow UI on demand), run ids whole with a
 * copy button, a kubernetes run's Workflow line, a wide DAG fitted to the sidebar with −/+/Fit zoom,
 * and error text contrast + axe-core in light and dark. Screenshots go to test-results/.
 */
import { expect, test } from '@jupyterlab/galata';
import type { Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

import AxeBuilder from '@axe-core/playwright';

import { contrastRatio, parseColor } from '../../src/contrast';

const SHOTS = path.join(__dirname, '..', 'test-results');
const SIDEBAR = '#scanflow-sidebar';
const ROOT = path.resolve(__dirname, '..', '.galata-root', 'root');
const WIDTH = 8; // parallel steps: one DAG layer wider than the sidebar

test.use({ autoGoto: true });

function wideNotebook(): unknown {
  const steps = Array.from({ length: WIDTH }, (_, i) => `%%executor step_${i} --outputs v${i}\nv${i} = ${i} * ${Date.now() % 1000}`);
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: ['%load_ext scanflow_jupyter\n%scanflow_app wide', ...steps].map(source => ({
      cell_type: 'code',
      metadata: {},
      outputs: [],
      execution_count: null,
      source
    }))
  };
}

async function scaleOf(page: Page): Promise<number> {
  const transform = await page.locator(`${SIDEBAR} .sf-dag-zoom`).getAttribute('transform');
  return Number(/scale\(([\d.]+)\)/.exec(transform ?? '')![1]);
}

async function darkTheme(page: Page): Promise<void> {
  await page.theme.setDarkTheme();
  await expect
    .poll(async () => contrastRatio(parseColor(await page.locator(SIDEBAR).evaluate(el => getComputedStyle(el).backgroundColor)), [0, 0, 0]))
    .toBeLessThan(3);
}

/** Text colour against the first opaque background behind it. */
async function contrastOf(page: Page, selector: string): Promise<number> {
  const { color, bg } = await page.locator(selector).first().evaluate(el => {
    let bgEl: Element | null = el;
    let background = getComputedStyle(el).backgroundColor;
    while (bgEl && /rgba\(.*, 0\)$|transparent/.test(background)) {
      bgEl = bgEl.parentElement;
      background = bgEl ? getComputedStyle(bgEl).backgroundColor : 'rgb(255, 255, 255)';
    }
    return { color: getComputedStyle(el).color, bg: background };
  });
  const under = parseColor(bg);
  return contrastRatio(parseColor(color, under), under);
}

async function axe(page: Page, theme: string): Promise<void> {
  const results = await new AxeBuilder({ page }).include(SIDEBAR).analyze();
  const serious = results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
  const report = serious.map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).slice(0, 4).join(' | ')}`);
  expect(report, `${theme} theme`).toEqual([]);
}

test('wide DAG fitted and zoomed by keyboard; MLflow links open the run; ids and Workflow; contrast light and dark', async ({
  page,
  context,
  tmpPath
}) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  const nbPath = `${tmpPath}/wide.ipynb`;
  await page.contents.uploadContent(JSON.stringify(wideNotebook()), 'text', nbPath);
  await page.notebook.openByPath(nbPath);
  await page.notebook.activate('wide.ipynb');
  await page.sidebar.openTab('scanflow-sidebar');
  await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', nbPath);
  await expect(page.locator(`${SIDEBAR} .sf-dag-node`)).toHaveCount(WIDTH);

  // Fitted by default: scaled below 100 % and no wider than its box.
  const fitted = await scaleOf(page);
  expect(fitted).toBeLessThan(1);
  const svg = (await page.locator(`${SIDEBAR} svg.sf-dag`).boundingBox())!;
  const box = (await page.locator(`${SIDEBAR} .sf-dag-scroll`).boundingBox())!;
  expect(svg.width).toBeLessThanOrEqual(box.width + 1);
  await expect(page.locator(`${SIDEBAR} .sf-dag-zoom-level`)).toHaveText(`${Math.round(fitted * 100)}%`);
  await page.locator(`${SIDEBAR} .sf-dag-view`).screenshot({ path: path.join(SHOTS, 'links-dag-fitted.png') });

  // Keyboard: the buttons have names; Enter zooms in, Tab reaches Fit, Enter goes back.
  const zoomIn = page.getByRole('button', { name: 'Zoom in on the pipeline graph' });
  await zoomIn.focus();
  await page.keyboard.press('Enter');
  expect(await scaleOf(page)).toBeCloseTo(Math.round(fitted * 1.25 * 1000) / 1000, 3);
  await page.keyboard.press('Enter');
  const zoomed = await scaleOf(page);
  expect(zoomed).toBeGreaterThan(fitted * 1.5);
  const scrolled = (await page.locator(`${SIDEBAR} svg.sf-dag`).boundingBox())!;
  expect(scrolled.width).toBeGreaterThan(box.width); // wider than the box now: it scrolls
  await page.locator(`${SIDEBAR} .sf-dag-view`).screenshot({ path: path.join(SHOTS, 'links-dag-zoomed.png') });
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe('Fit the pipeline graph to the width');
  await page.keyboard.press('Enter');
  expect(await scaleOf(page)).toBe(fitted);
  await page.getByRole('button', { name: 'Zoom out of the pipeline graph' }).click();
  expect(await scaleOf(page)).toBeLessThan(fitted);
  await page.getByRole('button', { name: 'Fit the pipeline graph to the width' }).click();

  // A run from the sidebar; its MLflow link opens the run in the MLflow UI the server starts.
  await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
  const run = page.locator(`${SIDEBAR} .sf-run`).first();
  await expect(run.locator('.sf-pill')).toHaveText('succeeded', { timeout: 170000 });
  const mlflowRunId = (await run.getAttribute('data-run'))!;
  const link = run.locator('.sf-run-row .sf-mlflow-link');
  await expect(link).toHaveAttribute('aria-label', /^Open run #[0-9a-f]+ in MLflow$/);
  const started = page.waitForResponse(r => r.request().method() === 'POST' && /\/scanflow\/api\/mlflow-ui/.test(r.url()), {
    timeout: 170000
  });
  const [popup] = await Promise.all([context.waitForEvent('page'), link.click()]);
  const ui = await (await started).json();
  expect(ui.remote).toBe(false);
  expect(ui.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const expected = new RegExp(`^${ui.url.replace(/[.]/g, '\\.')}/#/experiments/\\d+/runs/${mlflowRunId}$`);
  await expect(link).toHaveAttribute('href', expected);
  await popup.waitForURL(expected, { timeout: 60000 });
  await expect(popup).toHaveTitle(/MLflow/, { timeout: 60000 });
  await expect(popup.getByText(mlflowRunId).first()).toBeVisible({ timeout: 60000 });
  await popup.screenshot({ path: path.join(SHOTS, 'links-mlflow-run.png') });
  await popup.close();

  // The opened run: Scanflow and MLflow run ids whole (title) with copy; step runs link too.
  await run.locator('.sf-run-head').click();
  await expect(run.locator('.sf-step')).toHaveCount(WIDTH, { timeout: 30000 });
  await expect(run.locator('.sf-step .sf-mlflow-link').first()).toHaveAttribute('href', /#\/experiments\/\d+\/runs\/[0-9a-f]{32}$/);
  const ids = run.locator('.sf-run-detail .sf-run-id');
  await expect(ids).toHaveCount(2);
  const runId = (await ids.first().textContent())!;
  expect(runId).toMatch(/^\d{8}T\d{6}-[0-9a-f]+$/);
  await expect(ids.first()).toHaveAttribute('title', runId);
  await expect(ids.nth(1)).toHaveAttribute('title', mlflowRunId);
  await run.locator('.sf-run-detail .sf-copy').first().click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(runId);
  await expect(run.locator('.sf-run-detail .sf-copy').first()).toContainText('copied');
  // the last run in the Application section: the same id, never clipped without a way to read it
  const last = page.locator(`${SIDEBAR} .sf-last-run .sf-run-id`);
  await expect(last).toHaveAttribute('title', runId);
  await expect(page.locator(`${SIDEBAR} .sf-last-run .sf-mlflow-link`)).toHaveAttribute('href', new RegExp(`/#/runs/${mlflowRunId}$`));

  // A kubernetes run's Workflow line. A real one needs the test cluster (tests/integration cover the
  // backend writing workflow.json); the sidebar only reads run.json and workflow.json, so this run's
  // files are made to say it ran on kubernetes.
  const runDir = path.join(ROOT, '.scanflow', 'runs', runId);
  const state = JSON.parse(fs.readFileSync(path.join(runDir, 'run.json'), 'utf-8'));
  fs.writeFileSync(path.join(runDir, 'run.json'), JSON.stringify({ ...state, backend: 'kubernetes' }));
  fs.writeFileSync(path.join(runDir, 'workflow.json'), JSON.stringify({ name: `scanflow-wide-${runId.toLowerCase()}`, namespace: 'scanflow-wide-default', context: null }));
  const command = page.locator(`${SIDEBAR} .sf-run-detail .sf-workflow-command`);
  await expect(command).toHaveText(`kubectl -n scanflow-wide-default get workflow scanflow-wide-${runId.toLowerCase()}`, { timeout: 30000 });
  await expect(page.locator(`${SIDEBAR} .sf-run-detail .sf-workflow .sf-copy`)).toHaveAttribute('aria-label', 'Copy the kubectl command');

  const runsSection = page.locator(`${SIDEBAR} .sf-section-runs`);
  const appSection = page.locator(`${SIDEBAR} .sf-section-application`);
  await runsSection.screenshot({ path: path.join(SHOTS, 'links-run-detail-light.png') });
  await appSection.screenshot({ path: path.join(SHOTS, 'links-app-light.png') });
  await darkTheme(page);
  await axe(page, 'dark, run detail');
  await runsSection.screenshot({ path: path.join(SHOTS, 'links-run-detail-dark.png') });
  await appSection.screenshot({ path: path.join(SHOTS, 'links-app-dark.png') });
  await page.theme.setLightTheme();

  // An error text in both themes (a bad filter), contrast >= 4.5:1, axe-core clean.
  const input = page.locator(`${SIDEBAR} .sf-filter-input`);
  await input.fill('this is not a filter');
  await page.locator(`${SIDEBAR} .sf-filter button`).click();
  await expect(page.locator(`${SIDEBAR} .sf-filter-error`)).toBeVisible();
  expect(await contrastOf(page, `${SIDEBAR} .sf-filter-error`), 'light error text').toBeGreaterThanOrEqual(4.5);
  await axe(page, 'light');
  await runsSection.screenshot({ path: path.join(SHOTS, 'links-error-light.png') });
  await darkTheme(page);
  expect(await contrastOf(page, `${SIDEBAR} .sf-filter-error`), 'dark error text').toBeGreaterThanOrEqual(4.5);
  expect(await contrastOf(page, `${SIDEBAR} .sf-mlflow-link`), 'dark link').toBeGreaterThanOrEqual(4.5);
  await axe(page, 'dark');
  await runsSection.screenshot({ path: path.join(SHOTS, 'links-error-dark.png') });
  await page.theme.setLightTheme();
  await page.notebook.save();
});
