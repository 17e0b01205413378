//! Tests of the chart and table defects of issue 23 ("charts that look finished"): each
//! parses the output and checks what a reader would see.

use outpost_protocol::{BarSpec, PieSpec, RenderSpec, ScalarSpec, TableFormat, TableSpec, XySpec};

use super::measure::text_width;
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

fn pie(label: &str, value: &str) -> RenderSpec {
    RenderSpec::Pie(PieSpec {
        label: label.into(),
        value: value.into(),
        title: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    })
}

fn bar(x: &str, y: &[&str]) -> RenderSpec {
    RenderSpec::Bar(BarSpec {
        x: x.into(),
        y: y.iter().map(|c| (*c).to_owned()).collect(),
        title: None,
        stacked: false,
        series: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    })
}

fn svg(spec: &RenderSpec, data: &ResultSet) -> String {
    let r = render(spec, data, 100_000).expect("renders");
    assert_eq!(r.content_type, "image/svg+xml");
    String::from_utf8(r.body).expect("UTF-8")
}

fn doc(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).expect("well-formed SVG")
}

fn with_class<'a, 'i>(d: &'a roxmltree::Document<'i>, class: &'a str) -> Vec<roxmltree::Node<'a, 'i>> {
    d.descendants().filter(|n| n.attribute("class") == Some(class)).collect()
}

fn texts(d: &roxmltree::Document<'_>, class: &str) -> Vec<String> {
    with_class(d, class).iter().map(|n| n.text().unwrap_or_default().to_owned()).collect()
}

fn num(n: &roxmltree::Node<'_, '_>, attr: &str) -> f64 {
    n.attribute(attr).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{attr} of {n:?}"))
}

/// The horizontal extent of an unrotated 11px text element, by its anchor.
fn extent(n: &roxmltree::Node<'_, '_>) -> (f64, f64) {
    let (x, w) = (num(n, "x"), text_width(n.text().unwrap_or_default(), 11.0));
    match n.attribute("text-anchor") {
        Some("end") => (x - w, x),
        Some("middle") => (x - w / 2.0, x + w / 2.0),
        _ => (x, x + w),
    }
}

// ---- 1. a one-row line chart ------------------------------------------------------------------

#[test]
fn a_one_row_line_chart_draws_a_marker_and_keeps_its_labels_inside() {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
    for x in [Value::Int(7), Value::Date(day), Value::Float(1234.5)] {
        let data = rs(&["x", "v"], vec![vec![x.clone(), Value::Int(42)]]);
        for spec in [RenderSpec::Line(xy("x", &["v"])), RenderSpec::Area(xy("x", &["v"]))] {
            let s = svg(&spec, &data);
            let d = doc(&s);
            let markers = with_class(&d, "marker");
            assert_eq!(markers.len(), 1, "{x:?}: {s}");
            let plot = with_class(&d, "plot")[0];
            let (top, bottom) = (num(&plot, "data-top"), num(&plot, "data-bottom"));
            let (ylo, yhi) = (num(&plot, "data-y-min"), num(&plot, "data-y-max"));
            let y = yhi - (num(&markers[0], "cy") - top) / (bottom - top) * (yhi - ylo);
            assert!((y - 42.0).abs() < 0.1, "{y}");
            assert!(num(&markers[0], "r") >= 3.0);
            let labels = with_class(&d, "x-label");
            assert!(!labels.is_empty());
            for l in &labels {
                let (a, b) = extent(l);
                assert!(a >= 0.0 && b <= WIDTH, "{:?} spans {a}..{b}", l.text());
            }
        }
    }
}

// ---- 2. NULLs break a line ------------------------------------------------------------------

#[test]
fn a_null_breaks_the_line_into_segments() {
    let ys = [Some(1), Some(2), None, Some(4), Some(5), None, Some(7)];
    let data = rs(
        &["x", "v"],
        ys.iter().enumerate().map(|(i, y)| vec![Value::Int(i as i64), y.map_or(Value::Null, Value::Int)]).collect(),
    );
    let s = svg(&RenderSpec::Line(xy("x", &["v"])), &data);
    let d = doc(&s);
    let path = with_class(&d, "series")[0];
    let dd = path.attribute("d").expect("d");
    assert_eq!(dd.matches('M').count(), 2, "{dd}");
    assert_eq!(dd.matches('L').count(), 2, "{dd}");
    assert_eq!(path.attribute("data-points"), Some("5"));
    // The value alone after the last NULL is a marker.
    assert_eq!(with_class(&d, "marker").len(), 1);
    let r = render(&RenderSpec::Line(xy("x", &["v"])), &data, 100).expect("renders");
    assert_eq!(r.points, 5);

    // An area breaks too: one closed shape per run of values.
    let s = svg(&RenderSpec::Area(xy("x", &["v"])), &data);
    let d = doc(&s);
    let area = with_class(&d, "area")[0].attribute("d").expect("d").to_owned();
    assert_eq!((area.matches('M').count(), area.matches('Z').count()), (2, 2), "{area}");
}

