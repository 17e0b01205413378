//! Bar charts, wide form (one series per `y` column): geometry, refusals and safety.

use super::test_util::*;
use super::*;

// ---- bar charts: geometry ---------------------------------------------------------------

#[test]
fn bar_heights_are_proportional_to_values() {
    let svg = render_svg(&bar("region", &["2023"], None), &sales());
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 3);
    // Values 10, 25, 40 give an axis 0..40 in steps of 10.
    assert_eq!(texts_with_class(&svg, "tick"), ["0", "10", "20", "30", "40"]);
    for b in &bars {
        let value: f64 = b.value.parse().expect("data-value is a number");
        let expected = value / 40.0 * PLOT_HEIGHT_FLAT;
        assert!((b.height - expected).abs() <= 0.005, "{b:?}");
        // Bars stand on the same baseline.
        assert!((b.y + b.height - (MARGIN_TOP + PLOT_HEIGHT_FLAT)).abs() <= 0.01, "{b:?}");
    }
    let labels: Vec<_> = bars.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["north", "south", "east"]);
    assert!(bars.iter().all(|b| b.series == "2023"));
}

#[test]
fn bar_heights_are_proportional_for_floats_and_odd_maxima() {
    let data = rs(
        &["k", "v"],
        vec![
            vec![Value::Int(1), Value::Float(0.37)],
            vec![Value::Int(2), Value::Float(1234.5)],
            vec![Value::Int(3), Value::Float(987.0)],
        ],
    );
    let svg = render_svg(&bar("k", &["v"], None), &data);
    let bars = parse_bars(&svg);
    let ratio = |b: &ParsedBar| b.height / b.value.parse::<f64>().expect("number");
    let tallest = bars.iter().map(|b| b.height).fold(0.0_f64, f64::max);
    assert!(tallest <= PLOT_HEIGHT_FLAT);
    // The axis max is the first nice tick at or above the largest value: 1,250.
    assert_eq!(texts_with_class(&svg, "tick"), ["0", "250", "500", "750", "1,000", "1,250"]);
    for b in &bars[1..] {
        assert!((ratio(b) - PLOT_HEIGHT_FLAT / 1250.0).abs() < 1e-4, "{b:?}");
    }
}

#[test]
fn grouped_bars_sit_side_by_side_with_one_colour_per_series() {
    let svg = render_svg(&bar("region", &["2023", "2024"], None), &sales());
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 6);
    for pair in bars.chunks(2) {
        assert_eq!(pair[0].label, pair[1].label);
        assert_eq!((pair[0].series.as_str(), pair[1].series.as_str()), ("2023", "2024"));
        assert!((pair[0].x + pair[0].width - pair[1].x).abs() <= 0.01, "{pair:?}");
    }
    // Groups do not overlap.
    assert!(bars[1].x + bars[1].width < bars[2].x);
    let doc = roxmltree::Document::parse(&svg).expect("parses");
    let fills: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .map(|n| (n.attribute("data-series"), n.attribute("fill")))
        .collect();
    for (series, fill) in fills {
        let expected = if series == Some("2023") { PALETTE[0] } else { PALETTE[1] };
        assert_eq!(fill, Some(expected));
    }
}

#[test]
fn bar_negative_values_go_down_from_the_zero_baseline() {
    let data = rs(&["k", "v"], vec![vec![text("up"), Value::Int(30)], vec![text("down"), Value::Int(-10)]]);
    let svg = render_svg(&bar("k", &["v"], None), &data);
    // Range -10..30 fits -10..30 in steps of 10, zero is a tick.
    assert_eq!(texts_with_class(&svg, "tick"), ["-10", "0", "10", "20", "30"]);
    let bars = parse_bars(&svg);
    let zero_y = MARGIN_TOP + PLOT_HEIGHT_FLAT * 30.0 / 40.0;
    let (up, down) = (&bars[0], &bars[1]);
    assert!((up.y + up.height - zero_y).abs() <= 0.01, "{up:?}");
    assert!((down.y - zero_y).abs() <= 0.01, "{down:?}");
    assert!((up.height - 3.0 * down.height).abs() <= 0.02);
    assert!((down.height - 10.0 / 40.0 * PLOT_HEIGHT_FLAT).abs() <= 0.005);
}

