//! Rebuilds an agent's SVG from an allow-list before the console shows it.
//!
//! An agent is not trusted to produce safe markup: a compromised one could put
//! `<script>`, `onload=`, `<foreignObject>` or a `javascript:` link into a chart. The
//! console therefore never passes an agent's bytes through. It parses them as XML and
//! writes a new document holding only drawing elements and presentation attributes, with
//! every text and attribute value escaped again. Anything else is dropped and counted so
//! the page can say so. The console's Content-Security-Policy (no inline script) is the
//! second wall.

use std::fmt::Write as _;

/// Elements kept (SVG namespace only); any other element is dropped with its subtree.
const ELEMENTS: &[&str] =
    &["svg", "g", "rect", "line", "polyline", "polygon", "path", "circle", "ellipse", "text", "tspan", "title", "desc"];

/// Attributes kept on any kept element, besides `data-*`.
const ATTRIBUTES: &[&str] = &[
    "viewBox",
    "width",
    "height",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "rx",
    "ry",
    "d",
    "points",
    "transform",
    "fill",
    "fill-opacity",
    "stroke",
    "stroke-width",
    "stroke-dasharray",
    "stroke-linecap",
    "stroke-linejoin",
    "opacity",
    "text-anchor",
    "dominant-baseline",
    "font-family",
    "font-size",
    "font-weight",
    "class",
    "role",
    "aria-label",
    "preserveAspectRatio",
];

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// Largest SVG the console inlines.
pub const MAX_SVG_BYTES: usize = 4 * 1024 * 1024;

/// A sanitised SVG and what was taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clean {
    /// The rebuilt document: safe to put into an HTML page.
    pub svg: String,
    /// Elements dropped (with their subtrees).
    pub dropped_elements: usize,
    /// Attributes dropped.
    pub dropped_attributes: usize,
}

/// Why an SVG could not be shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SvgError {
    /// Larger than [`MAX_SVG_BYTES`].
    #[error("the SVG is larger than {MAX_SVG_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8 or not well-formed XML (roxmltree also refuses DTDs with entities).
    #[error("the SVG is not well-formed XML: {0}")]
    Malformed(String),
    /// The root is not an SVG element.
    #[error("the document's root is not an <svg> element")]
    NotSvg,
}

/// Sanitises `bytes` from an agent.
pub fn sanitise(bytes: &[u8]) -> Result<Clean, SvgError> {
    if bytes.len() > MAX_SVG_BYTES {
        return Err(SvgError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| SvgError::Malformed(e.to_string()))?;
    let opts = roxmltree::ParsingOptions { allow_dtd: false, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| SvgError::Malformed(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "svg" || root.tag_name().namespace() != Some(SVG_NS) {
        return Err(SvgError::NotSvg);
    }
    let mut out = Clean { svg: String::with_capacity(text.len()), dropped_elements: 0, dropped_attributes: 0 };
    write_node(root, &mut out, 0);
    Ok(out)
}

fn write_node(node: roxmltree::Node<'_, '_>, out: &mut Clean, depth: usize) {
    let name = node.tag_name().name();
    if depth > 64 || node.tag_name().namespace() != Some(SVG_NS) || !ELEMENTS.contains(&name) {
        out.dropped_elements += 1;
        return;
    }
    out.svg.push('<');
    out.svg.push_str(name);
    if depth == 0 {
        out.svg.push_str(" xmlns=\"http://www.w3.org/2000/svg\"");
    }
    for a in node.attributes() {
        let an = a.name();
        let allowed = a.namespace().is_none()
            && (ATTRIBUTES.contains(&an)
                || (an.len() > 5
                    && an.starts_with("data-")
                    && an[5..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')));
        // No functional notation (`url(…)` could load something) and no CSS escapes in
        // values, except `transform`'s own functions.
        let v = a.value();
        let safe_value = !v.contains('\\')
            && if an == "transform" { !v.to_ascii_lowercase().contains("url") } else { !v.contains('(') };
        if !allowed || !safe_value {
            out.dropped_attributes += 1;
            continue;
        }
        let _ = write!(out.svg, " {an}=\"{}\"", escape(a.value()));
    }
    out.svg.push('>');
    for child in node.children() {
        if child.is_element() {
            write_node(child, out, depth + 1);
        } else if child.is_text() {
            out.svg.push_str(&escape(child.text().unwrap_or_default()));
        }
        // Comments and processing instructions are dropped silently.
    }
    let _ = write!(out.svg, "</{name}>");
}

/// Escapes text for an XML/HTML text node or a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_chart_and_drops_script_handlers_and_foreign_content() {
        let evil = r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10" onload="alert(1)">
<script>alert(2)</script><title>T &lt;b&gt;</title>
<rect class="bar" x="1" y="2" width="3" height="4" fill="#123456" data-label="North" onclick="x()" style="fill:red"/>
<a xlink:href="javascript:alert(3)"><text x="1" y="1">link</text></a>
<foreignObject><div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(4)"/></div></foreignObject>
<rect fill="url(https://evil.example/x)"/><rect fill="URL(/x)"/><rect fill="u\72 l(/x)"/><g transform="translate(1 2)"/><!-- c --><set attributeName="onload" to="alert(5)"/>
</svg>"##;
        let c = sanitise(evil.as_bytes()).expect("parses");
        for bad in
            ["script", "onload", "onclick", "javascript", "foreignObject", "style", "url(", "<a", "<set", "alert"]
        {
            assert!(!c.svg.contains(bad), "{bad} survived: {}", c.svg);
        }
        assert!(c
            .svg
            .contains(r##"<rect class="bar" x="1" y="2" width="3" height="4" fill="#123456" data-label="North">"##));
        assert!(c.svg.contains("<title>T &lt;b&gt;</title>"));
        assert_eq!(c.dropped_elements, 4, "script, a, foreignObject, set");
        assert_eq!(c.dropped_attributes, 6, "onload, onclick, style, and three url()");
        assert!(c.svg.contains(r#"<g transform="translate(1 2)"></g>"#), "{}", c.svg);
        // The output parses again and is stable.
        assert_eq!(sanitise(c.svg.as_bytes()).expect("re-parses").svg, c.svg);
    }

    #[test]
    fn refuses_what_is_not_an_svg() {
        assert_eq!(sanitise(b"<html/>"), Err(SvgError::NotSvg));
        assert_eq!(sanitise(b"<svg/>"), Err(SvgError::NotSvg), "no SVG namespace");
        assert!(matches!(sanitise(b"<svg"), Err(SvgError::Malformed(_))));
        let bomb = b"<!DOCTYPE svg [<!ENTITY a \"aaaa\">]><svg xmlns=\"http://www.w3.org/2000/svg\">&a;</svg>";
        assert!(matches!(sanitise(bomb), Err(SvgError::Malformed(_))), "DTDs are refused");
        assert!(matches!(sanitise(&[0xff, 0xfe]), Err(SvgError::Malformed(_))));
    }
}
