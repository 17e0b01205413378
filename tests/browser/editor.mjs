// The query page's SQL editor in real Chromium (issue 23): CodeMirror over the page's
// <textarea name="sql">. Typing highlights SQL and fills the textarea the form sends;
// Ctrl-Enter runs the query; autocomplete offers keywords, and tables and columns of
// `window.outpostSchema` after an `outpost:schema` event; `outpost:insert` inserts at the
// cursor; Tab leaves the editor; no CSP violation anywhere; without JavaScript the page
// is the plain textarea. Started by tests/tests/e2e/console.rs with a JSON config.
import { cspViolations, expect, isCspMessage, signIn, start } from './harness.mjs';

// Every CSP violation of every page, from the event the browser fires (`csp`) and from its
// console (the harness keeps those in `errors`).
const { cfg, base, ctx, page, errors, newContext, shot, finish } = await start({ csp: true });
const out = {};

async function noViolations(where) {
  const seen = (await cspViolations(page)).concat(errors.filter(isCspMessage));
  expect(seen.length === 0, `no CSP violation ${where} (${JSON.stringify(seen)})`);
}
const doc = () => page.evaluate(() => window.outpostEditor.state.doc.toString());
const sqlValue = () => page.inputValue('textarea[name=sql]');
async function clearEditor() {
  await page.click('.cm-content');
  await page.keyboard.press('Control+a');
  await page.keyboard.press('Backspace');
}
// The labels of the open completion list (waits for it).
// The options offered once every key of `typed` is in the document and the list shows
// `want`, or after 10 s whatever it shows, for the failure message. A list read as soon as
// one appears can still be the one for the first keys typed: on a loaded machine CI saw
// "SELECT" alone offered after "SELECT orders.qua" had been typed.
async function completions(typed, want) {
  await page.waitForFunction((t) => window.outpostEditor.state.doc.toString() === t, typed, { timeout: 10000 });
  await page
    .waitForFunction(
      (w) => [...document.querySelectorAll('.cm-tooltip-autocomplete li .cm-completionLabel')].some((l) => l.textContent === w),
      want,
      { polling: 25, timeout: 10000 },
    )
    .catch(() => {});
  return page.$$eval('.cm-tooltip-autocomplete li .cm-completionLabel', (ls) => ls.map((l) => l.textContent));
}
// Enter takes the selected option once the list has settled. CodeMirror ignores Enter on a
// list shown less than its interactionDelay (75 ms) ago (it inserts a line instead), so
// that a list popping up under a key press is not taken by accident; on a loaded machine
// the list is refreshed as the last keys are read. So: every key typed is in the document,
// `label` is selected, and the list has not changed for longer than that delay.
async function accept(label, typed) {
  await page.waitForFunction((t) => window.outpostEditor.state.doc.toString() === t, typed, { timeout: 10000 });
  await page.waitForFunction(({ want, settle }) => {
    const list = document.querySelector('.cm-tooltip-autocomplete');
    const sel = document.querySelector('.cm-tooltip-autocomplete li[aria-selected] .cm-completionLabel');
    const seen = list && sel ? sel.textContent + '|' + list.innerHTML : null;
    if (seen !== window.__listSeen) {
      window.__listSeen = seen;
      window.__listSince = performance.now();
      return false;
    }
    return seen !== null && sel.textContent === want && performance.now() - window.__listSince > settle;
  }, { want: label, settle: 150 }, { polling: 25, timeout: 10000 });
  await page.keyboard.press('Enter');
}
async function closeCompletions() {
  await page.keyboard.press('Escape');
  await page.waitForSelector('.cm-tooltip-autocomplete', { state: 'detached', timeout: 5000 });
}

// Signs in (the session cookie is SameSite=Strict: we stay on our own pages).
await signIn(page, base, 'ed', cfg.password);

// --- The editor takes the textarea's place -----------------------------------------------
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await page.waitForSelector('form[data-query-form] .cm-editor .cm-content');
// The page's schema panel hands the connection's real schema to the editor once it has
// it (which reconfigures the editor): wait for that before typing, so nothing closes a
// completion list under the test and the schema given below is the last one.
await page.waitForSelector('[data-schema-panel][data-schema-state]:not([data-schema-state="loading"])');
const a11y = await page.evaluate(() => {
  const t = document.querySelector('textarea[name=sql]');
  const c = document.querySelector('.cm-content');
  const r = t.getBoundingClientRect();
  return { label: c.getAttribute('aria-label'), role: c.getAttribute('role'), describedBy: c.getAttribute('aria-describedby'),
    tabIndex: t.tabIndex, hidden: t.getAttribute('aria-hidden'), area: r.width * r.height, inForm: t.form !== null,
    gutters: document.querySelectorAll('.cm-lineNumbers').length };
});
expect(a11y.label === 'SQL' && a11y.role === 'textbox' && a11y.describedBy === 'run-output',
  `the editor is a textbox labelled "SQL", described by the run output (${JSON.stringify(a11y)})`);
