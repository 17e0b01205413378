//! Tests of the chart options of issue 23: number formats and units (item 11) and series
//! from a column for lines and areas, with sorted legends (item 13).

use outpost_protocol::{BarSpec, NumberFormat, PieSpec, RenderSpec, XySpec};

use super::measure::text_width;
use super::test_util::{rs, text};
use super::*;

fn line(series: Option<&str>) -> XySpec {
    XySpec {
        x: "day".into(),
        y: vec!["v".into()],
        y2: Vec::new(),
        title: None,
        max_points: None,
        series: series.map(str::to_owned),
        format: NumberFormat::Plain,
        unit: None,
        decimals: None,
    }
}

fn bar_as(format: NumberFormat, unit: Option<&str>) -> RenderSpec {
    RenderSpec::Bar(BarSpec {
        x: "k".into(),
        y: vec!["v".into()],
        title: None,
        stacked: false,
        series: None,
        format,
        unit: unit.map(str::to_owned),
        decimals: None,
    })
}

fn svg(spec: &RenderSpec, data: &ResultSet) -> String {
    let r = render(spec, data, 100_000).expect("renders");
    String::from_utf8(r.body).expect("UTF-8")
}

fn doc(s: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(s).expect("well-formed SVG")
}

fn class<'a, 'i>(d: &'a roxmltree::Document<'i>, c: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    d.descendants().filter(|n| n.attribute("class") == Some(c)).collect()
}

fn texts(s: &str, c: &str) -> Vec<String> {
    class(&doc(s), c).iter().map(|n| n.text().unwrap_or_default().to_owned()).collect()
}

fn titles(s: &str, c: &str) -> Vec<String> {
    let d = doc(s);
    class(&d, c)
        .iter()
        .filter_map(|n| n.children().find(|t| t.has_tag_name("title")))
        .map(|t| t.text().unwrap_or_default().to_owned())
        .collect()
}

/// Rows `(day, region, v)` in an order that is neither by region nor by day.
fn long_rows() -> ResultSet {
    let mut rows = Vec::new();
    for (day, region, v) in [
        (2, "south", 5),
        (1, "north", 10),
        (1, "south", 4),
        (2, "north", 12),
        (1, "East", 7),
        (3, "north", 11),
        (2, "East", 8),
        (3, "south", 6),
    ] {
        rows.push(vec![Value::Int(day), text(region), Value::Int(v)]);
    }
    rs(&["day", "region", "v"], rows)
}

// ---- 13. series from a column ------------------------------------------------------------

#[test]
fn a_line_takes_its_series_from_a_column_in_sorted_legend_order() {
    let spec = RenderSpec::Line(line(Some("region")));
    let s = svg(&spec, &long_rows());
    assert_eq!(texts(&s, "legend"), ["East", "north", "south"]);
    let d = doc(&s);
    let paths = class(&d, "series");
    let drawn: Vec<(&str, &str, &str)> = paths
        .iter()
        .map(|p| {
            (
                p.attribute("data-series").unwrap_or(""),
                p.attribute("data-points").unwrap_or(""),
                p.attribute("stroke").unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(drawn, [("East", "2", PALETTE[0]), ("north", "3", PALETTE[1]), ("south", "3", PALETTE[2])]);
    assert_eq!(texts(&s, "axis-title"), ["day", "v"]);
    assert!(s.contains("<title>Line chart of v by day and region</title>"), "{s}");
    // The same rows in another order give the same bytes.
    let mut reversed = long_rows();
    reversed.rows.reverse();
    assert_eq!(s, svg(&spec, &reversed));
}

#[test]
fn an_area_takes_its_series_from_a_column_and_a_null_series_is_listed_last() {
    let mut data = long_rows();
    data.rows.push(vec![Value::Int(1), Value::Null, Value::Int(1)]);
    data.rows.push(vec![Value::Int(2), Value::Null, Value::Int(2)]);
    let s = svg(&RenderSpec::Area(line(Some("region"))), &data);
    assert_eq!(texts(&s, "legend"), ["East", "north", "south", "(null)"]);
    assert_eq!(class(&doc(&s), "area").len(), 4);
}

#[test]
fn more_series_values_than_colours_are_refused_in_the_charts_words() {
    let rows = (0..11).map(|i| vec![Value::Int(1), text(&format!("r{i}")), Value::Int(i)]).collect();
    let e = render(&RenderSpec::Line(line(Some("region"))), &rs(&["day", "region", "v"], rows), 1000)
        .expect_err("eleven series");
    assert_eq!(e, RenderError::TooManySeriesValues { column: "region".into(), max: MAX_SERIES });
    assert!(e.to_string().contains("a line, area or scatter chart draws at most 10 series"), "{e}");
}

#[test]
fn a_scatter_plot_takes_its_series_from_a_column_too() {
    let s = svg(&RenderSpec::Scatter(line(Some("region"))), &long_rows());
    assert_eq!(texts(&s, "legend"), ["East", "north", "south"]);
    let d = doc(&s);
    let groups: Vec<(&str, usize)> = class(&d, "series")
        .iter()
        .map(|g| (g.attribute("data-series").unwrap_or(""), g.children().filter(|c| c.has_tag_name("circle")).count()))
        .collect();
    assert_eq!(groups, [("East", 2), ("north", 3), ("south", 3)]);
}

#[test]
fn series_from_a_column_share_the_point_budget() {
    // Three series of 3,000 points each, with a budget of 600 points over all series.
    let mut rows = Vec::new();
    for i in 0..3000 {
        for (r, region) in ["a", "b", "c"].iter().enumerate() {
            rows.push(vec![Value::Int(i), text(region), Value::Int((i * (r as i64 + 1)) % 97)]);
        }
    }
    let r = render_with(&RenderSpec::Line(line(Some("region"))), &rs(&["day", "region", "v"], rows), 100_000, 600)
        .expect("renders");
    assert!(r.points <= 600, "{} points", r.points);
    assert!(r.points >= 300, "{} points", r.points);
}

// ---- 11. number formats and units ----------------------------------------------------------

#[test]
fn a_word_unit_follows_the_number_after_a_space_on_the_axis_and_in_tooltips() {
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Int(43_725_380)], vec![text("b"), Value::Int(1_000)]]);
    let s = svg(&bar_as(NumberFormat::Plain, Some("EUR")), &data);
    assert_eq!(titles(&s, "bar"), ["a: v = 43,725,380\u{a0}EUR", "b: v = 1,000\u{a0}EUR"]);
    let ticks = texts(&s, "tick");
    assert_eq!(ticks.last().map(String::as_str), Some("50,000,000\u{a0}EUR"), "{ticks:?}");
    // The widest tick label stays clear of the y axis title (which ends at x = 26).
    let d = doc(&s);
    for t in class(&d, "tick") {
        let right: f64 = t.attribute("x").and_then(|x| x.parse().ok()).expect("x");
        let left = right - text_width(t.text().unwrap_or_default(), 11.0);
        assert!(left >= 26.0, "{:?} starts at {left}", t.text());
    }
}

