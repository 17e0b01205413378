//! Tests of the render kinds beyond tables and grouped bars: each output is parsed (SVG as
//! XML, JSON as JSON) and its content compared with the data.

use outpost_protocol::{BarSpec, PieSpec, RenderSpec, ScalarSpec, XySpec};

use super::*;

fn rs(columns: &[&str], rows: Vec<Vec<Value>>) -> ResultSet {
    ResultSet { columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows, truncated: false, provenance: None }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn xy(x: &str, y: &[&str]) -> XySpec {
    XySpec {
        x: x.into(),
        y: y.iter().map(|c| (*c).to_owned()).collect(),
        y2: Vec::new(),
        title: None,
        max_points: None,
        series: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    }
}

fn svg_of(r: &Rendered) -> roxmltree::Document<'_> {
    assert_eq!(r.content_type, "image/svg+xml");
    roxmltree::Document::parse(std::str::from_utf8(&r.body).expect("UTF-8")).expect("well-formed SVG")
}

/// The plot's domain and pixel box, from the `<g class="plot">` element.
struct Plot {
    x: (f64, f64),
    y: (f64, f64),
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Plot {
    fn of(doc: &roxmltree::Document<'_>) -> Self {
        let g = doc.descendants().find(|n| n.attribute("class") == Some("plot")).expect("plot group");
        let a = |k: &str| -> f64 { g.attribute(k).expect("attribute").parse().expect("number") };
        Self {
            x: (a("data-x-min"), a("data-x-max")),
            y: (a("data-y-min"), a("data-y-max")),
            left: a("data-left"),
            right: a("data-right"),
            top: a("data-top"),
            bottom: a("data-bottom"),
        }
    }

    /// Pixel → data.
    fn data(&self, px: f64, py: f64) -> (f64, f64) {
        let x = self.x.0 + (px - self.left) / (self.right - self.left) * (self.x.1 - self.x.0);
        let y = self.y.1 - (py - self.top) / (self.bottom - self.top) * (self.y.1 - self.y.0);
        (x, y)
    }
}

/// The points of a `<path class="series">` `d` attribute ("M x y L x y ...").
fn path_points(d: &str) -> Vec<(f64, f64)> {
    d.split(['M', 'L'])
        .filter(|s| !s.trim().is_empty())
        .map(|p| {
            let mut it = p.split_whitespace().map(|v| v.parse::<f64>().expect("coordinate"));
            (it.next().expect("x"), it.next().expect("y"))
        })
        .collect()
}

fn series_paths<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<(String, Vec<(f64, f64)>)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("path") && n.attribute("class") == Some("series"))
        .map(|n| {
            (n.attribute("data-series").unwrap_or_default().to_owned(), path_points(n.attribute("d").unwrap_or("")))
        })
        .collect()
}

fn texts(doc: &roxmltree::Document<'_>, class: &str) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .filter_map(|n| n.text())
        .map(str::to_owned)
        .collect()
}