expect(a11y.inForm && a11y.tabIndex === -1 && a11y.hidden === 'true' && a11y.area <= 1,
  'the textarea stays in the form, out of sight, out of the tab order');
expect(a11y.gutters === 1, 'the editor has line numbers');
await noViolations('when the editor starts (its styles are a constructed stylesheet, no <style>)');

// --- Typing: highlighting, the textarea follows, undo ---------------------------------------
await page.click('.cm-content');
await page.keyboard.type(cfg.sql, { delay: 5 });
await page.keyboard.press('Escape'); // close a completion list left open by the last word
expect(await doc() === cfg.sql, 'what was typed is in the editor (brackets closed once)');
expect(await sqlValue() === cfg.sql, 'and in the textarea the form sends');
const colours = await page.$$eval('.cm-line span', (spans) => spans.map((s) => [s.textContent, getComputedStyle(s).color]));
const colour = (text) => (colours.find(([t]) => t === text) || [])[1];
const plain = await page.$eval('.cm-content', (c) => getComputedStyle(c).color);
expect(colour('SELECT') && colour('SELECT') !== plain && colour('FROM') === colour('SELECT'),
  `keywords are highlighted (${colour('SELECT')} on ${plain})`);
out.highlighted = colours.length;
await page.keyboard.press('End');
await page.keyboard.type(' LIMIT 10');
expect((await sqlValue()).endsWith('LIMIT 10'), 'each change reaches the textarea');
await page.keyboard.press('Escape');
// (Typing close in time is one undo step, so the undo may take more than " LIMIT 10".)
await page.keyboard.press('Control+z');
const undone = await doc();
expect(!undone.endsWith('LIMIT 10') && await sqlValue() === undone, 'Ctrl-Z undoes it (history), in the textarea too');
await page.keyboard.press('Control+Shift+z');
expect(await sqlValue() === cfg.sql + ' LIMIT 10', 'Ctrl-Shift-Z redoes it');
await page.fill('textarea[name=sql]', cfg.sql);
// Bracket matching: the cursor after ")" marks the pair.
await page.evaluate(() => {
  const v = window.outpostEditor;
  v.dispatch({ selection: { anchor: v.state.doc.toString().indexOf(')') + 1 } });
});
await page.waitForSelector('.cm-matchingBracket');
expect((await page.$$('.cm-matchingBracket')).length === 2, 'brackets are matched');
await shot('30-editor-highlighted');

// --- Ctrl-Enter runs the same checks and run as the Run button -------------------------------
// A bar chart without its X column: the form's checks stop it, beside the editor.
await page.click('.cm-content');
await page.keyboard.press('Control+Enter');
await page.waitForFunction(() => document.querySelector('#run-output').textContent.includes('X axis'));
expect(await doc() === cfg.sql, 'Ctrl-Enter inserts no line in the editor');
expect(await page.getAttribute('.cm-editor', 'aria-invalid') === null, 'the SQL itself is not marked wrong');

// --- Autocomplete: keywords; the schema's tables and columns --------------------------------
await clearEditor();
expect(await sqlValue() === '', 'clearing the editor clears the textarea');
await page.keyboard.type('SEL');
expect((await completions('SEL', 'SELECT')).includes('SELECT'), 'a keyword is offered while typing');
await closeCompletions();
await page.evaluate((tables) => {
  window.outpostSchema = { tables };
  document.dispatchEvent(new Event('outpost:schema'));
}, cfg.schema);
await clearEditor();
await page.keyboard.type('SELECT * FROM mon');
const tables = await completions('SELECT * FROM mon', 'monthly_revenue');
expect(tables.includes('monthly_revenue'), `a table of window.outpostSchema is offered (${tables.join(', ')})`);
await accept('monthly_revenue', 'SELECT * FROM mon');
expect(await doc() === 'SELECT * FROM monthly_revenue', 'Enter takes it');
await clearEditor();
await page.keyboard.type('SELECT orders.qua');
const cols = await completions('SELECT orders.qua', 'quantity');
expect(cols.includes('quantity'), `after "orders." that table's columns are offered (${cols.join(', ')})`);
await closeCompletions();
await clearEditor();
await page.keyboard.type('SELECT reven');
const bare = await completions('SELECT reven', 'revenue');
expect(bare.includes('revenue'), `a bare word is offered the schema's columns (${bare.join(', ')})`);
const detail = await page.$$eval('.cm-tooltip-autocomplete li', (ls) => ls.map((l) => l.textContent).find((t) => t.startsWith('revenue')));
expect(detail.includes('real · masked') && detail.includes('monthly_revenue'), `with its type, masking and table (${detail})`);
await shot('31-editor-autocomplete');
await accept('revenue', 'SELECT reven');
expect(await sqlValue() === 'SELECT revenue', 'the completed text reaches the textarea');

