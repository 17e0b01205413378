// The console in real Chromium, driven by playwright-core. Started by
// tests/tests/e2e/console.rs with a JSON file naming the control plane, users and jobs; writes
// what it produced (the enrolment token, the project id) to `out` for the Rust side to
// check against the real processes. Any failed expectation exits non-zero with a message.
import { expect, signIn, start } from './harness.mjs';

// The refusals this walk-through asks for: the forged request without a CSRF token, and
// a schedule that runs too often.
function expected(r) {
  const [method, path] = [r.request().method(), new URL(r.url()).pathname];
  return (r.status() === 403 && method === 'POST' && path === '/v1/groups')
    || (r.status() === 400 && method === 'PUT' && /^\/v1\/projects\/[^/]+$/.test(path));
}
// And the browser refusing, under the raw result's CSP, what the rogue SVG tries to run.
function expectedConsole(_text, page) {
  return page.url() === base + '/v1/jobs/' + cfg.rogue_job + '/result';
}
// Confirmations (revoking an agent) are accepted and kept in `page.dialogs`.
const first = await start({ expected, expectedConsole, viewport: { width: 1280, height: 800 }, acceptDialogs: true });
const { cfg, base, errors, newContext, shot, finish } = first;
const out = {};

// A fresh context (its own cookies) and page; `viewport` overrides the 1280×800 one.
async function newPage(viewport) {
  const ctx = await newContext(viewport ? { viewport } : {});
  return { ctx, page: await ctx.newPage() };
}

async function signInAs(page, user, password) {
  const res = await signIn(page, base, user, password);
  expect(res.status() === 200, `sign-in page loads for ${user}`);
  expect((await page.textContent('#who')) === user, `${user} is signed in`);
}

async function signOut(page) {
  await Promise.all([page.waitForURL(/\/console\/login$/), page.click('button[data-signout]')]);
}

async function waitForJob(page, sel = '[data-job]') {
  await page.waitForSelector(`${sel}[data-ready="true"]`, { timeout: 60000 });
  return page.$eval(`${sel} [data-status]`, (e) => e.textContent);
}

async function barsDrawn(page) {
  return page.$$eval('figure.chart svg rect.bar', (rs) =>
    rs.map((r) => ({ label: r.getAttribute('data-label'), h: r.getBBox().height, w: r.getBBox().width })));
}

