// The query workbench and job pages in real Chromium (issue 23, "jobs keep their meaning"):
// render options per kind with live checks, Ctrl-Enter / Cmd-Enter, errors beside the
// editor in an analyst's words (and beside the field: a currency's code, decimals), a
// line chart with a series column and compact numbers, a job's name, SQL, Edit, Re-run and downloads (SVG, PNG,
// CSV), the jobs list's filters and the query history. Started by tests/tests/e2e/console.rs
// with a JSON config; writes the job ids it made to `out` for the Rust side to check.
import { readFileSync } from 'node:fs';
import { expect, signIn, start } from './harness.mjs';

// The refusals this walk-through asks for: the API's answers it plays (a POST /v1/jobs
// answered 400), a scalar's CSV route (409) and the jobs list with an unknown state (400).
function expected(r) {
  const u = new URL(r.url());
  const method = r.request().method();
  return (r.status() === 400 && method === 'POST' && u.pathname === '/v1/jobs')
    || (r.status() === 409 && u.pathname.endsWith('/download.csv'))
    || (r.status() === 400 && u.pathname === '/console/jobs' && u.searchParams.get('state') === 'done');
}
const { cfg, base, page, errors, shot, finish } = await start({ expected, context: { acceptDownloads: true } });
const out = {};

async function waitForJob() {
  await page.waitForSelector('[data-job][data-ready="true"]', { timeout: 60000 });
  return page.$eval('[data-job] [data-status]', (e) => e.textContent);
}

const visible = (sel) => page.isVisible(sel);
const jobId = () => page.url().split('/').pop();

// Signs in (the session cookie is SameSite=Strict: we stay on our own pages).
await signIn(page, base, 'ed', cfg.password);

// --- The query page: options of the chosen kind, checked as one types ------------------
await page.goto(base + '/console/query');
const kind = 'select[name="render.kind"]';
await page.selectOption(kind, 'scalar');
expect(await visible('input[name="render.decimals"]') && await visible('input[name="render.unit"]'),
  'a scalar offers decimals and a unit');
expect(!(await visible('input[name="render.x"]')), 'a scalar hides the X axis');
await page.fill('input[name="render.decimals"]', '11');
expect((await page.textContent('#run-output')).includes('Decimals must be a whole number from 0 to 10'),
  'a bad number of decimals is said while typing');
await page.fill('input[name="render.decimals"]', '2');
expect((await page.textContent('#run-output')) === '', 'and the message goes when it is fixed');
await page.selectOption(kind, 'pie');
expect(await visible('label[data-kinds="pie"] input[name="render.label"]') && await visible('input[name="render.value"]'),
  'a pie asks for its label and value columns');
expect(await visible('select[name="render.format"]') && await visible('input[name="render.decimals"]')
  && !(await visible('input[name="render.series"]')) && !(await visible('input[name="render.x"]')),
  'and for a number format and decimals, not for a series column or an X axis');
await page.selectOption(kind, 'bar');
expect(await visible('input[name="render.series"]') && !(await visible('input[name="render.value"]')),
  'a bar chart offers a series column, not a pie\'s value');

// Ctrl-Enter with no Y column: the error is beside the editor, in words, nothing is sent.
await page.selectOption('select[name=agent]', 'edge-1');
await page.fill('textarea[name=sql]', cfg.named_sql);
await page.fill('input[name="render.x"]', 'region');
const before = page.url();
await page.focus('textarea[name=sql]');
await page.keyboard.press('Control+Enter');
await page.waitForFunction(() => document.querySelector('#run-output').textContent.includes('Y axis'));
expect((await page.textContent('#run-output')).includes('Choose at least one column for the Y axis'),
  'Ctrl-Enter runs the checks and says what is missing');
expect(page.url() === before, 'nothing was dispatched');
expect(await page.getAttribute('input[name="render.y"]', 'aria-invalid') === 'true', 'the Y field is marked invalid');
const geo = await page.evaluate(() => {
  const box = (s) => document.querySelector(s).getBoundingClientRect();
  return { editor: box('textarea[name=sql]').bottom, out: box('#run-output').top, save: box('[data-wrap=project]').top };
});
expect(geo.out >= geo.editor && geo.out - geo.editor < 80 && geo.out < geo.save,
  `the error sits right under the editor, above "Save as project" (${JSON.stringify(geo)})`);
