/**
 * The sidebar's Services section (#12 item 1): start a notebook's custom %%service from the sidebar,
 * send a good and a bad "try it" payload (through the Scanflow server), see the answer and the 422,
 * stop it. Screenshots (light and dark) go to test-results/.
 */
import { expect, test } from '@jupyterlab/galata';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Locator, Page } from '@playwright/test';

import AxeBuilder from '@axe-core/playwright';

import { contrastRatio, parseColor } from '../../src/contrast';

const SHOTS = path.join(__dirname, '..', 'test-results');
const SIDEBAR = '#scanflow-sidebar';
const ROOT = path.resolve(__dirname, '..', '.galata-root', 'root');
const NAME = 'services_sum.ipynb';
const SCANFLOW = process.env.SCANFLOW_CLI || path.resolve(__dirname, '..', '..', '..', '.venv', 'bin', 'scanflow');

/** A notebook with one custom service: predict(inputs: list[float]) returns their sum. */
function writeNotebook(): void {
  const cell = (source: string) => ({ id: 'adder', cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source });
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: [cell('%%service adder\ndef predict(inputs: list[float]):\n    return sum(inputs)\n')]
  };
  fs.writeFileSync(path.join(ROOT, 'notebooks', NAME), JSON.stringify(nb, null, 1));
}

/** Text of the section's pill, link, answer and messages: contrast >= 4.5:1 on what is behind it. */
async function checkContrast(section: Locator, theme: string): Promise<void> {
  const seen = await section
    .locator('.sf-pill, .sf-service-url a, .sf-try-head, .sf-try-answer pre, .sf-try-payload, .sf-muted, .sf-error-text')
    .evaluateAll(els =>
      els.map(el => {
        let bgEl: Element | null = el;
        let bg = getComputedStyle(el).backgroundColor;
        while (bgEl && /rgba\(.*, 0\)$|transparent/.test(bg)) {
          bgEl = bgEl.parentElement;
          bg = bgEl ? getComputedStyle(bgEl).backgroundColor : 'rgb(255, 255, 255)';
        }
        return { cls: el.className, color: getComputedStyle(el).color, bg };
      })
    );
  expect(seen.length).toBeGreaterThan(4);
  for (const s of seen) {
    const bg = parseColor(s.bg);
    expect(contrastRatio(parseColor(s.color, bg), bg), `${theme}: ${s.cls} ${s.color} on ${s.bg}`).toBeGreaterThanOrEqual(4.5);
  }
}

/** axe-core on the Services section: no serious or critical violations. */
async function checkAxe(page: Page, theme: string): Promise<void> {
  const results = await new AxeBuilder({ page }).include(`${SIDEBAR} .sf-section-services`).analyze();
  const serious = results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.map(v => `${theme} ${v.id}: ${v.help} — ${v.nodes.map(n => n.target.join(' ')).join(' | ')}`)).toEqual([]);
}

test.use({ autoGoto: true });

// a failed test leaves no service process behind
test.afterEach(() => {
  spawnSync(SCANFLOW, ['services', 'down', path.join(ROOT, 'notebooks', NAME)], {
    env: { ...process.env, SCANFLOW_HOME: path.join(ROOT, '.scanflow') },
    timeout: 60000
  });
});

test('services: start from the sidebar, try a good and a bad payload, stop', async ({ page }) => {
  writeNotebook();
  await page.filebrowser.refresh();
  await page.notebook.openByPath(`notebooks/${NAME}`);
  await page.notebook.activate(NAME);
  await page.sidebar.openTab('scanflow-sidebar');
  const section = page.locator(`${SIDEBAR} .sf-section-services`);
  const card = page.locator(`${SIDEBAR} .sf-service[data-service="adder"]`);
  await expect(card).toContainText('stopped');

  // Start is a real button, reachable by keyboard: focus it and press Enter
  const start = section.locator('button[data-action="Start"]');
  await start.focus();
  await page.keyboard.press('Enter');
  await expect(card.locator('.sf-pill')).toHaveText('running', { timeout: 120000 });
  await expect(card.locator('.sf-service-url a')).toHaveAttribute('href', /^http:\/\/127\.0\.0\.1:\d+$/);
  await expect(card).toContainText('serves predict() of its cell');

  const payload = card.locator('textarea.sf-try-payload');
  await expect(payload).toHaveValue('{"inputs": [1, 2, 3]}');
  await card.locator('button[data-action="Send"]').click();
  await expect(card.locator('.sf-try-answer')).toContainText('200 OK');
  await expect(card.locator('.sf-try-answer pre')).toContainText('"predictions": 6');
  await section.screenshot({ path: path.join(SHOTS, 'services-light-ok.png') });

  // a bad payload: the service's 422 and its text come back
  await payload.fill('{"inputs": ["a", "b"]}');
  await payload.focus();
  await page.keyboard.press('Tab'); // keyboard reaches Send
  await expect(card.locator('button[data-action="Send"]')).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(card.locator('.sf-try-answer')).toContainText('422');
  await expect(card.locator('.sf-try-answer')).toHaveClass(/sf-try-refused/);
  await expect(card.locator('.sf-try-answer pre')).toContainText('list[float]');
  await checkContrast(section, 'light');
  await checkAxe(page, 'light');
  await section.screenshot({ path: path.join(SHOTS, 'services-light-422.png') });

  // not JSON: said in the page, nothing sent
  await payload.fill('{"inputs": [1,');
  await card.locator('button[data-action="Send"]').click();
  await expect(card.locator('.sf-try-error')).toContainText('not JSON');

  await page.theme.setDarkTheme();
  await payload.fill('{"inputs": "x"}');
  await card.locator('button[data-action="Send"]').click();
  await expect(card.locator('.sf-try-refused')).toBeVisible();
  await checkContrast(section, 'dark');
  await checkAxe(page, 'dark');
  await section.screenshot({ path: path.join(SHOTS, 'services-dark-refused.png') });
  await payload.fill('{"inputs": [1.5, 2]}');
  await card.locator('button[data-action="Send"]').click();
  await expect(card.locator('.sf-try-answer pre')).toContainText('3.5');
  await checkContrast(section, 'dark');
  await section.screenshot({ path: path.join(SHOTS, 'services-dark.png') });
  await page.theme.setLightTheme();

  await section.locator('button[data-action="Stop"]').click();
  await expect(card.locator('.sf-pill')).toHaveText('stopped', { timeout: 60000 });
  await expect(card.locator('textarea')).toHaveCount(0);
});