#[test]
fn compact_percent_and_currency_formats_write_axis_and_tooltips() {
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Int(11_000_000)], vec![text("b"), Value::Int(2_500_000)]]);
    let s = svg(&bar_as(NumberFormat::Compact, None), &data);
    assert_eq!(texts(&s, "tick"), ["0", "2M", "4M", "6M", "8M", "10M", "12M"]);
    assert_eq!(titles(&s, "bar"), ["a: v = 11,000,000", "b: v = 2,500,000"]);

    let shares =
        rs(&["day", "v"], vec![vec![Value::Int(1), Value::Float(0.1)], vec![Value::Int(2), Value::Float(0.253)]]);
    let spec = RenderSpec::Line(XySpec { format: NumberFormat::Percent, ..line(None) });
    let ticks = texts(&svg(&spec, &shares), "tick");
    assert!(ticks.iter().all(|t| t.ends_with('%')), "{ticks:?}");
    assert!(ticks.contains(&"20%".to_owned()), "{ticks:?}");

    let pie = RenderSpec::Pie(PieSpec {
        label: "k".into(),
        value: "v".into(),
        title: None,
        format: NumberFormat::Currency,
        unit: Some("EUR".into()),
        decimals: None,
    });
    let t = titles(&svg(&pie, &data), "slice");
    assert_eq!(t[0], "a: 11,000,000.00\u{a0}EUR (81.5%)");
}

// ---- dual axis ------------------------------------------------------------------------------

