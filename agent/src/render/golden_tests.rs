//! Golden charts: one SVG per kind and per edge case of issue 23, kept in
//! `agent/tests/golden/charts/` so that a change to a chart shows up as a diff a reviewer
//! can open (`index.html` there shows them all and measures their text in the browser:
//! `#text-check[data-problems]` is 0 when no text is clipped or overlaps). The test renders each case and compares
//! the bytes; `OUTPOST_BLESS=1 cargo test -p outpost-agent --lib render::golden` rewrites
//! the files after an intended change.
//!
//! Each chart is also checked for what a reader would see: every horizontal text inside
//! the 800×450 view box, and no two of them overlapping (by estimated text widths).

use std::path::PathBuf;

use chrono::{NaiveDate, TimeZone as _, Utc};
use outpost_protocol::RenderSpec;

use super::measure::text_width;
use super::test_util::{rs, text};
use super::*;

/// One golden case: its file name, the render spec (JSON as a job carries it) and rows.
struct Case {
    name: &'static str,
    spec: &'static str,
    data: ResultSet,
}

fn case(name: &'static str, spec: &'static str, columns: &[&str], rows: Vec<Vec<Value>>) -> Case {
    Case { name, spec, data: rs(columns, rows) }
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.to_owned())
}

fn day(d: u32) -> Value {
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    Value::Date(first + chrono::Days::new(u64::from(d)))
}

/// A timestamp `secs` seconds after 2024-03-01 22:00:00 UTC.
fn at(secs: i64) -> Value {
    let start = Utc.with_ymd_and_hms(2024, 3, 1, 22, 0, 0).single().unwrap_or_default();
    Value::TimestampTz(start + chrono::Duration::seconds(secs))
}

/// A time series over `span` seconds, 40 points, a slow wave.
fn series_over(span: i64) -> Vec<Vec<Value>> {
    (0..=40).map(|i| vec![at(span * i / 40), int(1000 + (i * 37) % 23 * 10)]).collect()
}

fn regions() -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for (m, month) in ["2024-01", "2024-02", "2024-03", "2024-04"].iter().enumerate() {
        for (r, region) in ["north", "south", "east", "west"].iter().enumerate() {
            let m = m as i64;
            let r = r as i64;
            rows.push(vec![text(month), text(region), int(1_000_000 + m * 250_000 + r * 2_345_678)]);
        }
    }
    rows
}

