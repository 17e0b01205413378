// The query page's schema browser in real Chromium (issue 23): once a connection is
// chosen the panel lists its tables (collapsible) with columns, types, row estimates and a
// "masked" badge; clicking a column inserts it into the SQL (the editor's, or the
// textarea's at its caret when the editor is not there); the filter narrows the list;
// Refresh asks the agent again; the schema is handed to the editor as
// `window.outpostSchema` with an `outpost:schema` event; no CSP violation.
// Started by tests/tests/e2e/schema_browser.rs with a JSON config.
import { cspViolations, expect, signIn, start } from './harness.mjs';

// Every CSP violation (`csp`), and each `outpost:schema` event, counted in every document.
const { cfg, base, ctx, page, errors, shot, finish } = await start({
  csp: true,
  init: () => {
    window.__schemaEvents = 0;
    document.addEventListener('outpost:schema', () => { window.__schemaEvents += 1; });
  },
});
const out = {};

const loaded = () => page.waitForSelector('[data-schema-panel][data-schema-state="loaded"]', { timeout: 30000 });
const status = () => page.textContent('[data-schema-status]');
const tableNames = () => page.$$eval('details.schema-table:not([hidden]) .schema-name', (ns) => ns.map((n) => n.textContent));

await signIn(page, base, 'ed', cfg.password);

// --- The panel fills itself for the chosen connection ---------------------------------
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await loaded();
const names = await tableNames();
expect(names.includes('orders') && names.includes('monthly_revenue'), `the tables are listed (${names.join(', ')})`);
expect(/2 tables, \d+ columns, as of/.test(await status()), `the status counts them (${await status()})`);
const closed = await page.$$eval('details.schema-table', (ds) => ds.every((d) => !d.open));
expect(closed, 'tables start collapsed');
await page.click('details.schema-table:has(.schema-name:text-is("orders")) summary');
const orders = await page.$$eval('details.schema-table:has(.schema-name:text-is("orders")) li', (lis) => lis.map((li) => ({
  name: li.querySelector('.schema-insert').textContent,
  type: li.querySelector('.schema-type').textContent,
  masked: li.querySelector('.badge.masked') !== null,
})));
expect(orders.length === 6 && orders[0].name === 'id', `orders shows its columns (${JSON.stringify(orders)})`);
expect(orders.find((c) => c.name === 'amount').masked && orders.filter((c) => c.masked).length === 1,
  'the masked column carries the badge, the others do not');
expect(orders.find((c) => c.name === 'region').type === 'TEXT not null', 'types and NOT NULL are shown');
const rows = await page.textContent('details.schema-table:has(.schema-name:text-is("orders")) .schema-rows');
expect(/^~[\d,.\s]+ rows$/.test(rows), `the row estimate is shown (${rows})`);
const handed = await page.evaluate(() => ({ s: window.outpostSchema, n: window.__schemaEvents }));
expect(handed.n >= 1 && handed.s.tables.orders.some((c) => c.name === 'amount' && c.masked === true && c.type === 'REAL'),
  'the schema is handed to the editor as window.outpostSchema with an outpost:schema event');
await shot('schema-panel');

// --- A column's name goes into the SQL at the cursor --------------------------------------
await page.waitForSelector('.cm-content');
await page.click('.cm-content');
await page.keyboard.press('Control+a');
await page.keyboard.type('SELECT  FROM orders');
for (let i = 0; i < ' FROM orders'.length; i++) await page.keyboard.press('ArrowLeft');
await page.click('details.schema-table:has(.schema-name:text-is("orders")) .schema-insert:text-is("region")');
const sql = await page.inputValue('textarea[name=sql]');
expect(sql === 'SELECT region FROM orders', `the editor got the column at its cursor (${sql})`);

// --- The filter narrows tables and columns; Refresh asks the agent again --------------------
await page.fill('[data-schema-filter]', 'revenue');
expect((await tableNames()).join() === 'monthly_revenue', 'the filter keeps the tables that match');
await page.fill('[data-schema-filter]', '');
const firstStatus = await status();
await page.click('[data-schema-refresh]');
await loaded();
expect(!(await status()).includes('(kept)'), `Refresh asks the agent (${await status()})`);
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await loaded();
expect((await status()).includes('(kept)'), `opening the page again is served from the cache (${await status()}; first: ${firstStatus})`);

// --- Without the editor, the textarea takes the text at its caret ----------------------------
const plain = await ctx.newPage();
await plain.route('**/console/assets/editor.js', (r) => r.abort());
await plain.goto(base + '/console/query?agent=edge-1&connection=sample');
await plain.waitForSelector('[data-schema-panel][data-schema-state="loaded"]', { timeout: 30000 });
await plain.fill('textarea[name=sql]', 'SELECT  FROM orders');
await plain.evaluate(() => { const t = document.querySelector('textarea[name=sql]'); t.setSelectionRange(7, 7); });
await plain.click('details.schema-table:has(.schema-name:text-is("orders")) summary');
await plain.click('details.schema-table:has(.schema-name:text-is("orders")) .schema-insert:text-is("quantity")');
const plainSql = await plain.inputValue('textarea[name=sql]');
expect(plainSql === 'SELECT quantity FROM orders', `the textarea got the column at its caret (${plainSql})`);

const csp = await cspViolations(page);
expect(csp.length === 0, `no CSP violation (${JSON.stringify(csp)})`);
expect(errors.length === 0, `no script error (${errors.join('; ')})`);
out.ok = true;
await finish(out);
