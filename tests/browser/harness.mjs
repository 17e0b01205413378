// What the console walk-throughs in real Chromium share: the JSON config their e2e test
// passes (argv[2]), pages whose script errors, CSP refusals and failed requests are
// collected in `errors`, `expect`, signing in, screenshots, and writing what was seen to
// `cfg.out`.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

export function expect(cond, what) {
  if (!cond) throw new Error('expected: ' + what);
  console.log('ok - ' + what);
}

// Whether a console message is the browser saying it refused something under a CSP.
export const isCspMessage = (text) => /Content Security Policy/i.test(text);

// Run in every document of a context started with `csp: true`: each
// `securitypolicyviolation` the browser fires is kept in `window.__csp`.
function recordCsp() {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
  });
}

// The CSP violations `page` (or a frame) recorded since its document loaded; fails when
// that document records none (its context was not started with `csp: true`).
export async function cspViolations(page) {
  const seen = await page.evaluate(() => (Array.isArray(window.__csp) ? window.__csp : null));
  if (seen === null) throw new Error('this document does not record CSP violations: start({ csp: true })');
  return seen;
}

// Starts Chromium and a first context and page (1280×900 unless `viewport` says; `context`
// adds browser-context options such as `acceptDownloads`). Every page of every context
// made here (`newContext`, `ctx.newPage()`) reports into `errors`: script errors, the
// console's CSP messages unless `expectedConsole(text, page)` says the walk-through asks
// for that refusal, and 4xx/5xx answers unless `expected(response)` says it asks for that
// one (the browser's own favicon request is not a request of the pages and shows in the
// console only). Options:
// - `csp`: record `securitypolicyviolation` events in every document (`cspViolations`);
// - `acceptDialogs`: accept alert/confirm dialogs, each kept in `page.dialogs` as
//   `type:message` (without it Playwright dismisses them);
// - `init`: a further function run in every document before the page's own scripts.
export async function start({
  expected = () => false, expectedConsole = () => false, viewport = { width: 1280, height: 900 }, context = {},
  csp = false, acceptDialogs = false, init = null,
} = {}) {
  const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  mkdirSync(cfg.screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: ['--no-sandbox'] });
  const errors = [];
  const watch = (page) => {
    page.dialogs = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (isCspMessage(m.text()) && !expectedConsole(m.text(), page)) errors.push(m.text());
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && !expected(r)) errors.push(r.status() + ' ' + r.request().method() + ' ' + r.url());
    });
    if (acceptDialogs) {
      page.on('dialog', async (d) => {
        page.dialogs.push(d.type() + ':' + d.message());
        await d.accept();
      });
    }
  };
  // A new context (the control plane's certificate comes from its own CA; TLS is tested
  // elsewhere) wired as above; `more` adds or overrides context options.
  const newContext = async (more = {}) => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport, ...context, ...more });
    if (csp) await ctx.addInitScript(recordCsp);
    if (init) await ctx.addInitScript(init);
    ctx.on('page', watch);
    return ctx;
  };
  const ctx = await newContext();
  const page = await ctx.newPage();
  // A full-page screenshot of `p` (the first page unless given) as `<name>.png`.
  const shot = (name, p = page) => p.screenshot({ path: `${cfg.screenshots}/${name}.png`, fullPage: true });
  // Writes `out` to the config's `out` file and closes the browser.
  const finish = async (out) => {
    writeFileSync(cfg.out, JSON.stringify(out, null, 2));
    await browser.close();
  };
  return { cfg, base: cfg.base_url, browser, ctx, page, errors, newContext, shot, finish };
}

// Signs `user` in through the console's sign-in form; the sign-in page's response.
export async function signIn(page, base, user, password) {
  const res = await page.goto(base + '/console/login');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(/\/console\/(agents|projects)$/), page.click('button[type=submit]')]);
  return res;
}
