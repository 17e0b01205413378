// The dashboard benchmark's browser part (tests/src/bin/outpost-bench-dashboard.rs): signs
// in, then opens the project page `opens` times in fresh tabs and reads the browser's own
// first-contentful-paint and load timings; the peer is the sign-in page, opened the same
// way in the same run. Writes {dashboard: {fcp, load}, peer: {fcp, load}} in ms.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await chromium.launch({ executablePath: cfg.chromium, args: ['--no-sandbox'] });
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });

const signIn = await ctx.newPage();
await signIn.goto(cfg.base_url + '/console/login');
await signIn.fill('input[name=user]', 'admin');
await signIn.fill('input[name=password]', cfg.password);
await Promise.all([signIn.waitForURL(/\/console\/(agents|projects)$/), signIn.click('button[type=submit]')]);
await signIn.close();

async function timings(url, ready) {
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(ready);
  // The paint entry can be recorded after the load event: wait for it (buffered), with the
  // page's other figures read once it is there.
  const t = await page.evaluate(async () => {
    const fcp = await new Promise((resolve, reject) => {
      const seen = (list) => list.getEntriesByName('first-contentful-paint')[0];
      const now = seen(performance);
      if (now) return resolve(now.startTime);
      const obs = new PerformanceObserver((list) => {
        const e = seen(list);
        if (e) { obs.disconnect(); resolve(e.startTime); }
      });
      obs.observe({ type: 'paint', buffered: true });
      setTimeout(() => reject(new Error('no first-contentful-paint within 10 s')), 10000);
    });
    const nav = performance.getEntriesByType('navigation')[0];
    const shown = document.querySelectorAll('section.query [data-result] :is(figure.chart, table, .scalar)').length;
    return { fcp, load: nav ? nav.loadEventEnd : null, shown };
  });
  await page.close();
  return t;
}

const out = { dashboard: { fcp: [], load: [] }, peer: { fcp: [], load: [] } };
// One unmeasured open of each warms the connection and the browser's caches alike.
await timings(cfg.base_url + '/console/projects/' + cfg.project, 'section.query');
await timings(cfg.base_url + '/console/login', 'main');
for (let i = 0; i < cfg.opens; i++) {
  const d = await timings(cfg.base_url + '/console/projects/' + cfg.project, 'section.query');
  if (d.shown !== 12) throw new Error(`the dashboard showed ${d.shown} of 12 results`);
  out.dashboard.fcp.push(d.fcp);
  out.dashboard.load.push(d.load);
  const p = await timings(cfg.base_url + '/console/login', 'main');
  out.peer.fcp.push(p.fcp);
  out.peer.load.push(p.load);
}
await browser.close();
writeFileSync(cfg.out, JSON.stringify(out));
