// The embed page framed by a page of another origin, in real Chromium (issue 23).
// Started by tests/tests/e2e/embed_page.rs with a JSON config: the host page (served by
// the test on an origin listed in embed.frame_ancestors) frames the embed page; it must
// show the token customer's number and a chart, no SQL, agent or connection names, run no
// script, and fit a narrow frame. The same host page on an origin not listed must get
// nothing drawn in its frame.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(cfg.screenshots, { recursive: true });
const out = {};

function expect(cond, what) {
  if (!cond) throw new Error('expected: ' + what);
  console.log('ok - ' + what);
}

const browser = await chromium.launch({ executablePath: cfg.chromium, args: ['--no-sandbox'] });
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 } });
await ctx.addInitScript(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
  });
});

/** Opens the host page at `host` framing the embed page; returns the frame once its
 *  document is the embed page's, or null when the browser refused to show it. */
async function open(page, host) {
  const framed = page.waitForEvent('framenavigated', {
    predicate: (f) => f !== page.mainFrame(),
    timeout: 20000,
  });
  await page.goto(host + '/#' + encodeURIComponent(cfg.frame_src));
  const frame = await framed;
  // A frame refused by frame-ancestors ends on Chromium's error page, not on ours.
  try {
    await frame.waitForSelector('body.embed .tiles', { timeout: 10000 });
    return frame;
  } catch {
    return null;
  }
}

// --- Allowed: the host origin is in embed.frame_ancestors --------------------------------
{
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const frame = await open(page, cfg.allowed_host);
  expect(frame !== null, 'a listed origin frames the embed page');
  // The customer's tile (query 1 takes the customer; the chart of query 0 is everyone's).
  const own = await frame.textContent('section[data-query="1"]');
  expect(own.includes(cfg.north), `the frame shows North's number ${cfg.north}`);
  expect(!own.includes(cfg.south), `and not South's ${cfg.south}`);
  const html = await frame.content();
  for (const word of cfg.forbidden) {
    expect(!html.includes(word), `the frame shows no ${JSON.stringify(word)}`);
  }
  expect(await frame.$$eval('figure.chart svg', (s) => s.length) === 1, 'the chart tile is drawn');
  expect(await frame.$$eval('script', (s) => s.length) === 0, 'the embed page carries no script');
  expect(await frame.evaluate(() => typeof window.__csp === 'object' && window.__csp.length === 0),
    'no CSP violation inside the frame');
  await page.screenshot({ path: cfg.screenshots + '/embed-wide.png', fullPage: true });
  // A narrow frame: the tiles reflow, nothing overflows sideways.
  await page.setViewportSize({ width: 420, height: 900 });
  const overflow = await frame.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow <= 1, `a 420 px frame has no sideways scroll (${overflow} px over)`);
  await page.screenshot({ path: cfg.screenshots + '/embed-narrow.png', fullPage: true });
  expect(errors.length === 0, 'no script error on the host page: ' + errors.join('; '));
  out.allowed = { shown: true };
  await page.close();
}

// --- Not listed: the same host page on another origin gets nothing ---------------------
{
  const page = await ctx.newPage();
  const frame = await open(page, cfg.unlisted_host);
  expect(frame === null, 'an origin not listed cannot frame the embed page');
  await page.screenshot({ path: cfg.screenshots + '/embed-refused.png', fullPage: true });
  out.unlisted = { shown: false };
  await page.close();
}

await browser.close();
writeFileSync(cfg.out, JSON.stringify(out));