#[test]
fn bar_all_negative_values_put_zero_at_the_top() {
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(-3.0)]]);
    let svg = render_svg(&bar("k", &["v"], None), &data);
    assert_eq!(texts_with_class(&svg, "tick"), ["-3", "-2.5", "-2", "-1.5", "-1", "-0.5", "0"]);
    let b = &parse_bars(&svg)[0];
    assert!((b.y - MARGIN_TOP).abs() <= 0.01, "{b:?}");
    assert!((b.height - PLOT_HEIGHT_FLAT).abs() <= 0.005, "{b:?}");
}

#[test]
fn bar_all_zero_values_render_flat_bars_on_a_sane_axis() {
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Int(0)], vec![text("b"), Value::Float(0.0)]]);
    let svg = render_svg(&bar("k", &["v"], None), &data);
    assert_eq!(texts_with_class(&svg, "tick"), ["0", "1", "2", "3", "4"]);
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 2);
    assert!(bars.iter().all(|b| b.height == 0.0), "{bars:?}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
}

#[test]
fn bar_null_values_keep_their_slot_without_a_rect() {
    let data = rs(
        &["k", "a", "b"],
        vec![vec![text("x"), Value::Null, Value::Int(2)], vec![Value::Null, Value::Int(1), Value::Null]],
    );
    let svg = render_svg(&bar("k", &["a", "b"], None), &data);
    let bars = parse_bars(&svg);
    assert_eq!(bars.len(), 2);
    assert_eq!((bars[0].series.as_str(), bars[0].label.as_str()), ("b", "x"));
    assert_eq!((bars[1].series.as_str(), bars[1].label.as_str()), ("a", "(null)"));
    // Series "b" is still in the second slot of its group, series "a" in the first.
    let group_width = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - LEGEND_WIDTH) / 2.0;
    let bar_width = group_width * 0.8 / 2.0;
    assert!((bars[0].x - (MARGIN_LEFT + group_width * 0.1 + bar_width)).abs() <= 0.01);
    assert!((bars[1].x - (MARGIN_LEFT + group_width * 1.1)).abs() <= 0.01);
}

#[test]
fn bar_chart_names_its_axes() {
    let rs = ResultSet {
        columns: vec!["region".into(), "revenue".into()],
        rows: vec![vec![text("North"), Value::Int(3)]],
        truncated: false,
        provenance: None,
    };
    let r = render(&bar("region", &["revenue"], None), &rs, 100).expect("render");
    let svg = body(&r);
    let doc = roxmltree::Document::parse(svg).expect("svg");
    let titles: Vec<&str> =
        doc.descendants().filter(|n| n.attribute("class") == Some("axis-title")).filter_map(|n| n.text()).collect();
    assert_eq!(titles, ["region", "revenue"]);
}

#[test]
fn bar_legend_appears_only_with_several_series() {
    let one = render_svg(&bar("region", &["2023"], None), &sales());
    assert!(texts_with_class(&one, "legend").is_empty());
    let two = render_svg(&bar("region", &["2023", "2024"], None), &sales());
    assert_eq!(texts_with_class(&two, "legend"), ["2023", "2024"]);
}

#[test]
fn bar_chart_has_the_required_root_title_and_axes() {
    let svg = render_svg(&bar("region", &["2023"], Some("Sales & <co>")), &sales());
    assert!(svg.starts_with(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 800 450\" width=\"800\" \
         height=\"450\" role=\"img\">"
    ));
    let doc = roxmltree::Document::parse(&svg).expect("parses");
    let root = doc.root_element();
    let title = root.children().find(|n| n.has_tag_name("title")).expect("root has a <title>");
    assert_eq!(title.text(), Some("Sales & <co>"));
    assert_eq!(texts_with_class(&svg, "chart-title"), ["Sales & <co>"]);
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("axis")).count(), 2);

    let untitled = render_svg(&bar("region", &["2023", "2024"], None), &sales());
    assert!(untitled.contains("<title>Bar chart of 2023, 2024 by region</title>"));
    assert!(texts_with_class(&untitled, "chart-title").is_empty());
}

#[test]
fn bar_chart_notes_a_truncated_result() {
    let mut data = sales();
    data.truncated = true;
    let r = render(&bar("region", &["2023"], None), &data, 100).expect("renders");
    assert!(r.truncated);
    assert_eq!(r.rows_rendered, 3);
    assert_eq!(texts_with_class(body(&r), "note").len(), 1);
    let r = render(&bar("region", &["2023"], None), &sales(), 100).expect("renders");
    assert!(!r.truncated);
    assert!(texts_with_class(body(&r), "note").is_empty());
}

