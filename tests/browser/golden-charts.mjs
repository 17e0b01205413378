// The golden chart set (agent/tests/golden/charts/index.html: one chart per kind and per
// edge case, rendered by the agent's renderer and committed) in real Chromium: the page's
// own check measures every text's box with the browser's fonts and lists any that leaves
// its chart or overlaps another; each chart is also rendered to a PNG for a reviewer
// (screenshots dir, kept as CI artefacts). Started by tests/tests/e2e/golden_charts.rs.
import { expect, start } from './harness.mjs';

const { cfg, page, errors, finish } = await start();
await page.goto('file://' + cfg.index);
await page.waitForSelector('#text-check[data-problems]');
const problems = Number(await page.getAttribute('#text-check', 'data-problems'));
const said = await page.textContent('#text-check');
const figures = await page.$$eval('figure', (fs) => fs.map((f) => f.id));
expect(figures.length === cfg.expected_charts, `the page shows all ${cfg.expected_charts} golden charts`);
for (const id of figures) {
  await page.locator(`figure#${id} svg`).screenshot({ path: `${cfg.screenshots}/${id}.png` });
}
expect(true, `${figures.length} charts rendered to PNG`);
await finish({ problems, said, figures, errors });
