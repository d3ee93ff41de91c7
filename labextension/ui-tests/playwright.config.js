/**
 * Galata end-to-end tests in Debian's Chromium (/usr/bin/chromium; Playwright cannot download
 * browsers here). The Jupyter server comes from the project's venv (../../.venv, or $SCANFLOW_PYTHON).
 */
const path = require('path');
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.SCANFLOW_GALATA_PORT || '8897';
const python = process.env.SCANFLOW_PYTHON || path.resolve(__dirname, '..', '..', '.venv', 'bin', 'python');

module.exports = {
  ...baseConfig,
  timeout: 180000,
  expect: { timeout: 20000 },
  retries: 0,
  workers: 1,
  reporter: 'list',
  outputDir: 'test-results',
  use: {
    ...baseConfig.use,
    baseURL: `http://127.0.0.1:${port}`,
    video: 'off',
    trace: 'off',
    viewport: { width: 1400, height: 900 },
    launchOptions: {
      executablePath: process.env.SCANFLOW_CHROMIUM || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    }
  },
  webServer: {
    command: `"${python}" -m jupyter lab --config jupyter_server_test_config.py`,
    cwd: __dirname,
    url: `http://127.0.0.1:${port}/lab`,
    timeout: 120000,
    reuseExistingServer: false,
    // SIGTERM, not SIGKILL: the server then stops what it started in sessions of their own (the MLflow UI)
    gracefulShutdown: { signal: 'SIGTERM', timeout: 20000 },
    env: { ...process.env, SCANFLOW_GALATA_PORT: port }
  }
};