// --- An admin: headers, cookie, enrolment token, a share -------------------------------
{
  const { ctx, page } = first;
  const login = await page.goto(base + '/console/login');
  const h = login.headers();
  expect(h['content-security-policy'].includes("script-src 'self'") && !h['content-security-policy'].includes('unsafe'),
    'the console is served with a CSP without unsafe-inline');
  expect(h['content-security-policy'].includes("frame-ancestors 'none'") && h['x-frame-options'] === 'DENY',
    'the console may not be framed');
  await signInAs(page, 'admin', cfg.passwords.admin);
  const cookie = (await ctx.cookies()).find((c) => c.name === '__Host-outpost_session');
  expect(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === 'Strict', 'the session cookie is Secure, HttpOnly, SameSite=Strict');
  expect((await page.$$('tr[data-agent="edge-1"] .status.online')).length === 1, 'agent edge-1 is listed online');
  expect((await page.textContent('tr[data-agent="edge-1"]')).includes('sample'), 'its connection is listed');
  await shot('01-agents-admin', page);

  await page.goto(base + '/console/admin/enrolment');
  await page.fill('input[name=agent]', 'edge-9');
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-secret-out]:not([hidden])');
  out.enrol_token = await page.inputValue('[data-secret-out] input');
  expect(out.enrol_token.length > 20, 'an enrolment token is shown once, to copy');
  await shot('02-enrolment-token', page);

  await page.goto(base + '/console/admin/users');
  const share = page.locator('form[data-api="POST /v1/shares"]');
  await share.locator('input[name=agent]').fill('edge-1');
  await share.locator('input[name=connection]').fill('sample');
  await share.locator('input[name=user]').fill('ed');
  await Promise.all([page.waitForEvent('load'), share.locator('button').click()]);
  expect((await page.textContent('main')).includes('user ed'), 'the admin shared edge-1/sample with ed');
  await shot('03-users-and-shares', page);

  // A cross-site form cannot change anything: the API wants the CSRF header.
  const forged = await page.evaluate(async () => (await fetch('/v1/groups', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"forged"}' })).status);
  expect(forged === 403, 'a state-changing request without the CSRF token is refused (403)');
  // Roles: make "spare" an editor, then disable them.
  const row = page.locator('tr[data-user="spare"]');
  await row.locator('select[name=role]').selectOption('editor');
  await Promise.all([page.waitForEvent('load'), row.locator('form button').click()]);
  expect((await page.inputValue('tr[data-user="spare"] select[name=role]')) === 'editor', 'the admin changed a role');
  await Promise.all([page.waitForEvent('load'), page.locator('tr[data-user="spare"] td > button').click()]);
  expect((await page.textContent('tr[data-user="spare"]')).includes('disabled'), 'the admin disabled a user');

  // An API token, shown once.
  await page.goto(base + '/console/tokens');
  await page.fill('form[data-api="POST /v1/tokens"] input[name=name]', 'reporting');
  await page.check('input[name=scopes][value="results:read"]');
  await page.click('form[data-api="POST /v1/tokens"] button[type=submit]');
  await page.waitForSelector('form[data-api="POST /v1/tokens"] [data-secret-out]:not([hidden])');
  out.api_token = await page.inputValue('form[data-api="POST /v1/tokens"] [data-secret-out] input');
  expect(out.api_token.startsWith('opat_'), 'an API token is shown once');

  // Revoke the rogue agent (after the confirmation).
  await page.goto(base + '/console/agents');
  await Promise.all([page.waitForEvent('load'), page.click('tr[data-agent="rogue"] button.danger')]);
  expect(page.dialogs.some((d) => d.startsWith('confirm:Revoke agent rogue')), 'revoking asks for confirmation');
  expect((await page.$$('tr[data-agent="rogue"] .status.revoked')).length === 1, 'the admin revoked an agent');

  // The audit log, filtered.
  await page.goto(base + '/console/admin/audit');
  await page.fill('input[name=action]', 'agents.');
  await Promise.all([page.waitForEvent('load'), page.click('form[action="/console/admin/audit"] button')]);
  const actions = await page.$$eval('table.audit tbody tr td:nth-child(5)', (tds) => tds.map((t) => t.textContent));
  expect(actions.length > 0 && actions.every((a) => a.startsWith('agents.')) && actions.includes('agents.revoke'),
    'the audit log filters by action and shows the revocation');
  await shot('03b-audit-filtered', page);
  await signOut(page);
  const after = await page.goto(base + '/console/agents');
  expect(after.url().endsWith('/console/login'), 'after sign-out the console asks to sign in again');
  await ctx.close();
}

// --- An editor: run a bar chart live, save it as a project, share it, embed it ----------
{
  const { ctx, page } = await newPage();
  await signInAs(page, 'ed', cfg.passwords.ed);
  await page.goto(base + '/console/query');
  await page.selectOption('select[name=agent]', 'edge-1');
  await page.selectOption('select[name=connection]', 'sample');
  await page.fill('textarea[name=sql]', cfg.bar_sql);
  await page.selectOption('select[name="render.kind"]', 'bar');
  await page.fill('input[name="render.x"]', 'region');
  await page.fill('input[name="render.y"]', 'revenue');
  await page.fill('input[name="render.title"]', 'Revenue by region');
  await shot('04-query', page);
  let navigations = 0;
  await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.click('#query-form button.primary')]);
  expect(!page.url().toLowerCase().includes('select'), 'no SQL in the URL');
  page.on('framenavigated', () => navigations++);
  const state = await waitForJob(page);
  expect(state === 'succeeded', 'the job reaches succeeded on the page');
  expect(navigations === 0, 'the status and result arrived without reloading the page');
  const bars = await barsDrawn(page);
  expect(bars.length === cfg.regions.length, `one bar per region (${bars.length})`);
  expect(bars.every((b) => b.h > 0 && b.w > 0), 'every bar is drawn with a height and width');
  expect(JSON.stringify(bars.map((b) => b.label).sort()) === JSON.stringify([...cfg.regions].sort()), 'the bars are the regions');
  expect(Number(await page.textContent('[data-rows-read]')) === cfg.regions.length, 'rows read are shown');
  await shot('05-bar-chart', page);

  // A table whose column the agent's egress policy masks: the page says what and why.
  await page.goto(base + '/console/query?agent=edge-1&connection=sample');
  await page.fill('textarea[name=sql]', 'SELECT id, product FROM orders WHERE region = $1 ORDER BY id LIMIT 3');
  await page.fill('textarea[name=params]', 'text:North');
  await page.selectOption('select[name="render.kind"]', 'table');
  await Promise.all([page.waitForURL(/\/console\/jobs\/[^/]+$/), page.click('#query-form button.primary')]);
  expect(await waitForJob(page) === 'succeeded', 'the parameterised table query succeeds');
  expect((await page.$$('table.result tbody tr')).length === 3, 'the table has its 3 rows');
  const egress = await page.textContent('ul.egress');
  expect(egress.includes('masked') && egress.includes('product'), `the egress decision is shown (${egress.trim()})`);
  await shot('05b-table-masked', page);

  await page.goto(base + '/console/query?agent=edge-1&connection=sample');
  await page.fill('textarea[name=sql]', cfg.bar_sql);
  await page.fill('input[name="render.x"]', 'region');
  await page.fill('input[name="render.y"]', 'revenue');
  await page.fill('input[name=_project]', 'Sales');
  await page.fill('input[name=_query_name]', 'Revenue by region');
  await Promise.all([page.waitForURL(/\/console\/projects\/[^/]+$/), page.click('button[data-wrap=project]')]);
  out.project_id = page.url().split('/').pop();
  expect((await page.textContent('h1')) === 'Sales', 'the project is saved and opened');
  await Promise.all([page.waitForEvent('load'), page.click('form[data-api$="/run"] button')]);
  expect(await waitForJob(page, 'section.query [data-job]') === 'succeeded', 'refreshing the project runs its query');
  expect((await barsDrawn(page)).length === cfg.regions.length, 'the project shows the chart');

  const grant = page.locator('form[data-api*="/grants/"]');
  await grant.locator('input[name=_user]').fill('vi');
  await grant.locator('select[name=access]').selectOption('view-app');
  await Promise.all([page.waitForEvent('load'), grant.locator('button').click()]);
  expect((await page.textContent('[data-grant="vi"]')).includes('view-app'), 'the project is shared with vi as view-app');

  // A schedule: refused in words beside the form, then set, said in words, kept.
  const words = () => page.textContent('[data-schedule]');
  expect((await words()) === 'Refreshed on demand only (no schedule).', 'a new project refreshes on demand only');
  const sched = page.locator('form[data-wrap=schedule]');
  await sched.locator('input[name="schedule.cron"]').fill('* * * * *');
  await sched.locator('input[name="schedule.timezone"]').fill('Europe/Berlin');
  await sched.locator('button', { hasText: 'Save schedule' }).click();
  await page.waitForFunction(() => /runs every 60 s/.test(document.querySelector('form[data-wrap=schedule] output').textContent));
  expect(true, 'a schedule that runs too often is refused beside its form, in words');
  await sched.locator('input[name="schedule.cron"]').fill('0 6 * * 1-5');
  await Promise.all([page.waitForEvent('load'), sched.locator('button', { hasText: 'Save schedule' }).click()]);
  expect(/^Every weekday at 06:00, Europe\/Berlin · next run \d+ \w{3} 06:00$/.test(await words()),
    'the schedule is saved and said in words, its next run in its zone');
  await waitForJob(page, 'section.query [data-job]');
  expect((await barsDrawn(page)).length === cfg.regions.length, 'the project keeps its query and chart');

  const embed = page.locator('form[data-then=embed]');
  await embed.locator('input[name=customer]').fill('acme');
  await embed.locator('button').click();
  await page.waitForSelector('[data-embed-out]:not([hidden])');
  const snippet = await page.inputValue('[data-embed-out] textarea');
  const src = /<iframe src="([^"]+\/embed\/dashboards\/[\w-]+\?token=ey[\w-]+\.[\w-]+\.[\w-]+)"/.exec(snippet);
  expect(src !== null, 'an iframe snippet of the embed page with a short-lived embed token is shown');
  out.embed_snippet = snippet;
  const framed = await ctx.newPage();
  await framed.goto(src[1]);
  await framed.waitForSelector('body.embed .tiles section.query');
  expect(!(await framed.content()).includes('<script'), "the snippet's page opens: the project's tiles, no script");
  await framed.close();
  await shot('06-project-editor', page);
  await signOut(page);
  await ctx.close();
}

