/**
 * Benchmarks in the browser (not tests: nothing is asserted on time): `bench/*.bench.ts`, run by
 * tests/benchmarks/bench_sidebar.py. Same server and Chromium as the Galata tests.
 */
const base = require('./playwright.config.js');

module.exports = { ...base, testDir: 'bench', testMatch: /.*\.bench\.ts$/ };