fn cases() -> Vec<Case> {
    let long = "A category name far too long to fit under its bar";
    vec![
        case(
            "bar",
            r#"{"kind":"bar","x":"region","y":["revenue"],"title":"Revenue by region"}"#,
            &["region", "revenue"],
            vec![
                vec![text("north"), dec("8690173.57")],
                vec![text("south"), dec("11000000")],
                vec![text("east"), dec("4123456.10")],
                vec![text("west"), dec("950000")],
                vec![text("central"), dec("1234")],
            ],
        ),
        case(
            "bar-stacked-series",
            r#"{"kind":"bar","x":"month","y":["revenue"],"series":"region","stacked":true,"format":"compact","unit":"EUR"}"#,
            &["month", "region", "revenue"],
            regions(),
        ),
        case(
            "bar-negatives",
            r#"{"kind":"bar","x":"quarter","y":["profit","loss"]}"#,
            &["quarter", "profit", "loss"],
            vec![
                vec![text("Q1"), int(120), int(-40)],
                vec![text("Q2"), int(-35), int(-80)],
                vec![text("Q3"), int(60), Value::Null],
                vec![text("Q4"), int(113), int(-5)],
            ],
        ),
        case(
            "bar-long-labels",
            r#"{"kind":"bar","x":"name","y":["n"]}"#,
            &["name", "n"],
            (0..40).map(|i| vec![text(&format!("{long} {i}")), int(i * 7 % 31)]).collect(),
        ),
        case("bar-empty", r#"{"kind":"bar","x":"name","y":["n"]}"#, &["name", "n"], Vec::new()),
        case(
            "line-one-row",
            r#"{"kind":"line","x":"day","y":["orders"]}"#,
            &["day", "orders"],
            vec![vec![day(59), int(1234)]],
        ),
        case(
            "line-nulls",
            r#"{"kind":"line","x":"day","y":["orders","returns"],"title":"Orders with gaps"}"#,
            &["day", "orders", "returns"],
            (0..30)
                .map(|d| {
                    let orders = if (10..13).contains(&d) { Value::Null } else { int(100 + d * 3 % 17) };
                    let returns = if d % 7 == 3 { Value::Null } else { int(10 + d % 5) };
                    vec![day(d as u32), orders, returns]
                })
                .collect(),
        ),
        case(
            "line-series",
            r#"{"kind":"line","x":"day","y":["revenue"],"series":"region","unit":"EUR"}"#,
            &["day", "region", "revenue"],
            (0..20)
                .flat_map(|d| {
                    ["west", "north", "east"].iter().enumerate().map(move |(r, region)| {
                        vec![day(d), text(region), int(43_725_380 + (d as i64) * 100_000 * (r as i64 + 1))]
                    })
                })
                .collect(),
        ),
        case(
            "line-dual-axis",
            r#"{"kind":"line","x":"day","y":["revenue"],"y2":["orders"],"format":"compact","title":"Revenue and orders"}"#,
            &["day", "revenue", "orders"],
            (0..60u32)
                .map(|d| {
                    let d64 = i64::from(d);
                    vec![day(d), int(2_000_000 + d64 * 45_000 + (d64 * 7919) % 300_000), int(120 + (d64 * 37) % 90)]
                })
                .collect(),
        ),
        case(
            "line-percent",
            r#"{"kind":"line","x":"day","y":["share"],"format":"percent"}"#,
            &["day", "share"],
            (0..12).map(|d| vec![day(d * 30), Value::Float(f64::from(d) * 0.021 + 0.05)]).collect(),
        ),
        case("line-empty-dates", r#"{"kind":"line","x":"day","y":["orders"]}"#, &["day", "orders"], Vec::new()),
        case(
            "area-negatives",
            r#"{"kind":"area","x":"t","y":["balance"]}"#,
            &["t", "balance"],
            (0..50).map(|i| vec![int(i), int((i * 37 % 50) - 25)]).collect(),
        ),
        case(
            "scatter",
            r#"{"kind":"scatter","x":"price","y":["units","returns"]}"#,
            &["price", "units", "returns"],
            (0..60i32)
                .map(|i| {
                    vec![Value::Float(f64::from(i) * 1.5), int(i64::from(i * 13 % 47)), int(i64::from(i * 7 % 11))]
                })
                .collect(),
        ),
        case(
            "pie",
            r#"{"kind":"pie","label":"region","value":"orders","title":"Orders by region","format":"currency","unit":"EUR"}"#,
            &["region", "orders"],
            vec![
                vec![text("north"), dec("43725380")],
                vec![text("south"), dec("12000000.5")],
                vec![text("east"), dec("8690173.57")],
                vec![text("A region whose name is long enough to be cut in the legend"), dec("1000000")],
            ],
        ),
        case(
            "pie-10000-rows",
            r#"{"kind":"pie","label":"customer","value":"orders"}"#,
            &["customer", "orders"],
            (0..10_000).map(|i| vec![text(&format!("customer {i}")), int(1 + (i * 7919) % 10_000)]).collect(),
        ),
        case("time-seconds", r#"{"kind":"line","x":"at","y":["v"]}"#, &["at", "v"], series_over(20)),
        case("time-hours", r#"{"kind":"line","x":"at","y":["v"]}"#, &["at", "v"], series_over(6 * 3600)),
        case("time-days", r#"{"kind":"line","x":"at","y":["v"]}"#, &["at", "v"], series_over(3 * 86_400)),
        case("time-months", r#"{"kind":"line","x":"at","y":["v"]}"#, &["at", "v"], series_over(200 * 86_400)),
        case("time-years", r#"{"kind":"line","x":"at","y":["v"]}"#, &["at", "v"], series_over(12 * 365 * 86_400)),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/charts")
}

fn bless() -> bool {
    std::env::var_os("OUTPOST_BLESS").is_some_and(|v| v == "1")
}

fn render_case(c: &Case) -> String {
    let spec: RenderSpec = serde_json::from_str(c.spec).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    spec.check().unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let r = render(&spec, &c.data, 100_000).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    String::from_utf8(r.body).expect("UTF-8")
}

/// A page that shows every golden chart inline, for a reviewer's browser, and measures
/// their text there: on load it lists every text that leaves its chart's view box or
/// overlaps another (rotated x labels only for the view box) in `#text-check`, whose
/// `data-problems` attribute a browser test can read (0 when all is well).
fn index(cases: &[Case], svgs: &[String]) -> String {
    let mut o = String::from(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Outpost golden charts</title>\n\
         <style>body{font-family:sans-serif}figure{display:inline-block;margin:8px}\
         figure>div{border:1px solid #ccc;width:800px;height:450px}</style>\n\
         <pre id=\"text-check\">checking...</pre>\n",
    );
    for (c, svg) in cases.iter().zip(svgs) {
        o.push_str(&format!(
            "<figure id=\"{0}\"><div>{svg}</div><figcaption><a href=\"{0}.svg\">{0}</a>: <code>{1}</code></figcaption></figure>\n",
            c.name,
            Esc(c.spec)
        ));
    }
    o.push_str(CHECK_SCRIPT);
    o
}

/// Measures the rendered text of every chart on the page (see [`index`]).
const CHECK_SCRIPT: &str = r#"<script>
const problems = [];
for (const fig of document.querySelectorAll("figure")) {
  const svg = fig.querySelector("svg"), root = svg.getBoundingClientRect();
  const box = (t) => { const r = t.getBoundingClientRect();
    return { t: t.textContent, l: r.left - root.left, r: r.right - root.left, top: r.top - root.top, b: r.bottom - root.top }; };
  const all = [...svg.querySelectorAll("text")];
  for (const b of all.map(box))
    if (b.l < -0.5 || b.r > 800.5 || b.top < -0.5 || b.b > 450.5) problems.push(`${fig.id}: ${JSON.stringify(b.t)} leaves the chart`);
  const flat = all.filter((t) => !(t.hasAttribute("transform") && t.getAttribute("class") === "x-label")).map(box);
  for (let i = 0; i < flat.length; i++)
    for (let j = i + 1; j < flat.length; j++) {
      const a = flat[i], c = flat[j];
      if (a.l < c.r - 1 && c.l < a.r - 1 && a.top < c.b - 3 && c.top < a.b - 3)
        problems.push(`${fig.id}: ${JSON.stringify(a.t)} overlaps ${JSON.stringify(c.t)}`);
    }
}
const out = document.getElementById("text-check");
out.dataset.problems = problems.length;
out.textContent = problems.length ? problems.join("\n") : "No text leaves its chart or overlaps other text.";
</script>
"#;

#[test]
fn golden_charts_are_unchanged() {
    let cases = cases();
    let svgs: Vec<String> = cases.iter().map(render_case).collect();
    let mut files: Vec<(String, String)> =
        cases.iter().zip(&svgs).map(|(c, svg)| (format!("{}.svg", c.name), svg.clone())).collect();
    files.push(("index.html".to_owned(), index(&cases, &svgs)));
    let mut stale = Vec::new();
    for (name, body) in &files {
        let path = dir().join(name);
        if bless() {
            std::fs::create_dir_all(dir()).expect("golden dir");
            std::fs::write(&path, body).expect("write golden file");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(body.as_str()) {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "golden charts differ: {stale:?} in agent/tests/golden/charts/; if the change is intended, \
         run OUTPOST_BLESS=1 cargo test -p outpost-agent --lib render::golden and review the diff"
    );
}

/// The box of an unrotated text element: (left, top, right, bottom), by estimated width.
fn text_box(n: &roxmltree::Node<'_, '_>) -> Option<(f64, f64, f64, f64)> {
    if n.attribute("transform").is_some() {
        return None;
    }
    let size: f64 = n.attribute("font-size")?.parse().ok()?;
    let (x, y): (f64, f64) = (n.attribute("x")?.parse().ok()?, n.attribute("y")?.parse().ok()?);
    let label: String = n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect();
    let w = text_width(&label, size);
    let (l, r) = match n.attribute("text-anchor") {
        Some("end") => (x - w, x),
        Some("middle") => (x - w / 2.0, x + w / 2.0),
        _ => (x, x + w),
    };
    Some((l, y - size * 0.75, r, y + size * 0.22))
}

/// Issue 23: the golden set renders without clipped or overlapping text.
#[test]
fn golden_charts_keep_text_inside_and_apart() {
    for c in cases() {
        let svg = render_case(&c);
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let boxes: Vec<(String, (f64, f64, f64, f64))> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| Some((n.text().unwrap_or_default().to_owned(), text_box(&n)?)))
            .collect();
        for (t, (l, top, r, b)) in &boxes {
            assert!(
                *l >= 0.0 && *r <= 800.0 && *top >= 0.0 && *b <= 450.0,
                "{}: {t:?} at {l}..{r}, {top}..{b}",
                c.name
            );
        }
        for (i, (t1, a)) in boxes.iter().enumerate() {
            for (t2, b) in &boxes[i + 1..] {
                let overlap = a.0 < b.2 - 0.5 && b.0 < a.2 - 0.5 && a.1 < b.3 - 0.5 && b.1 < a.3 - 0.5;
                assert!(!overlap, "{}: {t1:?} {a:?} overlaps {t2:?} {b:?}", c.name);
            }
        }
    }
}

/// Golden files are the same bytes on every run (deterministic output).
#[test]
fn golden_charts_render_the_same_bytes_twice() {
    for c in cases() {
        assert_eq!(render_case(&c), render_case(&c), "{}", c.name);
    }
}