await shot('20-workbench-error');

// A refusal from the API itself is put in the same words (the API answer is played here:
// the page's own checks let no such request through).
await page.fill('input[name="render.y"]', 'revenue');
await page.route('**/v1/jobs', (route) => route.request().method() === 'POST'
  ? route.fulfill({ status: 400, contentType: 'application/json',
    body: JSON.stringify({ code: 'invalid_request', message: 'render.y: must name at least one column' }) })
  : route.continue());
await page.keyboard.press('Control+Enter');
await page.waitForFunction(() => document.querySelector('#run-output').className === 'error');
expect((await page.textContent('#run-output')) === 'Choose at least one column for the Y axis.',
  'the API\'s "render.y: must name at least one column" reads "Choose at least one column for the Y axis."');
await page.unroute('**/v1/jobs');

// Cmd-Enter runs it.
await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.keyboard.press('Meta+Enter')]);
out.first_job = jobId();
expect(await waitForJob() === 'succeeded', 'Cmd-Enter ran the query');

// --- The job page: name, id, SQL, downloads, Edit, Re-run ------------------------------
expect((await page.textContent('h1')) === 'Revenue by region', 'the job page is titled by the SQL\'s comment');
expect((await page.title()).startsWith('Revenue by region'), 'so is the browser tab');
expect((await page.textContent('[data-job-id]')) === out.first_job, 'the job id stays visible');
expect((await page.textContent('pre[data-sql]')).includes('SUM(amount) AS revenue'), 'the SQL is shown to its owner');
const svgLink = page.locator('a[data-download=svg]');
expect(await svgLink.getAttribute('download') === 'revenue-by-region.svg', 'an SVG download named after the job');
const svg = await page.evaluate(async (href) => {
  const r = await fetch(href, { credentials: 'same-origin' });
  return { status: r.status, cd: r.headers.get('content-disposition'), type: r.headers.get('content-type'), text: await r.text() };
}, await svgLink.getAttribute('href'));
expect(svg.status === 200 && svg.cd === 'attachment; filename="revenue-by-region.svg"' && svg.type.startsWith('image/svg+xml'),
  'the SVG is served as an attachment');
expect(svg.text.includes('<svg') && !svg.text.includes('<script'), 'it is the sanitised SVG');
const [download] = await Promise.all([page.waitForEvent('download'), page.click('button[data-png]')]);
expect(download.suggestedFilename() === 'revenue-by-region.png', 'the PNG download is named after the job');
const pngPath = `${cfg.screenshots}/downloaded-chart.png`;
await download.saveAs(pngPath);
const png = readFileSync(pngPath);
expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) && png.length > 2000,
  `the PNG is a real PNG drawn from the chart (${png.length} bytes)`);
expect((await page.$$('a[data-download=csv]')).length === 0, 'a chart has no CSV link');
await shot('21-job-named');

await Promise.all([page.waitForURL(/\/console\/query\?job=/), page.click('a[data-edit]')]);
expect((await page.inputValue('textarea[name=sql]')) === cfg.named_sql, 'Edit opens the query page with the SQL');
expect((await page.inputValue('select[name="render.kind"]')) === 'bar' && (await page.inputValue('input[name="render.x"]')) === 'region'
  && (await page.inputValue('input[name="render.y"]')) === 'revenue', 'and the render options');
expect((await page.inputValue('select[name=agent]')) === 'edge-1' && (await page.inputValue('select[name=connection]')) === 'sample',
  'and the agent and connection');
await shot('22-edit-prefilled');

await page.goto(base + '/console/jobs/' + out.first_job);
await Promise.all([page.waitForURL((u) => /\/console\/jobs\/[^/]+$/.test(u.pathname) && !u.pathname.endsWith(out.first_job)),
  page.click('button[data-rerun]')]);
out.rerun_job = jobId();
expect(out.rerun_job !== out.first_job, 'Re-run made a new job and went to it');
expect(await waitForJob() === 'succeeded' && (await page.textContent('h1')) === 'Revenue by region', 'the re-run succeeded, same name');