// --- outpost:insert puts text at the cursor -------------------------------------------------
await page.keyboard.type(' FROM ');
const handled = await page.evaluate(() => {
  const ev = new CustomEvent('outpost:insert', { detail: 'monthly_revenue', cancelable: true });
  document.querySelector('textarea[name=sql]').dispatchEvent(ev);
  return ev.defaultPrevented;
});
expect(handled && await doc() === 'SELECT revenue FROM monthly_revenue', 'outpost:insert inserts at the cursor, and says it did');
expect(await page.evaluate(() => document.activeElement.closest('.cm-editor') !== null), 'and the editor keeps the focus');

// --- A script that sets the textarea sets the editor -----------------------------------------
await page.fill('textarea[name=sql]', 'SELECT 1 AS one');
expect(await doc() === 'SELECT 1 AS one', 'a value set on the textarea (with an input event) shows in the editor');

// --- Keyboard: Tab moves on, also after Escape ------------------------------------------------
await page.click('.cm-content');
await page.keyboard.press('Tab');
let inEditor = await page.evaluate(() => document.activeElement.closest('.cm-editor') !== null);
expect(!inEditor && await doc() === 'SELECT 1 AS one', 'Tab leaves the editor and inserts nothing');
await page.click('.cm-content');
await page.keyboard.type(' ');
await page.keyboard.press('Escape');
await page.keyboard.press('Tab');
inEditor = await page.evaluate(() => document.activeElement.closest('.cm-editor') !== null);
expect(!inEditor, 'Escape then Tab leaves it too');
await page.keyboard.press('Shift+Tab');
expect(await page.evaluate(() => document.activeElement.classList.contains('cm-content')), 'Shift-Tab comes back');

// --- Ctrl-Enter runs the query; the result appears -------------------------------------------
await clearEditor();
await page.keyboard.type(cfg.sql, { delay: 5 });
await page.keyboard.press('Escape');
await page.selectOption('select[name="render.kind"]', 'table');
await page.click('.cm-content');
await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.keyboard.press('Control+Enter')]);
out.job = page.url().split('/').pop();
await page.waitForSelector('[data-job][data-ready="true"]', { timeout: 60000 });
expect(await page.$eval('[data-job] [data-status]', (e) => e.textContent) === 'succeeded', 'Ctrl-Enter in the editor ran the query');
const cells = await page.$$eval('[data-result] td', (tds) => tds.map((t) => t.textContent));
expect(cfg.regions.every((r) => cells.includes(r)), `its table is shown (${cells.slice(0, 6).join(', ')}…)`);
expect((await page.textContent('pre[data-sql]')).trim() === cfg.sql, 'the job ran exactly the SQL typed in the editor');
await noViolations('on the job page');
await shot('32-editor-ran');

// Edit brings the SQL back into the editor.
await Promise.all([page.waitForURL(/\/console\/query\?job=/), page.click('a[data-edit]')]);
await page.waitForSelector('.cm-editor .cm-content');
expect(await doc() === cfg.sql, 'Edit opens the job\'s SQL in the editor');
await noViolations('on the query page, after everything above');

// --- Without JavaScript: the plain textarea ---------------------------------------------------
const plainCtx = await newContext({ javaScriptEnabled: false });
await plainCtx.addCookies(await ctx.cookies());
const plainPage = await plainCtx.newPage();
await plainPage.goto(base + '/console/query?job=' + encodeURIComponent(out.job));
expect((await plainPage.$$('.cm-editor')).length === 0, 'without JavaScript there is no editor');
expect(await plainPage.isVisible('textarea[name=sql]') && await plainPage.isEditable('textarea[name=sql]'),
  'and the textarea is there to type in');
expect(await plainPage.inputValue('textarea[name=sql]') === cfg.sql, 'holding the SQL');
await plainPage.fill('textarea[name=sql]', 'SELECT 2');
expect(await plainPage.inputValue('textarea[name=sql]') === 'SELECT 2', 'which one can edit');
await shot('33-no-javascript', plainPage);
await plainCtx.close();

// The asset itself: our own script, cached privately, with the notices of what it bundles.
const asset = await page.evaluate(async () => {
  const r = await fetch('/console/assets/editor.js');
  const t = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), csp: r.headers.get('content-security-policy'), head: t.slice(0, 400), size: t.length };
});
expect(asset.status === 200 && asset.type.startsWith('text/javascript') && asset.csp.includes("script-src 'self'"),
  'editor.js is served as JavaScript with the console\'s headers');
expect(asset.head.includes('@codemirror/autocomplete') && asset.head.includes('MIT'), 'it starts with its licence notices');
out.asset_bytes = asset.size;

expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
await finish(out);
console.log('all editor checks passed');
