/**
 * #15 "debug where you work": "Debug in notebook" on a failed step loads the inputs and parameters it
 * received into the notebook's kernel (a cell then prints them), and "Open run as notebook" writes and
 * opens scanflow-run-<id>.ipynb. Keyboard reachable; screenshots light and dark in test-results/.
 */
import { expect, test } from '@jupyterlab/galata';
import * as path from 'path';

const SHOTS = path.join(__dirname, '..', 'test-results');
const SIDEBAR = '#scanflow-sidebar';

test.use({ autoGoto: true });

function failingNotebook(): unknown {
  const cells = [
    '%load_ext scanflow_jupyter\n%scanflow_app dbg',
    '%%executor make --outputs xs\nxs = [i * 7 for i in range(3)]',
    "%%executor boom --inputs xs\nraise ValueError('bad xs')",
    'print("debug:", xs)'
  ];
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: cells.map(source => ({ cell_type: 'code', metadata: {}, outputs: [], execution_count: null, source }))
  };
}

test('Debug in notebook loads the failed step inputs; Open run as notebook; light and dark', async ({ page, tmpPath }) => {
  const nbPath = `${tmpPath}/dbg.ipynb`;
  await page.contents.uploadContent(JSON.stringify(failingNotebook()), 'text', nbPath);
  await page.notebook.openByPath(nbPath);
  await page.notebook.activate('dbg.ipynb');
  await page.sidebar.openTab('scanflow-sidebar');
  await expect(page.locator(`${SIDEBAR} .sf-notebook`)).toHaveAttribute('data-path', nbPath);

  await page.locator(`${SIDEBAR} button[data-action="Run"]`).click();
  const run = page.locator(`${SIDEBAR} .sf-run`).first();
  await expect(run.locator('.sf-pill')).toHaveText('failed', { timeout: 170000 });
  // the failed badge's detail (step log dialog) has "Debug in notebook" too
  const toasts = page.locator('.jp-Notification-Toast-success, .Toastify__toast--success');
  await page.locator('.jp-Cell').nth(2).locator('.sf-cell-badge').click();
  const fromBadge = page.locator('.sf-log-dialog .sf-log-debug');
  await expect(fromBadge).toHaveText('Debug in notebook', { timeout: 30000 });
  await page.locator('.sf-log-dialog').screenshot({ path: path.join(SHOTS, 'debug-badge-dialog-light.png') });
  await fromBadge.click();
  await expect(toasts.first()).toContainText("scanflow debug: step 'boom'", { timeout: 60000 });
  await page.notebook.runCell(3);
  await expect(page.locator('.jp-Cell').nth(3).locator('.jp-OutputArea-output')).toContainText('debug: [0, 7, 14]');

  await expect(toasts).toHaveCount(0, { timeout: 30000 }); // the badge's notification closed

  await run.locator('.sf-run-head').click();
  const debug = run.locator('.sf-step[data-step="boom"] .sf-step-debug');
  await expect(debug).toHaveText('Debug in notebook', { timeout: 30000 });
  await expect(run.locator('.sf-step[data-step="make"] .sf-step-debug')).toHaveCount(0); // only failed steps

  // keyboard: focus the button, it shows a focus ring, Enter runs it in the kernel
  await run.locator('.sf-step[data-step="boom"] .sf-step-notebook').focus();
  await page.keyboard.press('Tab');
  await expect(debug).toBeFocused();
  expect(await debug.evaluate(el => getComputedStyle(el).outlineStyle)).not.toBe('none');
  await page.locator(SIDEBAR).screenshot({ path: path.join(SHOTS, 'debug-sidebar-light.png') });
  await page.keyboard.press('Enter');
  await expect(toasts.first()).toContainText("scanflow debug: step 'boom'", { timeout: 60000 });
  await expect(toasts.first()).toContainText('xs: list[3]');
  await page.screenshot({ path: path.join(SHOTS, 'debug-loaded-light.png') });

  await page.theme.setDarkTheme();
  await page.locator(SIDEBAR).screenshot({ path: path.join(SHOTS, 'debug-sidebar-dark.png') });

  // Open run as notebook: the server writes it next to dbg.ipynb and JupyterLab opens it
  const open = run.locator('.sf-run-as-notebook');
  await run.locator('.sf-run-detail .sf-copy').first().focus();
  await page.keyboard.press('Tab');
  await expect(open).toBeFocused();
  expect(await open.evaluate(el => getComputedStyle(el).outlineStyle)).not.toBe('none');
  await page.keyboard.press('Enter');
  const runId = (await run.locator('.sf-run-detail .sf-run-id').first().textContent())!;
  const tab = page.locator(`.lm-TabBar-tab[title*="scanflow-run-${runId}.ipynb"]`);
  await expect(tab).toBeVisible({ timeout: 60000 });
  expect(await page.contents.fileExists(`${tmpPath}/scanflow-run-${runId}.ipynb`)).toBe(true);
  await page.screenshot({ path: path.join(SHOTS, 'debug-run-notebook-dark.png') });
  await page.theme.setLightTheme();
  await page.screenshot({ path: path.join(SHOTS, 'debug-run-notebook-light.png') });
});
