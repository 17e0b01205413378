// A project's dashboard in real Chromium (issue 23, "Dashboards"; docs/DASHBOARDS.md):
// the tiles on a 12-column grid, "Edit dashboard" (add a text tile, resize, move by
// keyboard, a problem said on its tile, Cancel discards, Save persists), a tile's query
// edited on the Query page ("Save to project"), a query added from the Query page ("Add to
// project") and one column on a narrow screen. Started by tests/tests/e2e/dashboard.rs
// with a JSON config; writes what it saw to `out`. Screenshots under cfg.screenshots.
import { expect, signIn, start } from './harness.mjs';

const { cfg, base, page, errors, finish } = await start();
const project = base + '/console/projects/' + cfg.project;
const out = {};

async function shot(name) {
  await page.screenshot({ path: `${cfg.screenshots}/${name}.png`, fullPage: true });
}

// The tiles as drawn: kind, query index, size classes, box.
async function layout() {
  return page.$$eval('.tiles > [data-tile]', (ts) => ts.map((t) => {
    const r = t.getBoundingClientRect();
    return {
      kind: t.hasAttribute('data-text') ? 'text' : 'query',
      query: t.dataset.query === undefined ? null : Number(t.dataset.query),
      w: Number(t.dataset.w), h: Number(t.dataset.h),
      name: t.hasAttribute('data-text') ? t.querySelector('.tile-text').textContent : t.querySelector('h2').firstChild.textContent.trim(),
      x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width), height: Math.round(r.height),
    };
  }));
}

async function reloadBy(action) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action()]);
}

// Signs in (the session cookie is SameSite=Strict: we stay on our own pages).
await signIn(page, base, 'ed', cfg.password);

// --- The dashboard as it is: one tile per query, half width each ----------------------
await page.goto(project);
await page.waitForSelector('.tiles section.query [data-job][data-ready="true"]');
let tiles = await layout();
expect(tiles.length === 2 && tiles.every((t) => t.kind === 'query' && t.w === 6), 'two query tiles, half width each');
expect(tiles[0].y === tiles[1].y && tiles[1].x > tiles[0].x, 'side by side on a wide screen');
const editOnly = () => page.$$eval('[data-dashboard-bar] [data-edit-only]', (bs) => bs.filter((b) => b.offsetParent !== null).length);
expect(await editOnly() === 0 && await page.isVisible('[data-dashboard-edit]'), 'only "Edit dashboard" until one edits');
await shot('01-dashboard');

// --- Edit: a text tile, a resize, a move by keyboard ----------------------------------
await page.click('[data-dashboard-edit]');
await page.waitForSelector('.tiles[data-editing] [data-tile-tools]');
expect(await page.isVisible('[data-dashboard-save]') && await page.isVisible('[data-dashboard-cancel]')
  && !(await page.isVisible('[data-dashboard-edit]')), 'edit mode offers Save and Cancel instead');
// A problem is said on its tile: an empty text cannot be saved.
await page.click('[data-dashboard-add-text]');
await page.click('[data-dashboard-save]');
await page.waitForFunction(() => document.querySelector('.tiles > [data-text] [data-tile-error]').textContent !== '');
expect((await page.textContent('.tiles > [data-text] [data-tile-error]')).includes('Write the text'),
  'an empty text tile is refused on the tile itself, in words');
expect(await page.evaluate(() => document.activeElement.matches('.tiles > [data-text] textarea')), 'and the focus is on its text');
await page.fill('.tiles > [data-text] textarea', cfg.text);
// Query 0 takes the full width.
await page.selectOption('.tiles > [data-query="0"] select[data-tile-size="w"]', '12');
await page.selectOption('.tiles > [data-query="1"] select[data-tile-size="h"]', '2');
// The text tile (last) moves to the top by keyboard: focus its button, press Enter twice.
await page.focus('.tiles > [data-text] [data-tile-earlier]');
await page.keyboard.press('Enter');
await page.keyboard.press('Enter');
expect(await page.evaluate(() => document.activeElement.matches('.tiles > [data-text] [data-tile-earlier]')),
  'the focus stays on the moved tile\'s button');