#[test]
fn a_null_still_breaks_a_downsampled_line() {
    // 10 000 points with NULLs over a tenth of the range in the middle.
    let data = rs(
        &["x", "v"],
        (0..10_000i64)
            .map(|i| vec![Value::Int(i), if (4_500..5_500).contains(&i) { Value::Null } else { Value::Int(i % 10) }])
            .collect(),
    );
    let r = render_with(&RenderSpec::Line(xy("x", &["v"])), &data, 100, 400).expect("renders");
    assert!(!r.decisions.is_empty(), "downsampled");
    let s = String::from_utf8(r.body).expect("UTF-8");
    let d = doc(&s);
    let dd = with_class(&d, "series")[0].attribute("d").expect("d").to_owned();
    assert_eq!(dd.matches('M').count(), 2, "{dd}");
}

// ---- 4. pie legends use the room they have ----------------------------------------------------

#[test]
fn pie_legend_names_use_the_room_right_of_the_pie() {
    let long = "Northern Europe and the Nordic countries, excluding the Baltic states and Iceland";
    let data = rs(
        &["region", "n"],
        vec![
            vec![text("Southern Europe"), Value::Int(3)],
            vec![text("Western Europe"), Value::Int(2)],
            vec![text(long), Value::Int(1)],
        ],
    );
    let s = svg(&pie("region", "n"), &data);
    let d = doc(&s);
    let legend = texts(&d, "legend");
    assert_eq!(legend[0], "Southern Europe (50.0%)");
    assert_eq!(legend[1], "Western Europe (33.3%)");
    // The long name is cut by the width there is (much more than 9 characters), with an
    // ellipsis, its share kept whole, its full text in a <title>.
    assert!(legend[2].ends_with("… (16.7%)"), "{}", legend[2]);
    assert!(legend[2].chars().count() > 30, "{}", legend[2]);
    let node = with_class(&d, "legend")[2];
    let (_, right) = extent(&node);
    assert!(right <= WIDTH, "{right}");
    let title = node.children().find(|c| c.has_tag_name("title")).and_then(|t| t.text());
    assert_eq!(title, Some(format!("{long} (16.7%)").as_str()));
    // Names that fit have no <title>.
    assert!(with_class(&d, "legend")[0].children().all(|c| !c.has_tag_name("title")));
}

// ---- 5. tooltips are formatted -----------------------------------------------------------------

#[test]
fn tooltips_show_numbers_with_thousands_separators() {
    let data =
        rs(&["k", "v"], vec![vec![text("north"), Value::Float(8_690_173.57)], vec![text("south"), Value::Int(1)]]);
    let s = svg(&bar("k", &["v"]), &data);
    assert!(s.contains("<title>north: v = 8,690,173.57</title>"), "{s}");
    // The data attribute keeps the exact value for machines.
    assert!(s.contains("data-value=\"8690173.57\""));
    let s = svg(&pie("k", "v"), &data);
    assert!(s.contains("<title>north: 8,690,173.57 (100.0%)</title>"), "{s}");
    let data = rs(&["x", "v"], vec![vec![Value::Int(1), Value::Decimal("1234567.5".into())]]);
    let s = svg(&RenderSpec::Line(xy("x", &["v"])), &data);
    assert!(s.contains("<title>v: 1,234,567.5</title>"), "{s}");
}

// ---- 6. large pies fold into "Other"; limits are named ------------------------------------------

#[test]
fn a_pie_of_ten_thousand_rows_keeps_the_largest_slices_and_folds_the_rest() {
    let data = rs(&["k", "n"], (1..=10_000).map(|i| vec![text(&format!("item {i}")), Value::Int(i)]).collect());
    let r = render(&pie("k", "n"), &data, 10_000).expect("a pie of 10 000 rows renders");
    let s = String::from_utf8(r.body).expect("UTF-8");
    let d = doc(&s);
    let labels: Vec<&str> = with_class(&d, "slice").iter().filter_map(|n| n.attribute("data-label")).collect();
    assert_eq!(labels.len(), MAX_SLICES);
    assert_eq!(labels[0], "item 9992");
    assert_eq!(labels[MAX_SLICES - 1], format!("Other ({} rows)", 10_000 - (MAX_SLICES - 1)));

    // Beyond the agent's row policy a pie is refused, in words about pies and naming the limit.
    let err = render(&pie("k", "n"), &data, 500).expect_err("refused");
    assert_eq!(err, RenderError::TooManyPieRows { rows: 10_000, max: 500 });
    let msg = err.to_string();
    assert!(msg.contains("pie") && msg.contains("max_rows") && msg.contains("500"), "{msg}");
    assert!(msg.contains(&format!("{MAX_SLICES} slices")) && !msg.contains("bar"), "{msg}");

    // A bar chart's refusal names which limit it hit.
    let many = rs(&["k", "v"], (0..300).map(|i| vec![Value::Int(i), Value::Int(i)]).collect());
    let msg = render(&bar("k", &["v"]), &many, 10_000).expect_err("refused").to_string();
    assert!(msg.contains("bar chart limit of 200 groups"), "{msg}");
    let msg = render(&bar("k", &["v"]), &many, 50).expect_err("refused").to_string();
    assert!(msg.contains("max_rows") && msg.contains("50"), "{msg}");
}

