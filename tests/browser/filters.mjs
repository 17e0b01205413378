// A dashboard's filter bar in real Chromium (issue 23, "Parameters … shown as filters at
// the top, carried in the URL"; docs/DASHBOARDS.md, "Filters"): Apply carries the values
// in the address, a query without a result for them says so, Refresh runs with them and
// the result shown is theirs; a date range's two inputs come back as they were sent.
// Started by tests/tests/e2e/dashboard_filters.rs with a JSON config; writes what it saw
// to `out`. Screenshots under cfg.screenshots.
import { expect, signIn, start } from './harness.mjs';

const { cfg, base, page, errors, finish } = await start();
const project = base + '/console/projects/' + cfg.project;
const out = {};

await signIn(page, base, 'ed', cfg.password);

await page.goto(project);
expect(await page.locator('form[data-filters]').count() === 1, 'a filter bar');
const barTop = (await page.locator('form[data-filters]').boundingBox()).y;
const tilesTop = (await page.locator('.tiles').boundingBox()).y;
expect(barTop < tilesTop, 'the filter bar is above the tiles');

// Apply: the values ride in the address.
await page.selectOption('select[name="f.region"]', 'South');
await page.fill('input[name="f.period.from"]', '2025-02-01');
await page.fill('input[name="f.period.to"]', '2025-03-31');
await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('form[data-filters] button[type=submit]')]);
out.applied_url = page.url();
expect(/f\.region=South/.test(out.applied_url) && /f\.period\.from=2025-02-01/.test(out.applied_url), 'the address carries the values');
expect(await page.inputValue('select[name="f.region"]') === 'South', 'the select shows South');
expect(await page.inputValue('input[name="f.period.to"]') === '2025-03-31', 'the range comes back as sent');
expect(await page.locator('[data-query="0"] [data-no-result]').count() === 1, 'no result yet for these values, said');
await page.screenshot({ path: `${cfg.screenshots}/filters-none-yet.png`, fullPage: true });

// Refresh runs with the values shown; the tile then shows their result.
await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('form[data-api$="/run"] button[type=submit]')]);
// The tile shows the run it started and follows it (console.js long-polls the job), so
// the result appears without a reload.
await page.waitForFunction(() => /South/.test(document.querySelector('[data-query="0"]').innerText), null,
  { timeout: 30000 });
const text = await page.locator('[data-query="0"]').innerText();
out.tile = text;
expect(/South/.test(text) && !/North/.test(text), "the tile shows South's result");
expect(/f\.region=South/.test(page.url()), 'the address still carries the values');
await page.screenshot({ path: `${cfg.screenshots}/filters-south.png`, fullPage: true });

out.errors = errors;
await finish(out);
