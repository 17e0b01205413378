//! Bar charts in long form (`series` from a column): what a reader sees in the SVG.

use super::test_util::*;
use super::*;

fn by_series(x: &str, y: &str, series: &str, stacked: bool) -> RenderSpec {
    RenderSpec::Bar(BarSpec {
        x: x.into(),
        y: vec![y.into()],
        title: None,
        stacked,
        series: Some(series.into()),
        format: Default::default(),
        unit: None,
        decimals: None,
    })
}

fn row(month: &str, region: Value, revenue: Value) -> Vec<Value> {
    vec![text(month), region, revenue]
}

/// Revenue by month and region, long form; February has no "south" row.
fn revenue() -> ResultSet {
    rs(
        &["month", "region", "revenue"],
        vec![
            row("Jan", text("north"), Value::Int(10)),
            row("Jan", text("south"), Value::Int(5)),
            row("Feb", text("north"), Value::Int(7)),
            row("Feb", text("east"), Value::Int(3)),
        ],
    )
}

/// `(legend text, swatch colour)` in legend order.
fn legend(svg: &str) -> Vec<(String, String)> {
    let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
    let fills = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("legend-swatch"))
        .map(|n| n.attribute("fill").unwrap_or_default().to_owned());
    texts_with_class(svg, "legend").into_iter().zip(fills).collect()
}

fn fill_of(svg: &str, label: &str, series: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
    let found = doc.descendants().find(|n| {
        n.attribute("class") == Some("bar")
            && n.attribute("data-label") == Some(label)
            && n.attribute("data-series") == Some(series)
    });
    found.and_then(|n| n.attribute("fill")).map(str::to_owned)
}

#[test]
fn stacked_series_from_a_column_draw_one_segment_per_value_in_each_group() {
    let svg = render_svg(&by_series("month", "revenue", "region", true), &revenue());
    // Groups in the order they first appear, series sorted (issue 23: sorted legends),
    // with the palette's colours in legend order.
    assert_eq!(texts_with_class(&svg, "x-label"), ["Jan", "Feb"]);
    let expected: Vec<(String, String)> =
        ["east", "north", "south"].iter().zip(PALETTE).map(|(s, c)| ((*s).to_owned(), c.to_owned())).collect();
    assert_eq!(legend(&svg), expected);
    let bars = parse_bars(&svg);
    let seen: Vec<(&str, &str, &str)> =
        bars.iter().map(|b| (b.label.as_str(), b.series.as_str(), b.value.as_str())).collect();
    assert_eq!(seen, [("Jan", "north", "10"), ("Jan", "south", "5"), ("Feb", "east", "3"), ("Feb", "north", "7")]);
    for (label, series, colour) in [("Jan", "south", PALETTE[2]), ("Feb", "east", PALETTE[0])] {
        assert_eq!(fill_of(&svg, label, series).as_deref(), Some(colour));
    }
    // Segments of a group share one column and sit on each other: south on north.
    let (north, south) = (&bars[0], &bars[1]);
    assert_eq!((north.x, north.width), (south.x, south.width));
    assert!((south.y + south.height - north.y).abs() <= 0.01, "{north:?} {south:?}");
    // The axis reaches the tallest stack (15), titled by the x and y columns.
    let top: f64 = texts_with_class(&svg, "tick").last().and_then(|t| t.parse().ok()).expect("a numeric top tick");
    assert!((15.0..=16.0).contains(&top), "{top}");
    assert_eq!(texts_with_class(&svg, "axis-title"), ["month", "revenue"]);
    assert!(svg.contains("<title>Bar chart of revenue by month and region</title>"), "{svg}");
}

#[test]
fn grouped_series_sit_side_by_side_and_a_missing_value_keeps_its_slot() {
    let svg = render_svg(&by_series("month", "revenue", "region", false), &revenue());
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 4);
    let (jan_north, jan_south, feb_east, feb_north) = (&bars[0], &bars[1], &bars[2], &bars[3]);
    // Three slots per group, in legend order: east, north, south; Jan has no east bar
    // but north keeps its second slot.
    assert!((jan_north.x + jan_north.width - jan_south.x).abs() <= 0.01);
    assert!((feb_east.x + feb_east.width - feb_north.x).abs() <= 0.01, "{feb_north:?} {feb_east:?}");
    let group = feb_north.x - jan_north.x;
    assert!((feb_east.x - group - (jan_north.x - jan_north.width)).abs() <= 0.02);
    // Heights to scale, side by side on one baseline.
    assert!((jan_north.height - 2.0 * jan_south.height).abs() <= 0.01);
    assert!((jan_north.y + jan_north.height - (jan_south.y + jan_south.height)).abs() <= 0.01);
    assert_eq!(legend(&svg).len(), 3);
}