// --- A viewer, by keyboard only: sees the chart, never the SQL ------------------------
{
  const { ctx, page } = await newPage();
  await page.goto(base + '/console/login');
  // The user field has focus (the page's autofocus, which a loaded machine may apply a
  // moment after the load event: typed before it, the keys went nowhere); everything
  // else by keyboard.
  await page.waitForFunction(() => document.activeElement && document.activeElement.name === 'user');
  await page.keyboard.type('vi');
  await page.keyboard.press('Tab');
  await page.keyboard.type(cfg.passwords.vi);
  await Promise.all([page.waitForURL(/\/console\/(agents|projects)$/), page.keyboard.press('Enter')]);
  expect((await page.$$('a[href="/console/query"]')).length === 0, 'a viewer has no Query page in the menu');
  await page.goto(base + '/console/projects');
  await page.click(`a[href="/console/projects/${out.project_id}"]`);
  await page.waitForURL(/\/console\/projects\/[^/]+$/);
  await waitForJob(page, 'section.query [data-job]');
  expect((await barsDrawn(page)).length === cfg.regions.length, 'the viewer sees the chart');
  expect((await page.$$('[data-sql]')).length === 0, 'the viewer sees no SQL block');
  const html = await page.content();
  expect(!/select\s+region|from\s+orders/i.test(html), 'the SQL is nowhere in the viewer\'s page');
  expect(!html.includes('edge-1'), 'nor the agent that ran it');
  expect((await page.textContent('[data-schedule]')).startsWith('Every weekday at 06:00, Europe/Berlin · next run '),
    'the viewer reads when the dashboard refreshes');
  expect((await page.$$('form[data-wrap=schedule]')).length === 0, 'and has no form to change it');
  await shot('07-project-viewer', page);
  // Keyboard: the skip link is the first stop.
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.className) === 'skip', 'the first Tab reaches "Skip to content"');
  // A narrow screen: nothing wider than the viewport but scrollable tables.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await waitForJob(page, 'section.query [data-job]');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 0, `the page fits a 390 px screen (overflow ${overflow} px)`);
  await shot('08-project-viewer-narrow', page);
  await ctx.close();
}

