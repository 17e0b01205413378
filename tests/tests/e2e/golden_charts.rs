//! The golden charts in real Chromium (issue 23: "the golden chart set renders without
//! clipped or overlapping text (check text bounding boxes in the browser)"): the page the
//! golden test writes (agent/tests/golden/charts/index.html) measures every text of every
//! chart with Chromium's own fonts; no text may leave its chart or overlap another. Each
//! chart is rendered to a PNG under target/console-screenshots/golden-charts/ for a reviewer.

use std::path::Path;

use anyhow::{ensure, Result};
use serde_json::json;

use crate::console::{browser_dir, chromium, run_node, screenshots};

#[test]
fn in_chromium_no_golden_chart_text_leaves_its_chart_or_overlaps_another() -> Result<()> {
    browser_dir()?;
    chromium()?;
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/golden/charts");
    let svgs =
        std::fs::read_dir(&charts)?.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "svg")).count();
    ensure!(svgs > 10, "the golden charts are there: {svgs} in {}", charts.display());
    let root = tempfile::tempdir()?;
    let cfg = json!({ "index": charts.join("index.html").canonicalize()?, "expected_charts": svgs,
                      "screenshots": screenshots("golden-charts") });
    let out = run_node("golden-charts.mjs", root.path(), cfg)?;
    ensure!(out["errors"] == json!([]), "errors in the page: {out}");
    ensure!(out["problems"] == 0, "text that leaves its chart or overlaps another:\n{}", out["said"]);
    ensure!(out["figures"].as_array().map(Vec::len) == Some(svgs), "{out}");
    for id in out["figures"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
        ensure!(screenshots("golden-charts").join(format!("{id}.png")).exists(), "{id}.png");
    }
    Ok(())
}