#[test]
fn one_series_value_still_has_a_legend_naming_it() {
    let data = rs(&["m", "r", "v"], vec![row("Jan", text("north"), Value::Int(1))]);
    let svg = render_svg(&by_series("m", "v", "r", false), &data);
    assert_eq!(legend(&svg), [("north".to_owned(), PALETTE[0].to_owned())]);
}

#[test]
fn beyond_ten_series_the_smallest_are_summed_as_other() {
    // Twelve regions; r0 is the smallest in total, then r1, r2; each has one row per month.
    let mut rows = Vec::new();
    for month in ["Jan", "Feb"] {
        for r in 0..12 {
            rows.push(row(month, text(&format!("r{r}")), Value::Int(100 + r)));
        }
    }
    let data = rs(&["month", "region", "revenue"], rows);
    let svg = render_svg(&by_series("month", "revenue", "region", true), &data);
    let names: Vec<String> = legend(&svg).into_iter().map(|(n, _)| n).collect();
    let mut expected: Vec<String> = (3..12).map(|r| format!("r{r}")).collect();
    expected.push("Other (3 series)".into());
    assert_eq!(names, expected);
    assert_eq!(legend(&svg)[9].1, PALETTE[9]);
    let other: Vec<_> = parse_bars(&svg).into_iter().filter(|b| b.series == "Other (3 series)").collect();
    assert_eq!(other.len(), 2);
    assert!(other.iter().all(|b| b.value == "303"), "{other:?}");
    assert_eq!(texts_with_class(&svg, "note"), ["The 3 smallest series of region are summed as Other."]);
    // The same rows give the same bytes.
    assert_eq!(svg, render_svg(&by_series("month", "revenue", "region", true), &data));
}

#[test]
fn null_series_values_are_a_series_named_null_and_null_values_draw_nothing() {
    let data = rs(
        &["m", "r", "v"],
        vec![
            row("Jan", Value::Null, Value::Int(4)),
            row("Jan", text("north"), Value::Null),
            row("Feb", text("north"), Value::Int(2)),
        ],
    );
    let svg = render_svg(&by_series("m", "v", "r", false), &data);
    let names: Vec<String> = legend(&svg).into_iter().map(|(n, _)| n).collect();
    // NULL is listed last.
    assert_eq!(names, ["north", "(null)"]);
    let bars = parse_bars(&svg);
    let seen: Vec<(&str, &str)> = bars.iter().map(|b| (b.label.as_str(), b.series.as_str())).collect();
    assert_eq!(seen, [("Jan", "(null)"), ("Feb", "north")]);
}

#[test]
fn rows_with_the_same_x_and_series_are_added() {
    let data =
        rs(&["m", "r", "v"], vec![row("Jan", text("n"), Value::Int(2)), row("Jan", text("n"), Value::Float(0.5))]);
    let svg = render_svg(&by_series("m", "v", "r", false), &data);
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 1);
    assert_eq!(bars[0].value, "2.5");
}

#[test]
fn series_refusals_name_the_column_or_the_limit() {
    let err = render(&by_series("month", "revenue", "regoin", false), &revenue(), 100).expect_err("unknown");
    assert!(matches!(&err, RenderError::UnknownColumn { column, .. } if column == "regoin"), "{err:?}");

    let two_y = RenderSpec::Bar(BarSpec {
        x: "month".into(),
        y: vec!["revenue".into(), "region".into()],
        title: None,
        stacked: true,
        series: Some("region".into()),
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    assert_eq!(render(&two_y, &revenue(), 100), Err(RenderError::SeriesWithSeveralY { y: 2 }));

    let data = rs(&["m", "r", "v"], vec![row("Jan", text("n"), text("ten"))]);
    assert_eq!(
        render(&by_series("m", "v", "r", false), &data, 100),
        Err(RenderError::NotNumeric { column: "v".into(), row: 0 })
    );

    let many =
        rs(&["m", "r", "v"], (0..=MAX_BAR_GROUPS).map(|i| row(&format!("m{i}"), text("n"), Value::Int(1))).collect());
    let err = render(&by_series("m", "v", "r", false), &many, 10_000).expect_err("too many groups");
    assert_eq!(err, RenderError::TooManyBarGroups { max: MAX_BAR_GROUPS });
    assert!(err.to_string().contains("at most 200 bar groups"), "{err}");

    let err = render(&by_series("month", "revenue", "region", false), &revenue(), 3).expect_err("rows");
    assert_eq!(err, RenderError::TooManyBarRows { rows: 4, max: 3 });
    assert!(err.to_string().contains("row limit (max_rows) of 3"), "{err}");
}

#[test]
fn series_values_are_escaped() {
    let evil = "<script>alert(1)</script>";
    let data = rs(&["m", "r", "v"], vec![row("Jan", text(evil), Value::Int(1))]);
    let svg = render_svg(&by_series("m", "v", "r", false), &data);
    assert!(!svg.to_ascii_lowercase().contains("<script"), "{svg}");
    assert_eq!(parse_bars(&svg)[0].series, evil);
    assert_eq!(legend(&svg)[0].0, evil);
}