expect((await page.textContent('[data-dashboard-output]')).includes('place 1 of 3'), 'the move is announced');
tiles = await layout();
expect(tiles.map((t) => t.query).join() === ',0,1', 'text, query 0, query 1 while editing');
await shot('02-editing');
await reloadBy(() => page.click('[data-dashboard-save]'));
tiles = await layout();
expect(tiles.map((t) => t.kind + ':' + t.query).join() === 'text:null,query:0,query:1', 'the order persists after a reload');
expect(tiles[0].name === cfg.text, 'the text persists with its line break');
expect(tiles[1].w === 12 && tiles[2].w === 6 && tiles[2].h === 2, 'the sizes persist');
expect(tiles[1].width > 1.8 * tiles[2].width, `query 0 spans the row (${tiles[1].width} vs ${tiles[2].width})`);
expect(tiles[2].height > tiles[0].height, 'the two-row tile is taller');
expect(await editOnly() === 0, 'after Save the page is out of edit mode');
await page.waitForSelector('.tiles section.query [data-job][data-ready="true"]');
await shot('03-saved');
out.after_save = tiles.map(({ kind, query, w, h }) => ({ kind, query, w, h }));

// --- Cancel discards (a drag by the handle, a removal) ----------------------------------
await page.click('[data-dashboard-edit]');
await page.waitForSelector('[data-tile-tools]');
{
  // Both tiles on screen: a mouse drags only what it can reach.
  await page.setViewportSize({ width: 1280, height: 2200 });
  const from = await page.locator('.tiles > [data-query="1"] [data-tile-handle]').boundingBox();
  const to = await page.locator('.tiles > [data-text]').boundingBox();
  await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
  await page.mouse.down();
  await page.mouse.move(to.x + 40, to.y + 20, { steps: 8 });
  await page.mouse.move(to.x + 60, to.y + 20, { steps: 4 });
  await page.mouse.up();
  await page.setViewportSize({ width: 1280, height: 900 });
}
expect((await layout()).map((t) => t.query).join() === '1,,0', 'a tile dragged by its handle onto the first goes first');
await page.click('.tiles > [data-query="1"] [data-tile-remove]');
expect((await layout()).length === 2, 'a tile is removed while editing');
await reloadBy(() => page.click('[data-dashboard-cancel]'));
expect((await layout()).length === 3, 'Cancel brings it back: nothing was saved');

// --- A tile's query, edited on the Query page -----------------------------------------
await page.click('[data-dashboard-edit]');
await page.waitForSelector('[data-tile-tools]');
await Promise.all([page.waitForURL(/\/console\/query\?project=.*&index=1$/), page.click('.tiles > [data-query="1"] [data-tile-edit]')]);
expect((await page.inputValue('textarea[name=sql]')) === cfg.table_sql, 'the Query page opens with the tile\'s SQL');
expect((await page.inputValue('input[name=_query_name]')) === 'Orders', 'and its name');
await page.fill('textarea[name=sql]', cfg.edited_sql);
await page.fill('input[name=_query_name]', 'Top orders');
await shot('04-query-edit');
await Promise.all([page.waitForURL(project), page.click('[data-project-replace]')]);
tiles = await layout();
expect(tiles[2].name === 'Top orders' && tiles[2].h === 2, '"Save to project" replaced the query in place, its tile kept');
expect((await page.textContent('.tiles > [data-query="1"]')).includes('Not run yet'),
  'the old query\'s result is not shown as the new one\'s');
await reloadBy(() => page.click('form[data-api$="/run"] button'));
await page.waitForSelector('.tiles > [data-query="1"] [data-job][data-ready="true"]', { timeout: 60000 });
expect((await page.$$('.tiles > [data-query="1"] table.result tbody tr')).length === 3, 'a refresh shows the new query\'s 3 rows');
await shot('05-query-replaced');

// --- A query added from the Query page -------------------------------------------------
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await page.fill('textarea[name=sql]', cfg.table_sql);
await page.selectOption('select[name="render.kind"]', 'table');
await page.fill('input[name=_query_name]', 'All orders');
await page.selectOption('select[data-project-select]', cfg.project);
await Promise.all([page.waitForURL(project), page.click('[data-project-add]')]);
tiles = await layout();
expect(tiles.length === 4 && tiles[3].name === 'All orders' && tiles[3].query === 2, '"Add to project" appends a tile');

// --- Narrow: one column ----------------------------------------------------------------
await page.setViewportSize({ width: 600, height: 900 });
tiles = await layout();
expect(new Set(tiles.map((t) => t.width)).size === 1 && new Set(tiles.map((t) => t.x)).size === 1,
  `one column under 700 px (${tiles.map((t) => t.width).join(', ')})`);
await shot('06-narrow');

expect(errors.length === 0, 'no script error or CSP violation: ' + errors.join(' | '));
out.final = tiles.map(({ kind, query, w, h, name }) => ({ kind, query, w, h, name }));
await finish(out);