#[test]
fn line_chart_points_map_back_to_the_data() {
    let data = rs(
        &["t", "a", "b"],
        (0..20).map(|i| vec![Value::Int(i * 10), Value::Float(50.0 + i as f64 * 1.5), Value::Int(100 - i)]).collect(),
    );
    let r = render(&RenderSpec::Line(xy("t", &["a", "b"])), &data, 100).expect("renders");
    assert_eq!((r.rows_rendered, r.points), (20, 40));
    assert!(r.decisions.is_empty());
    let doc = svg_of(&r);
    let plot = Plot::of(&doc);
    let paths = series_paths(&doc);
    assert_eq!(paths.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    for (i, &(px, py)) in paths[0].1.iter().enumerate() {
        let (x, y) = plot.data(px, py);
        assert!((x - i as f64 * 10.0).abs() < 0.5, "x {x} for row {i}");
        assert!((y - (50.0 + i as f64 * 1.5)).abs() < 0.1, "y {y} for row {i}");
    }
    for (i, &(px, py)) in paths[1].1.iter().enumerate() {
        let (_, y) = plot.data(px, py);
        assert!((y - (100.0 - i as f64)).abs() < 0.2, "y {y} for row {i}");
    }
    assert_eq!(texts(&doc, "legend"), ["a", "b"]);
    // A line's axis fits the data rather than starting at zero.
    assert!(plot.y.0 >= 40.0 && plot.y.0 <= 50.0, "{:?}", plot.y);
}

#[test]
fn a_million_row_line_is_downsampled_and_keeps_its_spike() {
    let n = 1_000_000i64;
    let data = rs(
        &["i", "v"],
        (0..n).map(|i| vec![Value::Int(i), Value::Int(if i == 654_321 { 5000 } else { i % 100 })]).collect(),
    );
    let r = render_with(&RenderSpec::Line(xy("i", &["v"])), &data, 10, 2000).expect("renders");
    assert!(r.points <= 2000 && r.points > 500, "{}", r.points);
    assert!(r.body.len() < 64 * 1024, "{} bytes", r.body.len());
    assert_eq!(r.decisions.len(), 1);
    assert_eq!(r.decisions[0].action, outpost_protocol::EgressAction::Downsampled);
    assert!(r.decisions[0].detail.starts_with("1000000 points drawn as "), "{}", r.decisions[0].detail);
    let doc = svg_of(&r);
    let plot = Plot::of(&doc);
    let top = series_paths(&doc)[0].1.iter().map(|&(px, py)| plot.data(px, py).1).fold(f64::MIN, f64::max);
    assert!((top - 5000.0).abs() < 30.0, "the spike survives: {top}");
}

#[test]
fn time_axes_carry_timestamps_dates_and_zones() {
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2024, 3, d).expect("date");
    let data = rs(&["day", "n"], (1..=5).map(|d| vec![Value::Date(day(d)), Value::Int(i64::from(d))]).collect());
    let r = render(&RenderSpec::Line(xy("day", &["n"])), &data, 100).expect("renders");
    let doc = svg_of(&r);
    assert_eq!(texts(&doc, "x-label"), ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]);
    let plot = Plot::of(&doc);
    let first = series_paths(&doc)[0].1[0];
    let (x, _) = plot.data(first.0, first.1);
    let expected = day(1).and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp() as f64;
    assert!((x - expected).abs() < 600.0, "{x} vs {expected}");

    let at = |h: u32| chrono::Utc.with_ymd_and_hms(2024, 3, 1, h, 0, 0).single().expect("instant");
    let data = rs(&["at", "n"], (0..4).map(|h| vec![Value::TimestampTz(at(h)), Value::Int(1)]).collect());
    let r = render(&RenderSpec::Area(xy("at", &["n"])), &data, 100).expect("renders");
    let doc = svg_of(&r);
    assert_eq!(texts(&doc, "axis-title")[0], "at (UTC)");
    assert_eq!(texts(&doc, "x-label"), ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00"]);
    // An area is filled down to zero: its y axis includes 0.
    assert_eq!(Plot::of(&doc).y.0, 0.0);
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("area")).count(), 1);
}

use chrono::TimeZone as _;

