// A query's bindings edited in real Chromium (issue 23; docs/DASHBOARDS.md, "Filters"):
// the Query page opened from a dashboard tile shows a select per parameter position with
// the bound filter chosen; a binding the API refuses is said next to its select, in words,
// and nothing is saved; a changed binding is saved by "Save to project" (one PUT).
// Started by tests/tests/e2e/dashboard_filters.rs with a JSON config; writes what it saw
// to `out`. Screenshots under cfg.screenshots.
import { expect, signIn, start } from './harness.mjs';

const refused = [];
// The one refusal this test asks for: the PUT with a binding that leaves a gap.
function expected(r) {
  if (r.status() !== 400 || r.request().method() !== 'PUT') return false;
  refused.push(r.url());
  return true;
}
const { cfg, base, page, errors, finish } = await start({ expected });
const out = {};

await signIn(page, base, 'ed', cfg.password);

await page.goto(base + '/console/query?project=' + cfg.project + '&index=0');
const sel = (n) => page.locator(`select[data-bind-position="${n}"]`);
expect(await page.locator('[data-bindings] select').count() === 3, 'a select per parameter position ($1 to $3)');
expect(await sel(1).inputValue() === 'region', 'position 1 shows its filter, region');
expect(await sel(2).inputValue() === 'period.from' && await sel(3).inputValue() === 'period.to', 'the date range ends');
const options = await sel(2).locator('option').allInnerTexts();
expect(options.includes('Period: from') && options.includes('Compared region') && options.includes('not bound'), 'the choices in words');
await page.screenshot({ path: `${cfg.screenshots}/bindings.png`, fullPage: true });

// Unbinding $2 leaves a gap the API refuses: said next to the select it names.
await sel(2).selectOption('');
await page.click('button[data-project-replace]');
const err = page.locator('[data-bind-error="3"]');
await err.filter({ hasText: 'would have no value' }).waitFor({ timeout: 10000 });
out.bind_error = await err.innerText();
out.save_output = await page.locator('[data-save-output]').innerText();
expect(/^Parameter 3: position 2 would have no value/.test(out.bind_error), 'the refusal in words next to its select');
expect(/said next to it/.test(out.save_output), 'the save area points to it');
expect(/\/console\/query/.test(page.url()), 'the page stays, nothing lost');
await page.screenshot({ path: `${cfg.screenshots}/bindings-refused.png`, fullPage: true });

// A changed binding is saved: $1 now takes the compared region.
await sel(2).selectOption('period.from');
await sel(1).selectOption('other_region');
await Promise.all([page.waitForURL(/\/console\/projects\/[^/?]+$/), page.click('button[data-project-replace]')]);
expect(await page.locator('[data-bind-error="3"]').count() === 0, 'back on the dashboard');

out.refused = refused;
out.errors = errors;
await finish(out);
