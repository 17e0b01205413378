// What the console walk-throughs in real Chromium share: the JSON config their e2e test
// passes (argv[2]), a page whose script errors, CSP refusals and failed requests are
// collected in `errors`, `expect`, signing in, and writing what was seen to `cfg.out`.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

export function expect(cond, what) {
  if (!cond) throw new Error('expected: ' + what);
  console.log('ok - ' + what);
}

// Starts Chromium on a 1280×900 page. `expected(response)` says whether a 4xx/5xx answer
// is one the walk-through asks for (not counted in `errors`). Every other request of the
// pages answers (the browser's own favicon request is not one of them and shows in the
// console only).
export async function start({ expected = () => false } = {}) {
  const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  mkdirSync(cfg.screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: ['--no-sandbox'] });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) errors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400 && !expected(r)) errors.push(r.status() + ' ' + r.url()); });
  // Writes `out` to the config's `out` file and closes the browser.
  const finish = async (out) => {
    writeFileSync(cfg.out, JSON.stringify(out, null, 2));
    await browser.close();
  };
  return { cfg, base: cfg.base_url, browser, ctx, page, errors, finish };
}

// Signs `user` in through the console's sign-in form.
export async function signIn(page, base, user, password) {
  await page.goto(base + '/console/login');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(/\/console\/(agents|projects)$/), page.click('button[type=submit]')]);
}
