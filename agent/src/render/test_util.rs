//! Helpers shared by the render tests.

use outpost_protocol::{BarSpec, RenderSpec, TableFormat, TableSpec};

use super::{render, Rendered};
use crate::resultset::{ResultSet, Value};

pub(crate) fn rs(columns: &[&str], rows: Vec<Vec<Value>>) -> ResultSet {
    ResultSet { columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows, truncated: false, provenance: None }
}

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

pub(crate) fn table(format: TableFormat, max_rows: Option<u32>) -> RenderSpec {
    RenderSpec::Table(TableSpec { format, max_rows })
}

pub(crate) fn bar(x: &str, y: &[&str], title: Option<&str>) -> RenderSpec {
    RenderSpec::Bar(BarSpec {
        x: x.to_owned(),
        y: y.iter().map(|c| (*c).to_owned()).collect(),
        title: title.map(str::to_owned),
        stacked: false,
        series: None,
        format: Default::default(),
        unit: None,
        decimals: None,
    })
}

pub(crate) fn body(r: &Rendered) -> &str {
    std::str::from_utf8(&r.body).expect("rendered bodies are UTF-8")
}

pub(crate) fn json(r: &Rendered) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("table JSON parses")
}

/// Sales by region: one Text x column and two Int series.
pub(crate) fn sales() -> ResultSet {
    rs(
        &["region", "2023", "2024"],
        vec![
            vec![text("north"), Value::Int(10), Value::Int(12)],
            vec![text("south"), Value::Int(25), Value::Int(5)],
            vec![text("east"), Value::Int(40), Value::Int(0)],
        ],
    )
}

/// A parsed bar `<rect>`.
#[derive(Debug)]
pub(crate) struct ParsedBar {
    pub(crate) series: String,
    pub(crate) label: String,
    pub(crate) value: String,
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

pub(crate) fn num(n: roxmltree::Node<'_, '_>, attr: &str) -> f64 {
    n.attribute(attr).expect("bar has the attribute").parse().expect("attribute is a number")
}

pub(crate) fn parse_bars(svg: &str) -> Vec<ParsedBar> {
    let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("bar"))
        .map(|n| ParsedBar {
            series: n.attribute("data-series").unwrap_or_default().to_owned(),
            label: n.attribute("data-label").unwrap_or_default().to_owned(),
            value: n.attribute("data-value").unwrap_or_default().to_owned(),
            x: num(n, "x"),
            y: num(n, "y"),
            width: num(n, "width"),
            height: num(n, "height"),
        })
        .collect()
}

pub(crate) fn texts_with_class(svg: &str, class: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class))
        .map(|n| n.text().unwrap_or_default().to_owned())
        .collect()
}

pub(crate) fn render_svg(spec: &RenderSpec, rs: &ResultSet) -> String {
    let r = render(spec, rs, 1000).expect("chart renders");
    assert_eq!(r.content_type, "image/svg+xml");
    body(&r).to_owned()
}
