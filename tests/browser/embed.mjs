// The embed page framed by a page of another origin, in real Chromium (issue 23).
// Started by tests/tests/e2e/embed_page.rs with a JSON config: the host page (served by
// the test on an origin listed in embed.frame_ancestors) frames the embed page; it must
// show the token customer's number and a chart, no SQL, agent or connection names, run no
// script, and fit a narrow frame. The same host page on an origin not listed must get
// nothing drawn in its frame.
import { cspViolations, expect, start } from './harness.mjs';

// CSP violations are recorded in every document, the frame's too (`csp`). The one refusal
// asked for: the browser's, under frame-ancestors, of framing by the origin not listed.
const expectedConsole = (text, page) => /frame-ancestors/.test(text) && page.url().startsWith(cfg.unlisted_host);
const { cfg, ctx, page: first, errors, shot, finish } = await start({
  viewport: { width: 1100, height: 900 }, csp: true, expectedConsole,
});
const out = {};

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
  const page = first;
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
  const violations = await cspViolations(frame);
  expect(violations.length === 0, `no CSP violation inside the frame (${JSON.stringify(violations)})`);
  await shot('embed-wide', page);
  // A narrow frame: the tiles reflow, nothing overflows sideways.
  await page.setViewportSize({ width: 420, height: 900 });
  const overflow = await frame.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow <= 1, `a 420 px frame has no sideways scroll (${overflow} px over)`);
  await shot('embed-narrow', page);
  expect(errors.length === 0, 'no script error on the host page: ' + errors.join('; '));
  out.allowed = { shown: true };
  await page.close();
}

// --- Not listed: the same host page on another origin gets nothing ---------------------
{
  const page = await ctx.newPage();
  const frame = await open(page, cfg.unlisted_host);
  expect(frame === null, 'an origin not listed cannot frame the embed page');
  await shot('embed-refused', page);
  out.unlisted = { shown: false };
  await page.close();
}

expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
await finish(out);
