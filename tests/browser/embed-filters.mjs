// The embed page's filter bar in real Chromium, inside a page of another origin (issue 23;
// docs/DASHBOARDS.md, "In embeds"). Started by tests/tests/e2e/embed_viewer_filters.rs with
// a JSON config: `host` (an origin listed in embed.frame_ancestors) serves a page framing
// `frame_src` (the embed page with a token that fixes the period and lets the viewer change
// the region). In the frame: a bar with the region only, the period said in words, the
// default region's rows once the page has run them; choosing South and Apply navigates the
// frame (not the host page) to the embed page with `f.region=South` and the token, and it
// shows South's rows. Writes the rows seen to `out`; screenshots under cfg.screenshots.
import { cspViolations, expect, start } from './harness.mjs';

// Every CSP message in any document (the frame's too) is an error here: nothing is refused.
const { cfg, page, errors, shot, finish } = await start({ viewport: { width: 1100, height: 900 }, csp: true });
const embed = new URL(cfg.frame_src);
const out = {};
// The page reloads itself while a tile runs ("Running…", a Refresh header), so the tiles
// are waited for through those reloads, never for a fixed time.
const RUN_TIMEOUT = 45000;

/** Query 0's table rows as text, once a row of `region` is shown in the frame. */
async function rowsOf(frame, region) {
  try {
    await frame.locator('section[data-query="0"] table.result td').filter({ hasText: new RegExp(`^${region}$`) })
      .waitFor({ timeout: RUN_TIMEOUT });
  } catch (e) {
    const shown = await frame.locator('main').innerText().catch(() => '(no page)');
    throw new Error(`${region}'s rows never showed in the frame (${frame.url()}); it shows:\n${shown}\n${e}`);
  }
  return frame.$$eval('section[data-query="0"] table.result tbody tr',
    (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
}

/** The frame's document records no CSP violation (the recording is per document). */
async function noViolations(frame, when) {
  const seen = await cspViolations(frame);
  expect(seen.length === 0, `no CSP violation inside the frame ${when} (${JSON.stringify(seen)})`);
}

// --- The host page frames the embed page at the token's values ---------------------------
const framed = page.waitForEvent('framenavigated', { predicate: (f) => f !== page.mainFrame(), timeout: 20000 });
await page.goto(cfg.host + '/#' + encodeURIComponent(cfg.frame_src));
const frame = await framed;
const hostUrl = page.url();
await frame.waitForSelector('body.embed', { timeout: 20000 });

const bar = frame.locator('form[data-filters]');
expect(await bar.count() === 1, 'the frame shows a filter bar');
expect(await bar.locator('select[name="f.region"]').count() === 1, 'with a Region select');
expect(await bar.locator('[name^="f."]').count() === 1, 'and no other field (the period is the token\'s)');
expect(await bar.locator('input[type=hidden][name=token]').inputValue() === embed.searchParams.get('token'),
  'Apply sends the token back');
expect(/Period: 2025-01-01\.\.2025-06-30/.test(await frame.locator('[data-filters-shown]').innerText()),
  'the period is said in words');
out.north = await rowsOf(frame, 'North');
expect(out.north.every((r) => r[0] === 'North'), `North's rows only: ${JSON.stringify(out.north)}`);
expect(await frame.inputValue('select[name="f.region"]') === 'North', 'the select shows the default, North');
await noViolations(frame, 'at the default region');
expect(await frame.$$eval('script', (s) => s.length) === 0, 'the embed page carries no script');
await shot('before-apply-north', page);

// --- The viewer picks South and applies it: the frame navigates, the host page stays -----
await frame.selectOption('select[name="f.region"]', 'South');
await Promise.all([
  frame.waitForURL((u) => u.searchParams.get('f.region') === 'South', { timeout: 20000 }),
  bar.locator('button[type=submit]').click(),
]);
const applied = new URL(frame.url());
out.applied_url = applied.pathname + '?' + [...applied.searchParams.keys()].join('&');
expect(applied.origin === embed.origin && applied.pathname === embed.pathname,
  `the frame stays on the embed page (${applied.origin}${applied.pathname})`);
expect(applied.searchParams.get('f.region') === 'South', 'the frame\'s address carries f.region=South');
expect(applied.searchParams.get('token') === embed.searchParams.get('token'), 'and the token');
expect(page.url() === hostUrl, 'the host page did not navigate');
out.south = await rowsOf(frame, 'South');
expect(out.south.every((r) => r[0] === 'South'), `South's rows only: ${JSON.stringify(out.south)}`);
expect(await frame.locator('section[data-query="0"] td').filter({ hasText: /^North$/ }).count() === 0,
  'no North row after Apply');
expect(await frame.inputValue('select[name="f.region"]') === 'South', 'the select shows South');
await noViolations(frame, 'after Apply');
await shot('after-apply-south', page);

expect(errors.length === 0, 'no page errors, CSP messages or failed requests: ' + errors.join('; '));
await finish(out);