// --- A table downloads as CSV, safe for spreadsheets; a scalar has no CSV -----------------
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await page.fill('textarea[name=sql]', cfg.csv_sql);
await page.selectOption(kind, 'table');
await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.keyboard.press('Control+Enter')]);
out.table_job = jobId();
expect(await waitForJob() === 'succeeded', 'the table query succeeded');
expect((await page.$$('a[data-download=svg], button[data-png]')).length === 0, 'a table has no SVG or PNG download');
const csv = await page.evaluate(async () => {
  const r = await fetch(document.querySelector('a[data-download=csv]').href, { credentials: 'same-origin' });
  return { status: r.status, cd: r.headers.get('content-disposition'), text: await r.text() };
});
expect(csv.status === 200 && csv.cd.startsWith('attachment; filename="select-'), 'the CSV is an attachment');
expect(csv.text === cfg.csv_expected, `the CSV quotes, empties NULLs and defuses formulas (${JSON.stringify(csv.text)})`);
await shot('23-table-csv');

await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await page.fill('textarea[name=sql]', 'SELECT COUNT(*) AS n FROM orders');
await page.selectOption(kind, 'scalar');
await page.fill('input[name="render.column"]', 'n');
await page.fill('input[name="render.unit"]', ' orders');
await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.keyboard.press('Control+Enter')]);
out.scalar_job = jobId();
expect(await waitForJob() === 'succeeded', 'the scalar query succeeded');
expect((await page.$$('a[data-download]')).length === 0, 'a scalar has no download links');
const refused = await page.evaluate(async (id) => {
  const r = await fetch('/console/jobs/' + id + '/download.csv', { credentials: 'same-origin' });
  return { status: r.status, text: await r.text() };
}, out.scalar_job);
expect(refused.status === 409 && refused.text.includes('not a table'), `its CSV route says why it has none (${refused.text.trim()})`);

// --- The jobs list: names, filters in the URL -------------------------------------------
await page.goto(base + '/console/jobs');
expect((await page.textContent(`tr[data-job-row="${out.first_job}"] a`)) === 'Revenue by region', 'the jobs list shows names');
expect((await page.textContent(`tr[data-job-row="${out.first_job}"] code`)) === out.first_job, 'with the id beside');
expect((await page.textContent(`tr[data-job-row="${out.first_job}"] [data-snippet]`)).startsWith('-- Revenue by region SELECT region'),
  'and a snippet of the SQL');
await page.selectOption('form[data-jobs-filter] select[name=state]', 'failed');
await Promise.all([page.waitForURL(/state=failed/), page.click('form[data-jobs-filter] button')]);
expect((await page.$$('[data-no-jobs]')).length === 1, 'no failed job: the filter says none match');
await page.goto(base + '/console/jobs?state=succeeded&agent=edge-1&connection=sample');
const rows = await page.$$eval('tr[data-job-row] .status', (s) => s.map((x) => x.textContent));
expect(rows.length === 4 && rows.every((s) => s === 'succeeded'), `the URL's filters apply (${rows.length} rows)`);
expect((await page.inputValue('form[data-jobs-filter] select[name=state]')) === 'succeeded'
  && (await page.inputValue('form[data-jobs-filter] input[name=agent]')) === 'edge-1', 'and fill the form');
expect((await page.$$('form[data-jobs-filter] input[name=owner]')).length === 0, 'an editor has no requester filter');
const bad = await page.goto(base + '/console/jobs?state=done');
expect(bad.status() === 400 && (await page.textContent('main')).includes('state'), 'an unknown state is refused, naming it');
await shot('24-jobs-filtered');

// --- History: the user's own last jobs, with Edit -----------------------------------------
await page.goto(base + '/console/query');
const hist = await page.$$eval('tr[data-history]', (rs) => rs.map((r) => ({
  id: r.dataset.history, name: r.querySelector('td a').textContent, sql: r.querySelector('code').textContent,
  status: r.querySelector('.status').textContent, when: r.querySelector('time') !== null })));
expect(hist.length === 4, `the history lists the user's 4 jobs (${hist.length})`);
expect(hist[0].id === out.scalar_job && hist[0].sql === 'SELECT COUNT(*) AS n FROM orders' && hist[0].status === 'succeeded'
  && hist[0].when, 'newest first, with SQL, status and time');
expect(hist.some((h) => h.id === out.first_job && h.name === 'Revenue by region'), 'named');
await Promise.all([page.waitForURL(/\/console\/query\?job=/), page.click(`tr[data-history="${out.table_job}"] a[data-history-edit]`)]);
expect((await page.inputValue('textarea[name=sql]')) === cfg.csv_sql && (await page.inputValue(kind)) === 'table',
  'Edit from the history opens that query');