#[test]
fn bar_chart_is_deterministic() {
    let spec = bar("region", &["2023", "2024"], Some("Sales"));
    let a = render(&spec, &sales(), 100).expect("renders");
    let b = render(&spec, &sales(), 100).expect("renders");
    assert_eq!(a, b);
    assert_eq!(a.body, b.body);
}

#[test]
fn x_labels_are_truncated_with_an_ellipsis() {
    let long = "abcdefghijklmnopqrstuvwxyz0123456789";
    let data = rs(&["k", "v"], vec![vec![text(long), Value::Int(1)]]);
    let svg = render_svg(&bar("k", &["v"], None), &data);
    let labels = texts_with_class(&svg, "x-label");
    assert_eq!(labels, ["abcdefghijklmnopqrstuvw…"]);
    assert_eq!(labels[0].chars().count(), 24);
    // The bar keeps the whole label.
    assert_eq!(parse_bars(&svg)[0].label, long);
}

#[test]
fn x_labels_accept_numbers_and_null() {
    let data = rs(
        &["k", "v"],
        vec![
            vec![Value::Int(2024), Value::Int(1)],
            vec![Value::Float(2.5), Value::Int(1)],
            vec![Value::Null, Value::Int(1)],
        ],
    );
    let svg = render_svg(&bar("k", &["v"], None), &data);
    assert_eq!(texts_with_class(&svg, "x-label"), ["2024", "2.5", "(null)"]);
}

#[test]
fn many_groups_render_with_thinned_rotated_labels() {
    let data =
        rs(&["k", "v"], (0..MAX_BAR_GROUPS as i64).map(|i| vec![text(&format!("item {i}")), Value::Int(i)]).collect());
    let svg = render_svg(&bar("k", &["v"], None), &data);
    assert_eq!(parse_bars(&svg).len(), MAX_BAR_GROUPS);
    let labels = texts_with_class(&svg, "x-label");
    assert!(!labels.is_empty() && labels.len() < MAX_BAR_GROUPS / 2, "{}", labels.len());
    assert!(svg.contains("rotate(-45 "));
}

#[test]
fn empty_result_renders_an_empty_chart() {
    let data = rs(&["k", "v"], vec![]);
    let r = render(&bar("k", &["v"], None), &data, 10).expect("renders");
    assert_eq!(r.rows_rendered, 0);
    assert!(parse_bars(body(&r)).is_empty());
    assert_eq!(texts_with_class(body(&r), "empty"), ["No data"]);
}

// ---- bar charts: refusals ---------------------------------------------------------------

#[test]
fn bar_refuses_unknown_column_naming_available_ones() {
    let available: Vec<String> = ["region", "2023", "2024"].map(String::from).to_vec();
    let err = render(&bar("regoin", &["2023"], None), &sales(), 100).expect_err("refused");
    assert_eq!(err, RenderError::UnknownColumn { column: "regoin".into(), available: available.clone() });
    let err = render(&bar("region", &["2023", "2025"], None), &sales(), 100).expect_err("refused");
    assert_eq!(err, RenderError::UnknownColumn { column: "2025".into(), available });
    let msg = err.to_string();
    assert!(msg.contains("2025") && msg.contains("region"), "{msg}");
}

#[test]
fn bar_refuses_non_numeric_values_naming_column_and_row() {
    let data = rs(
        &["k", "v", "w"],
        vec![vec![text("a"), Value::Int(1), Value::Int(1)], vec![text("b"), Value::Int(2), text("3")]],
    );
    let err = render(&bar("k", &["v", "w"], None), &data, 100).expect_err("refused");
    assert_eq!(err, RenderError::NotNumeric { column: "w".into(), row: 1 });
    let msg = err.to_string();
    assert!(msg.contains("\"w\"") && msg.contains("row index 1"), "{msg}");

    for bad in [Value::Bytes(vec![1]), Value::Float(f64::NAN), Value::Float(f64::INFINITY)] {
        let data = rs(&["k", "v"], vec![vec![text("a"), bad]]);
        assert_eq!(
            render(&bar("k", &["v"], None), &data, 100),
            Err(RenderError::NotNumeric { column: "v".into(), row: 0 })
        );
    }
}