#[test]
fn x_axes_of_the_wrong_type_are_refused_naming_the_column() {
    let data = rs(&["k", "v"], vec![vec![text("north"), Value::Int(1)]]);
    let err = render(&RenderSpec::Line(xy("k", &["v"])), &data, 100).expect_err("refused");
    assert_eq!(err, RenderError::NotAxis { column: "k".into(), row: 0, found: "text" });
    assert!(err.to_string().contains("\"k\" holds text at row index 0"), "{err}");
    // Numbers then dates in one column: the second kind is refused.
    let data = rs(
        &["k", "v"],
        vec![
            vec![Value::Int(1), Value::Int(1)],
            vec![Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")), Value::Int(1)],
        ],
    );
    let err = render(&RenderSpec::Scatter(xy("k", &["v"])), &data, 100).expect_err("refused");
    assert_eq!(err, RenderError::NotAxis { column: "k".into(), row: 1, found: "date" });
    let data = rs(&["k", "v"], vec![vec![Value::Int(1), text("x")]]);
    assert_eq!(
        render(&RenderSpec::Line(xy("k", &["v"])), &data, 100),
        Err(RenderError::NotNumeric { column: "v".into(), row: 0 })
    );
    assert_eq!(
        render(&RenderSpec::Line(xy("k", &["w"])), &data, 100).map(|_| ()),
        Err(RenderError::UnknownColumn { column: "w".into(), available: vec!["k".into(), "v".into()] })
    );
}

#[test]
fn scatter_points_are_circles_at_the_data() {
    let data = rs(&["x", "y"], vec![vec![Value::Float(1.0), Value::Float(2.0)], vec![Value::Int(3), Value::Int(-4)]]);
    let r = render(&RenderSpec::Scatter(xy("x", &["y"])), &data, 100).expect("renders");
    let doc = svg_of(&r);
    let plot = Plot::of(&doc);
    let points: Vec<(f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .map(|n| {
            let a = |k| n.attribute(k).and_then(|v: &str| v.parse::<f64>().ok()).expect("coordinate");
            plot.data(a("cx"), a("cy"))
        })
        .collect();
    assert_eq!(points.len(), 2);
    for ((x, y), (ex, ey)) in points.iter().zip([(1.0, 2.0), (3.0, -4.0)]) {
        assert!((x - ex).abs() < 0.02 && (y - ey).abs() < 0.05, "({x}, {y}) vs ({ex}, {ey})");
    }
}

#[test]
fn empty_and_null_series_render_without_points() {
    let data = rs(&["x", "y"], vec![vec![Value::Null, Value::Int(1)], vec![Value::Int(1), Value::Null]]);
    let r = render(&RenderSpec::Line(xy("x", &["y"])), &data, 100).expect("renders");
    assert_eq!(r.points, 0);
    let doc = svg_of(&r);
    assert_eq!(texts(&doc, "empty"), ["No data"]);
}

#[test]
fn stacked_bars_sit_on_each_other() {
    let data = rs(
        &["k", "a", "b"],
        vec![vec![text("x"), Value::Int(10), Value::Int(30)], vec![text("y"), Value::Int(20), Value::Int(-10)]],
    );
    let spec = RenderSpec::Bar(BarSpec {
        x: "k".into(),
        y: vec!["a".into(), "b".into()],
        title: None,
        stacked: true,
        series: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    let r = render(&spec, &data, 100).expect("renders");
    let doc = svg_of(&r);
    let bars: Vec<(String, f64, f64, f64)> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .map(|n| {
            let a = |k| n.attribute(k).and_then(|v: &str| v.parse::<f64>().ok()).expect("number");
            (n.attribute("data-series").unwrap_or_default().to_owned(), a("x"), a("y"), a("height"))
        })
        .collect();
    assert_eq!(bars.len(), 4);
    // Group x: a and b share one x and b starts where a ends.
    assert_eq!(bars[0].1, bars[1].1);
    assert!((bars[1].2 + bars[1].3 - bars[0].2).abs() < 0.02, "{bars:?}");
    assert!((bars[1].3 - 3.0 * bars[0].3).abs() < 0.05);
    // The axis reaches the stack's total (40), not the largest single value (30).
    let top: f64 = texts(&doc, "tick").last().and_then(|t| t.parse().ok()).expect("tick");
    assert!(top >= 40.0, "{top}");
    // A negative value hangs below zero, from the baseline.
    let zero = bars[2].2 + bars[2].3;
    assert!((bars[3].2 - zero).abs() < 0.02, "{bars:?}");
}

#[test]
fn pie_slices_have_the_data_shares() {
    let data = rs(
        &["region", "n"],
        vec![
            vec![text("north"), Value::Int(50)],
            vec![text("south"), Value::Int(30)],
            vec![text("east"), Value::Null],
            vec![text("west"), Value::Int(20)],
        ],
    );
    let spec = RenderSpec::Pie(PieSpec {
        label: "region".into(),
        value: "n".into(),
        title: Some("Orders".into()),
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    let r = render(&spec, &data, 100).expect("renders");
    let doc = svg_of(&r);
    let slices: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("slice"))
        .map(|n| {
            (
                n.attribute("data-label").unwrap_or_default().to_owned(),
                n.attribute("data-share").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        slices,
        [("north".into(), "0.5000".into()), ("south".into(), "0.3000".into()), ("west".into(), "0.2000".into())]
    );
    assert_eq!(texts(&doc, "legend"), ["north (50.0%)", "south (30.0%)", "west (20.0%)"]);
    // The first slice's arc ends at half a turn: straight down from the centre.
    let d =
        doc.descendants().find(|n| n.attribute("class") == Some("slice")).and_then(|n| n.attribute("d")).expect("path");
    assert!(d.ends_with(&format!("{} {} Z", Px(290.0), Px(pie_cy() + 150.0))), "{d}");

    let neg = rs(&["region", "n"], vec![vec![text("a"), Value::Int(-1)]]);
    assert_eq!(render(&spec, &neg, 100), Err(RenderError::Negative { column: "n".into(), row: 0 }));
}

fn pie_cy() -> f64 {
    MARGIN_TOP + PLOT_HEIGHT / 2.0 + 30.0
}

#[test]
fn pie_sums_the_smallest_rows_as_other() {
    let data = rs(&["k", "n"], (1..=15).map(|i| vec![text(&format!("r{i}")), Value::Int(i)]).collect());
    let spec = RenderSpec::Pie(PieSpec {
        label: "k".into(),
        value: "n".into(),
        title: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    let r = render(&spec, &data, 100).expect("renders");
    let doc = svg_of(&r);
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("slice"))
        .filter_map(|n| n.attribute("data-label"))
        .collect();
    assert_eq!(labels.len(), MAX_SLICES);
    assert_eq!(labels[..MAX_SLICES - 1], ["r7", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]);
    assert_eq!(labels[MAX_SLICES - 1], "Other (6 rows)");
    let other = doc.descendants().find(|n| n.attribute("data-label") == Some("Other (6 rows)")).expect("other");
    assert_eq!(other.attribute("data-value"), Some("21"));
    assert_eq!(texts(&doc, "note"), ["The 6 smallest rows are summed as Other."]);
}

#[test]
fn one_slice_is_a_full_circle() {
    let data = rs(&["k", "n"], vec![vec![text("all"), Value::Decimal("12.50".into())]]);
    let spec = RenderSpec::Pie(PieSpec {
        label: "k".into(),
        value: "n".into(),
        title: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    let doc_r = render(&spec, &data, 100).expect("renders");
    let doc = svg_of(&doc_r);
    let c = doc.descendants().find(|n| n.has_tag_name("circle")).expect("circle");
    assert_eq!((c.attribute("data-value"), c.attribute("data-share")), (Some("12.50"), Some("1.0000")));
}

#[test]
fn scalar_is_exact_json_with_a_formatted_value() {
    let data = rs(
        &["total", "n"],
        vec![vec![Value::Decimal("1234567.891".into()), Value::Int(3)], vec![Value::Null, Value::Null]],
    );
    let spec = RenderSpec::Scalar(ScalarSpec {
        column: "total".into(),
        label: Some("Revenue".into()),
        decimals: Some(2),
        unit: Some(" EUR".into()),
        format: Default::default(),
    });
    let r = render(&spec, &data, 100).expect("renders");
    assert_eq!(r.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"label": "Revenue", "column": "total", "type": "decimal", "value": "1234567.891",
            "formatted": "1,234,567.89 EUR", "unit": " EUR", "more_rows": true})
    );
    assert_eq!((r.rows_rendered, r.points, r.truncated), (1, 1, true));

    let spec = RenderSpec::Scalar(ScalarSpec {
        column: "n".into(),
        label: None,
        decimals: None,
        unit: None,
        format: Default::default(),
    });
    let v: serde_json::Value =
        serde_json::from_slice(&render(&spec, &rs(&["n"], vec![]), 100).expect("renders").body).expect("JSON");
    assert_eq!(
        (v["value"].is_null(), v["formatted"].as_str(), v["label"].as_str()),
        (true, Some("no rows"), Some("n"))
    );
    let one = rs(&["n"], vec![vec![Value::Int(-42_000)]]);
    let v: serde_json::Value = serde_json::from_slice(&render(&spec, &one, 100).expect("renders").body).expect("JSON");
    assert_eq!((v["value"].as_i64(), v["formatted"].as_str()), (Some(-42_000), Some("-42,000")));
}

#[test]
fn every_kind_is_deterministic_and_free_of_active_content() {
    let data = rs(
        &["k", "x", "y"],
        (0..50).map(|i| vec![text(&format!("<script>{i}")), Value::Int(i), Value::Float((i as f64).sqrt())]).collect(),
    );
    let specs = [
        RenderSpec::Line(xy("x", &["y"])),
        RenderSpec::Area(xy("x", &["y"])),
        RenderSpec::Scatter(xy("x", &["y"])),
        RenderSpec::Pie(PieSpec {
            label: "k".into(),
            value: "y".into(),
            title: Some("<b onload=x>".into()),
            format: Default::default(),
            unit: None,
            decimals: None,
        }),
        RenderSpec::Bar(BarSpec {
            x: "k".into(),
            y: vec!["x".into(), "y".into()],
            title: None,
            stacked: true,
            series: None,
            format: Default::default(),
            unit: None,
            decimals: None,
        }),
    ];
    for spec in &specs {
        let a = render(spec, &data, 100).expect("renders");
        assert_eq!(a, render(spec, &data, 100).expect("renders"), "{}", spec.kind());
        let doc = svg_of(&a);
        for n in doc.descendants().filter(|n| n.is_element()) {
            assert!(["svg", "title", "g", "rect", "line", "text", "path", "circle"].contains(&n.tag_name().name()));
            for attr in n.attributes() {
                assert!(!attr.name().to_ascii_lowercase().starts_with("on"), "{}", attr.name());
                assert!(!attr.name().contains("href") && attr.name() != "style");
            }
        }
    }
}