// ---- 7. the x axis title sits just below the labels -------------------------------------------

#[test]
fn the_x_axis_title_sits_just_below_the_tick_labels() {
    let data = rs(&["region", "n"], vec![vec![text("north"), Value::Int(1)], vec![text("south"), Value::Int(2)]]);
    let line = rs(&["x", "n"], (0..5).map(|i| vec![Value::Int(i), Value::Int(i)]).collect());
    for s in [svg(&bar("region", &["n"]), &data), svg(&RenderSpec::Line(xy("x", &["n"])), &line)] {
        let d = doc(&s);
        let label_y = with_class(&d, "x-label").iter().map(|n| num(n, "y")).fold(0.0, f64::max);
        let title_y = num(&with_class(&d, "axis-title")[0], "y");
        let gap = title_y - label_y;
        assert!((12.0..=24.0).contains(&gap), "title {title_y}, labels {label_y}");
    }

    // Rotated labels: the title goes below their lowest point, still inside the chart.
    let data = rs(
        &["name", "n"],
        (0..60).map(|i| vec![text(&format!("a rather long category name {i}")), Value::Int(i)]).collect(),
    );
    let s = svg(&bar("name", &["n"]), &data);
    let d = doc(&s);
    let rotated = with_class(&d, "x-label");
    assert!(rotated.iter().all(|n| n.attribute("transform").is_some_and(|t| t.starts_with("rotate(-45"))));
    let lowest = rotated
        .iter()
        .map(|n| {
            num(n, "y") + (text_width(n.text().unwrap_or_default(), 11.0) + 11.0) * std::f64::consts::FRAC_1_SQRT_2
        })
        .fold(0.0, f64::max);
    let title_y = num(&with_class(&d, "axis-title")[0], "y");
    assert!(title_y > lowest && title_y - lowest <= 20.0, "title {title_y}, labels reach {lowest}");
    assert!(title_y <= HEIGHT - 4.0, "{title_y}");
    assert!(rotated.iter().all(|n| n.text().is_some_and(|t| t.ends_with('…'))));
}

// ---- 8. labels are rotated only when they do not fit --------------------------------------------

#[test]
fn short_labels_stay_horizontal_even_in_narrow_groups() {
    let names = ["Ohio", "Iowa", "Utah", "Idaho", "Illinois", "Florida", "Texas", "Maine", "Alaska", "Hawaii"];
    let data = rs(
        &["state", "a", "b", "c"],
        names.iter().map(|n| vec![text(n), Value::Int(1), Value::Int(2), Value::Int(3)]).collect(),
    );
    let s = svg(&bar("state", &["a", "b", "c"]), &data);
    let d = doc(&s);
    let labels = with_class(&d, "x-label");
    assert_eq!(labels.len(), names.len());
    assert!(labels.iter().all(|n| n.attribute("transform").is_none()), "{s}");
    // And they do not overlap.
    for w in labels.windows(2) {
        assert!(extent(&w[0]).1 < extent(&w[1]).0, "{:?} / {:?}", w[0].text(), w[1].text());
    }
}

// ---- 9. empty charts say so and draw no made-up axis ---------------------------------------------

#[test]
fn an_empty_chart_says_no_data_and_draws_no_ticks() {
    let empty = rs(&["day", "n"], vec![]);
    let nulls = rs(&["day", "n"], vec![vec![Value::Date(chrono::NaiveDate::MIN), Value::Null]]);
    for (spec, data) in [
        (RenderSpec::Line(xy("day", &["n"])), &empty),
        (RenderSpec::Area(xy("day", &["n"])), &nulls),
        (RenderSpec::Scatter(xy("day", &["n"])), &empty),
        (bar("day", &["n"]), &empty),
    ] {
        let s = svg(&spec, data);
        let d = doc(&s);
        assert_eq!(texts(&d, "empty"), ["No data"], "{}", spec.kind());
        assert!(texts(&d, "tick").is_empty() && texts(&d, "x-label").is_empty(), "{}: {s}", spec.kind());
        assert!(with_class(&d, "grid").is_empty() && with_class(&d, "x-tick").is_empty());
    }
}