// --- A job whose SVG carries script: nothing runs ---------------------------------------
{
  const { ctx, page } = await newPage();
  await signInAs(page, 'admin', cfg.passwords.admin);
  await page.goto(base + '/console/jobs/' + cfg.rogue_job);
  expect(await waitForJob(page) === 'succeeded', 'the rogue agent\'s job is shown');
  const pwned = await page.evaluate(() => window.__pwned);
  expect(pwned === undefined, 'no script from the SVG ran (window.__pwned unset)');
  expect(page.dialogs.length === 0, 'no alert from the SVG');
  expect((await page.$$('figure.chart script, figure.chart foreignObject, figure.chart [onload]')).length === 0,
    'the inlined SVG holds no script, foreignObject or onload');
  expect((await page.$$('figure.chart rect.bar')).length === 1, 'the drawing itself is kept');
  expect((await page.$$('[data-sanitised]')).length === 1, 'the page says markup was removed');
  await shot('09-rogue-svg', page);
  // Opened on its own, the raw result is sandboxed by its CSP: its script does not run either.
  const raw = await page.goto(base + '/v1/jobs/' + cfg.rogue_job + '/result');
  expect(raw.headers()['content-security-policy'].includes('sandbox'), 'the raw result is served sandboxed');
  expect(await page.evaluate(() => window.__pwned) === undefined && page.dialogs.length === 0,
    'the raw SVG opened directly runs no script');
  await ctx.close();
}

// Script errors, CSP refusals and failed requests of every page above.
expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
await finish(out);
console.log('all console checks passed');
