// A query's bindings edited in real Chromium (issue 23; docs/DASHBOARDS.md, "Filters"):
// the Query page opened from a dashboard tile shows a select per parameter position with
// the bound filter chosen; a binding the API refuses is said next to its select, in words,
// and nothing is saved; a changed binding is saved by "Save to project" (one PUT). The
// Filters part follows the SQL as it is edited: a `$2` typed into the editor gets its
// select (saved into `bind`, read back through the API), a deleted one loses it.
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

// --- The Filters part follows the SQL as it is edited ---------------------------------
// Query 1 has no positions: the part is there all the same (the project has parameters).
await page.goto(base + '/console/query?project=' + cfg.project + '&index=1');
await page.waitForSelector('form[data-query-form] .cm-editor .cm-content');
const selects = page.locator('[data-bindings] select');
// Waits (up to 5 s) for the part to show `n` selects; whether it did.
const shows = (n) => page.waitForFunction((want) => document.querySelectorAll('[data-bindings] select').length === want,
  n, { timeout: 5000 }).then(() => true, () => false);
const original = await page.inputValue('textarea[name=sql]');
expect(await selects.count() === 0 && await page.isVisible('[data-no-positions]'),
  'SQL without positions: the Filters part says there is nothing to bind');
expect(await page.locator('[data-bindings] legend').innerText() === 'Filters', 'the part keeps its legend');
// The page counts as the server does (bindings.rs `positions`): set through the textarea
// with its input event, as the editor does on every change.
for (const [sql, n] of [
  ['SELECT * FROM t WHERE a = $1 AND b BETWEEN $2 AND $3', 3],
  ["SELECT '$9', \"?\" FROM t WHERE a = $2 -- $7 ?\n", 2],
  ['SELECT * FROM t WHERE a = ? AND b = ?', 2],
  ['SELECT `$4`, $1', 1],
  ['SELECT $99', 50],
  ['SELECT 1', 0],
]) {
  await page.fill('textarea[name=sql]', sql);
  expect(await shows(n), `${JSON.stringify(sql)}: ${n} selects`);
}
expect(await page.isVisible('[data-no-positions]'), 'no positions again: said again');
await page.fill('textarea[name=sql]', original);

// Typed into the editor: $1, then $2, each gets its select; a choice made stays.
await page.click('.cm-content');
await page.keyboard.press('Control+End');
await page.keyboard.type(' WHERE region = $1');
await page.keyboard.press('Escape');
expect(await shows(1) && !(await page.isVisible('[data-no-positions]')), 'typing $1 adds its select');
await sel(1).selectOption('region');
await page.click('.cm-content');
await page.keyboard.press('Control+End');
await page.keyboard.type(' AND month >= $2');
await page.keyboard.press('Escape');
expect(await shows(2), 'typing $2 adds its select');
expect(await sel(1).inputValue() === 'region', 'the choice for $1 stays');
const labelled = page.getByLabel('Parameter 2');
expect(await labelled.count() === 1 && await labelled.getAttribute('data-bind-position') === '2',
  'the new select is labelled "Parameter 2"');
expect((await sel(2).locator('option').allInnerTexts()).join('|') === (await sel(1).locator('option').allInnerTexts()).join('|'),
  'and offers what the server rendered for $1');
expect(/Parameter 2 added/.test(await page.locator('[data-bind-status]').innerText()), 'the change is said (live region)');
await sel(2).selectOption('period.from');
await page.screenshot({ path: `${cfg.screenshots}/bindings-typed.png`, fullPage: true });
// Deleting the 2 takes its select away; typing it back brings the choice back.
await page.click('.cm-content');
await page.keyboard.press('Control+End');
await page.keyboard.press('Backspace');
expect(await shows(1), 'deleting $2 removes its select');
await page.keyboard.type('2');
expect(await shows(2) && await sel(2).inputValue() === 'period.from', 'typed back, $2 has its choice again');

// Saved: the API's bind holds the new position.
await Promise.all([page.waitForURL(/\/console\/projects\/[^/?]+$/), page.click('button[data-project-replace]')]);
const saved = () => page.evaluate(async (id) => (await (await fetch('/v1/projects/' + id)).json()).queries[1], cfg.project);
let q = await saved();
out.typed_bind = q.bind;
expect(JSON.stringify(q.bind) === '{"1":"region","2":"period.from"}' && q.sql === original + ' WHERE region = $1 AND month >= $2',
  `GET /v1/projects/{id} shows the typed positions bound (${JSON.stringify(q)})`);

// Reopened, both are there; deleting "AND month >= $2" takes $2's select and binding away.
await page.goto(base + '/console/query?project=' + cfg.project + '&index=1');
await page.waitForSelector('form[data-query-form] .cm-editor .cm-content');
expect(await selects.count() === 2 && await sel(2).inputValue() === 'period.from', 'reopened: $2 bound');
await page.click('.cm-content');
await page.keyboard.press('Control+End');
await page.keyboard.press('Backspace');
expect(await shows(1) && await sel(1).inputValue() === 'region', 'its select goes at once, $1 keeps its choice');
for (let i = 1; i < ' AND month >= $2'.length; i++) await page.keyboard.press('Backspace');
await page.waitForFunction((want) => document.querySelector('textarea[name=sql]').value === want, original + ' WHERE region = $1');
await Promise.all([page.waitForURL(/\/console\/projects\/[^/?]+$/), page.click('button[data-project-replace]')]);
q = await saved();
expect(JSON.stringify(q.bind) === '{"1":"region"}', `the binding of the deleted $2 is gone (${JSON.stringify(q.bind)})`);

out.refused = refused;
out.errors = errors;
await finish(out);