#[test]
fn y2_columns_are_drawn_to_a_right_axis_of_their_own() {
    let rows =
        (0..10).map(|d| vec![Value::Int(d), Value::Int(1_000_000 + d * 100_000), Value::Int(10 + d * 4)]).collect();
    let data = rs(&["day", "revenue", "orders"], rows);
    let spec = RenderSpec::Line(XySpec {
        y: vec!["revenue".into()],
        y2: vec!["orders".into()],
        unit: Some("EUR".into()),
        format: NumberFormat::Compact,
        ..line(None)
    });
    let s = svg(&spec, &data);
    let d = doc(&s);
    let plot = class(&d, "plot")[0];
    let attr = |k: &str| plot.attribute(k).and_then(|v| v.parse::<f64>().ok()).expect(k);
    // Each axis spans its own columns' values.
    assert!(
        attr("data-y-min") <= 1_000_000.0 && attr("data-y-max") >= 1_900_000.0 && attr("data-y-max") <= 2_000_000.0
    );
    assert!(attr("data-y2-min") <= 10.0 && attr("data-y2-max") >= 46.0 && attr("data-y2-max") <= 50.0);
    let right_ticks = texts(&s, "tick-right");
    assert!(right_ticks.iter().any(|t| t.starts_with("40")), "{right_ticks:?}");
    // The orders line reaches the top of the plot: drawn to the right axis, not the left.
    let orders =
        class(&d, "series").into_iter().find(|p| p.attribute("data-series") == Some("orders")).expect("orders");
    assert_eq!(orders.attribute("stroke-dasharray"), Some("6 3"));
    let ys: Vec<f64> = orders
        .attribute("d")
        .unwrap_or_default()
        .split(['M', 'L'])
        .filter_map(|p| p.split_whitespace().nth(1).and_then(|y| y.parse().ok()))
        .collect();
    let (top, bottom) = (attr("data-top"), attr("data-bottom"));
    let highest = ys.iter().copied().fold(f64::MAX, f64::min);
    let value = attr("data-y2-max") - (highest - top) / (bottom - top) * (attr("data-y2-max") - attr("data-y2-min"));
    assert!((value - 46.0).abs() < 0.1, "{value}");
    assert_eq!(texts(&s, "legend"), ["revenue", "orders (right)"]);
    assert_eq!(texts(&s, "axis-title"), ["day", "revenue", "orders"]);
    // The right axis's labels stay left of the legend and inside the chart.
    let legend_x: f64 = class(&d, "legend-swatch")[0].attribute("x").and_then(|x| x.parse().ok()).expect("x");
    for t in class(&d, "tick-right") {
        let x: f64 = t.attribute("x").and_then(|x| x.parse().ok()).expect("x");
        assert!(x + text_width(t.text().unwrap_or_default(), 11.0) < legend_x, "{:?}", t.text());
    }
    // Without y2 there is no right axis.
    assert!(texts(&svg(&RenderSpec::Line(line(None)), &long_rows()), "tick-right").is_empty());
}

/// Issue 23: a scalar takes the same number formats: `43.7M EUR` on a dashboard tile.
#[test]
fn a_scalar_takes_compact_percent_and_currency_formats() {
    let scalar = |format: NumberFormat, unit: Option<&str>, v: Value| {
        let spec = RenderSpec::Scalar(outpost_protocol::ScalarSpec {
            column: "n".into(),
            label: None,
            decimals: None,
            unit: unit.map(str::to_owned),
            format,
        });
        let r = render(&spec, &rs(&["n"], vec![vec![v]]), 10).expect("renders");
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        json["formatted"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(scalar(NumberFormat::Compact, Some("EUR"), Value::Int(43_725_380)), "43.7M\u{a0}EUR");
    assert_eq!(scalar(NumberFormat::Percent, None, Value::Decimal("0.2534".into())), "25.34%");
    assert_eq!(scalar(NumberFormat::Currency, Some("USD"), Value::Float(1234.5)), "1,234.50\u{a0}USD");
    assert_eq!(scalar(NumberFormat::Plain, Some("EUR"), Value::Int(43_725_380)), "43,725,380\u{a0}EUR");
    // A NULL stays NULL whatever the format.
    assert_eq!(scalar(NumberFormat::Compact, Some("EUR"), Value::Null), "NULL");
}

// ---- layout -------------------------------------------------------------------------------

/// Issue 23 (charts that look finished): under flat x labels the plot takes the height the
/// labels leave, so the x axis title ends near the bottom with no empty band below it;
/// rotated labels keep their room.
#[test]
fn flat_labels_leave_no_empty_band_under_the_chart() {
    let x_title_y = |s: &str| -> f64 {
        let d = doc(s);
        let titles = class(&d, "axis-title");
        titles[0].attribute("y").and_then(|y| y.parse().ok()).expect("y")
    };
    let short = rs(&["k", "v"], vec![vec![text("a"), Value::Int(1)], vec![text("b"), Value::Int(2)]]);
    let flat = svg(&bar_as(NumberFormat::Plain, None), &short);
    let bars = super::test_util::parse_bars(&flat);
    assert!((bars[1].y + bars[1].height - (MARGIN_TOP + PLOT_HEIGHT_FLAT)).abs() < 0.01, "{bars:?}");
    assert!((415.0..=444.0).contains(&x_title_y(&flat)), "{}", x_title_y(&flat));
    let line_svg = svg(&RenderSpec::Line(line(Some("region"))), &long_rows());
    assert!((415.0..=444.0).contains(&x_title_y(&line_svg)), "{}", x_title_y(&line_svg));
    // Sixty long labels are rotated and the plot keeps the room they need.
    let long = rs(&["k", "v"], (0..60).map(|i| vec![text(&format!("a long category {i}")), Value::Int(i)]).collect());
    let rotated = super::test_util::parse_bars(&svg(&bar_as(NumberFormat::Plain, None), &long));
    let last = rotated.last().expect("bars");
    assert!((last.y + last.height - (MARGIN_TOP + PLOT_HEIGHT)).abs() < 0.01, "{last:?}");
}