// ---- 10. time axes show the date -----------------------------------------------------------------

#[test]
fn an_hour_range_axis_shows_the_date_under_its_times() {
    use chrono::TimeZone as _;
    let at = |h: u32| {
        chrono::Utc.with_ymd_and_hms(2024, 3, 1, 22, 0, 0).single().expect("t") + chrono::Duration::hours(i64::from(h))
    };
    let data = rs(&["at", "n"], (0..5).map(|h| vec![Value::TimestampTz(at(h)), Value::Int(1)]).collect());
    let s = svg(&RenderSpec::Line(xy("at", &["n"])), &data);
    let d = doc(&s);
    assert_eq!(texts(&d, "x-date"), ["2024-03-01", "2024-03-02"]);
    let midnight = with_class(&d, "x-date")[1];
    let tick = with_class(&d, "x-label").into_iter().find(|n| n.text() == Some("00:00")).expect("midnight tick");
    assert!((num(&midnight, "x") - num(&tick, "x")).abs() < 0.01);
    assert!(num(&midnight, "y") > num(&tick, "y"));
    // The axis title moves down below the dates.
    assert!(num(&with_class(&d, "axis-title")[0], "y") > num(&midnight, "y"));
}

// ---- 11. units ------------------------------------------------------------------------------------

#[test]
fn a_word_unit_is_separated_from_its_number() {
    let data = rs(&["total"], vec![vec![Value::Int(43_725_380)]]);
    let formatted = |unit: &str| {
        let spec = RenderSpec::Scalar(ScalarSpec {
            column: "total".into(),
            label: None,
            decimals: None,
            unit: Some(unit.into()),
            format: Default::default(),
        });
        let v: serde_json::Value =
            serde_json::from_slice(&render(&spec, &data, 10).expect("renders").body).expect("JSON");
        v["formatted"].as_str().expect("formatted").to_owned()
    };
    assert_eq!(formatted("EUR"), "43,725,380\u{a0}EUR");
    assert_eq!(formatted("%"), "43,725,380%");
    assert_eq!(formatted(" ms"), "43,725,380 ms");
}

// ---- 12. tables ------------------------------------------------------------------------------------

#[test]
fn html_tables_align_numbers_mark_nulls_and_carry_a_scoped_style() {
    let data = rs(
        &["name", "amount"],
        vec![vec![text("NULL"), Value::Decimal("12.50".into())], vec![Value::Null, Value::Int(3)]],
    );
    let r = render(&RenderSpec::Table(TableSpec { format: TableFormat::Html, max_rows: None }), &data, 10)
        .expect("renders");
    let html = std::str::from_utf8(&r.body).expect("UTF-8");
    let d = roxmltree::Document::parse(html).expect("well-formed fragment");
    let root = d.root_element();
    assert_eq!((root.tag_name().name(), root.attribute("class")), ("div", Some("outpost-table")));
    let style = root.children().find(|n| n.has_tag_name("style")).and_then(|n| n.text()).expect("style");
    // Every rule is scoped to the fragment.
    assert!(style.split('}').filter(|r| !r.trim().is_empty()).all(|r| r.trim_start().starts_with(".outpost-table")));
    assert!(style.contains(".outpost-table .num{text-align:right"), "{style}");
    let cells: Vec<(Option<&str>, Option<&str>, &str)> = d
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| (n.attribute("class"), n.attribute("aria-label"), n.text().unwrap_or_default()))
        .collect();
    assert_eq!(
        cells,
        [
            (None, None, "NULL"),
            (Some("num"), None, "12.50"),
            (Some("null"), Some("NULL (no value)"), "NULL"),
            (Some("num"), None, "3")
        ]
    );
    let headers: Vec<Option<&str>> =
        d.descendants().filter(|n| n.has_tag_name("th")).map(|n| n.attribute("class")).collect();
    assert_eq!(headers, [None, Some("num")]);
}

#[test]
fn json_tables_carry_column_types_beside_the_names() {
    let data = rs(
        &["name", "n", "mixed", "empty", "when"],
        vec![
            vec![text("a"), Value::Int(1), Value::Int(1), Value::Null, Value::Date(chrono::NaiveDate::MIN)],
            vec![Value::Null, Value::Int(2), Value::Float(1.5), Value::Null, Value::Null],
        ],
    );
    let r = render(&RenderSpec::Table(TableSpec { format: TableFormat::Json, max_rows: None }), &data, 10)
        .expect("renders");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(v["columns"], serde_json::json!(["name", "n", "mixed", "empty", "when"]));
    assert_eq!(v["types"], serde_json::json!(["text", "integer", "number", "null", "date"]));
}