await shot('25-history');

// --- A line chart with a series column and compact numbers; a currency needs its code ----
await page.goto(base + '/console/query?agent=edge-1&connection=sample');
await page.selectOption(kind, 'line');
expect(await visible('input[name="render.series"]') && await visible('input[name="render.y2"]')
  && await visible('select[name="render.format"]') && await visible('input[name="render.unit"]')
  && await visible('input[name="render.decimals"]'), 'a line chart offers a series column, a right axis, a number format, a unit and decimals');
await page.selectOption(kind, 'table');
expect(!(await visible('select[name="render.format"]')) && !(await visible('input[name="render.unit"]'))
  && !(await visible('input[name="render.y2"]')), 'a table offers none of them');
await page.selectOption(kind, 'line');
await page.fill('textarea[name=sql]', cfg.line_sql);
await page.fill('input[name="render.x"]', 'm');
await page.fill('input[name="render.y"]', 'sales');
await page.fill('input[name="render.series"]', 'region');
const unitNote = 'label:has(> input[name="render.unit"]) [data-field-error]';
await page.selectOption('select[name="render.format"]', 'currency');
expect((await page.textContent(unitNote)).includes('three-letter code in capitals as the unit, such as EUR'),
  'currency without a unit is said beside the unit field, before Run');
expect(await page.getAttribute('input[name="render.unit"]', 'aria-invalid') === 'true' && await visible(unitNote),
  'and the unit field is marked invalid');
await shot('26-currency-needs-unit');
const beforeLine = page.url();
await page.focus('textarea[name=sql]');
await page.keyboard.press('Control+Enter');
expect(page.url() === beforeLine && (await page.textContent('#run-output')).includes('three-letter code'),
  'Run refuses it and says why beside the editor too');
await page.fill('input[name="render.unit"]', 'eu');
expect((await page.textContent(unitNote)).includes('three-letter code'), 'a code that is not three capitals is refused too');
await page.fill('input[name="render.unit"]', 'EUR');
expect((await page.textContent(unitNote)) === '' && !(await visible(unitNote)), 'the note goes once the code is given');
await page.fill('input[name="render.unit"]', '');
await page.selectOption('select[name="render.format"]', 'compact');
expect((await page.textContent(unitNote)) === '', 'compact needs no unit');
await page.fill('input[name="render.decimals"]', '12');
expect((await page.textContent('label:has(> input[name="render.decimals"]) [data-field-error]')).includes('from 0 to 10'),
  'decimals out of range are said beside their field');
await page.fill('input[name="render.decimals"]', '');
// The API's own refusal of a currency without its code reads the same, beside the editor
// (played here: the page's checks let no such request through).
await page.route('**/v1/jobs', (route) => route.request().method() === 'POST'
  ? route.fulfill({ status: 400, contentType: 'application/json', body: JSON.stringify({ code: 'invalid_request',
    message: 'render.unit: a currency format needs the ISO 4217 code as its unit, such as "EUR"' }) })
  : route.continue());
await page.focus('textarea[name=sql]');
await page.keyboard.press('Control+Enter');
await page.waitForFunction(() => document.querySelector('#run-output').className === 'error');
expect((await page.textContent('#run-output')) === 'A currency needs its three-letter code in capitals as the unit, such as EUR or USD.',
  'the API\'s refusal of a currency without its code is said in the same words beside the editor');
await page.unroute('**/v1/jobs');
await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.keyboard.press('Control+Enter')]);
out.line_job = jobId();
expect(await waitForJob() === 'succeeded', 'the line chart ran');
const chart = await page.evaluate(() => {
  const svg = document.querySelector('figure.chart svg');
  const texts = (c) => [...svg.querySelectorAll('text.' + c)].map((t) => t.firstChild ? t.firstChild.textContent : '');
  return { legend: texts('legend'), ticks: texts('tick') };
});
expect(['East', 'North', 'South', 'West'].every((r) => chart.legend.includes(r)),
  `the chart has a legend, one series per region (${chart.legend.join(', ')})`);
expect(chart.ticks.some((t) => /^\d+(\.\d+)?[kMBT]$/.test(t)), `the value axis is compact (${chart.ticks.join(', ')})`);
await shot('27-line-series-compact');

expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
await finish(out);
console.log('all workbench checks passed');