#[test]
fn bar_refuses_values_too_large_to_chart() {
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(f64::MAX)]]);
    assert_eq!(
        render(&bar("k", &["v"], None), &data, 100),
        Err(RenderError::OutOfRange { column: "v".into(), row: 0 })
    );
    // Large but chartable values still render, with finite geometry.
    let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(9e299)]]);
    let svg = render_svg(&bar("k", &["v"], None), &data);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert_eq!(texts_with_class(&svg, "tick").last().map(String::as_str), Some("1e300"));
}

#[test]
fn bar_refuses_too_many_groups_or_series() {
    let many = rs(&["k", "v"], (0..=MAX_BAR_GROUPS as i64).map(|i| vec![Value::Int(i), Value::Int(i)]).collect());
    assert_eq!(
        render(&bar("k", &["v"], None), &many, 10_000),
        Err(RenderError::TooManyBars { bars: MAX_BAR_GROUPS + 1, max: MAX_BAR_GROUPS })
    );
    // The agent's row policy lowers the cap: a chart carries every row's values.
    assert_eq!(render(&bar("region", &["2023"], None), &sales(), 2), Err(RenderError::TooManyBars { bars: 3, max: 2 }));

    let columns: Vec<String> = (0..=MAX_SERIES).map(|i| format!("s{i}")).collect();
    let mut all = vec!["k".to_owned()];
    all.extend(columns.iter().cloned());
    let wide = ResultSet { columns: all, rows: vec![], truncated: false, provenance: None };
    let spec = RenderSpec::Bar(BarSpec {
        x: "k".into(),
        y: columns,
        title: None,
        stacked: false,
        series: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    });
    assert_eq!(render(&spec, &wide, 10), Err(RenderError::TooManySeries { series: MAX_SERIES + 1, max: MAX_SERIES }));
    assert_eq!(render(&bar("k", &[], None), &wide, 10), Err(RenderError::NoSeries));
}

// ---- bar charts: safety -----------------------------------------------------------------

#[test]
fn svg_escapes_labels_so_no_markup_is_injected() {
    let evil = "<script>alert(1)</script>";
    let data = rs(
        &["k", "\"><script>x</script>"],
        vec![vec![text(evil), Value::Int(1)], vec![text("a\"b'c&d"), Value::Int(2)]],
    );
    let spec = bar("k", &["\"><script>x</script>", "\"><script>x</script>"], Some(evil));
    let svg = render_svg(&spec, &data);
    assert!(!svg.to_ascii_lowercase().contains("<script"), "{svg}");
    let doc = roxmltree::Document::parse(&svg).expect("parses");
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    // The label survives only as text (cut to 24 characters under the axis) and as
    // attribute values (whole).
    assert_eq!(texts_with_class(&svg, "x-label"), ["<script>alert(1)</scrip…", "a\"b'c&d"]);
    assert_eq!(texts_with_class(&svg, "chart-title"), [evil]);
    let bars = parse_bars(&svg);
    assert_eq!(bars[0].label, evil);
    assert_eq!(bars[0].series, "\"><script>x</script>");
    assert_eq!(bars[2].label, "a\"b'c&d");
}

#[test]
fn svg_stays_well_formed_with_control_characters() {
    let data = rs(&["k", "v"], vec![vec![text("a\u{0}b\u{1b}c\u{FFFF}"), Value::Int(1)]]);
    let svg = render_svg(&bar("k", &["v"], Some("t\u{7}")), &data);
    assert_eq!(parse_bars(&svg)[0].label, "a\u{FFFD}b\u{FFFD}c\u{FFFD}");
}

#[test]
fn svg_has_no_scripts_handlers_or_external_references() {
    let svg = render_svg(&bar("region", &["2023", "2024"], Some("t")), &sales());
    let doc = roxmltree::Document::parse(&svg).expect("parses");
    let allowed = ["svg", "title", "g", "rect", "line", "text"];
    for n in doc.descendants().filter(|n| n.is_element()) {
        assert!(allowed.contains(&n.tag_name().name()), "{:?}", n.tag_name());
        for a in n.attributes() {
            let name = a.name().to_ascii_lowercase();
            assert!(!name.starts_with("on"), "{name}");
            assert!(!name.contains("href") && name != "style" && name != "src", "{name}");
            assert!(!a.value().contains("url("), "{}", a.value());
        }
    }
    assert_eq!(svg.matches("http://").count(), 1, "only the SVG namespace");
}
