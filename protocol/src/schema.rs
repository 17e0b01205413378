//! OpenAPI 3.0 schemas of the job shapes an API client writes: the render spec, the
//! parameters and the cache instructions.
//!
//! They are derived from the very types serde parses (`schemars`, from the same
//! attributes and doc comments), so the document cannot drift from the parser: unknown
//! fields are refused where serde refuses them, optional fields are nullable where serde
//! takes `null`, and the bounds that [`RenderSpec::check`](crate::RenderSpec::check)
//! enforces are stated as `minItems`, `maximum` and `maxLength`. The tagged enums are
//! split into one component per variant with a `discriminator`, which is what OpenAPI
//! tools understand; each variant carries an `example` that the control plane's tests
//! feed to its own parser.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::{CacheSpec, Param, RenderSpec};

/// Component name of each render kind, with an example the server accepts.
fn render_examples() -> [(&'static str, &'static str, Value); 7] {
    [
        ("table", "TableRender", json!({ "kind": "table", "format": "html", "max_rows": 100 })),
        (
            "scalar",
            "ScalarRender",
            json!({ "kind": "scalar", "column": "revenue", "label": "Revenue", "decimals": 0, "unit": " EUR" }),
        ),
        (
            "bar",
            "BarRender",
            json!({ "kind": "bar", "x": "month", "y": ["revenue"], "series": "region", "stacked": true,
                    "title": "Revenue by region" }),
        ),
        ("line", "LineRender", json!({ "kind": "line", "x": "day", "y": ["orders", "returns"], "max_points": 2000 })),
        ("area", "AreaRender", json!({ "kind": "area", "x": "day", "y": ["revenue"], "title": "Revenue" })),
        ("scatter", "ScatterRender", json!({ "kind": "scatter", "x": "price", "y": ["units"] })),
        ("pie", "PieRender", json!({ "kind": "pie", "label": "region", "value": "revenue" })),
    ]
}

/// Component name of each parameter type, with an example.
fn param_examples() -> [(&'static str, &'static str, Value); 5] {
    [
        ("null", "NullParam", json!({ "type": "null" })),
        ("bool", "BoolParam", json!({ "type": "bool", "value": true })),
        ("int", "IntParam", json!({ "type": "int", "value": 5 })),
        ("float", "FloatParam", json!({ "type": "float", "value": 2.5 })),
        ("text", "TextParam", json!({ "type": "text", "value": "EMEA" })),
    ]
}

fn reference(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// The schemas, by component name: `RenderSpec` (and one `…Render` per kind, and
/// `TableFormat`), `Param` (and one `…Param` per type) and `CacheSpec`. References
/// between them point into `#/components/schemas/`.
pub fn openapi_components() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<RenderSpec>();
    generator.subschema_for::<Param>();
    generator.subschema_for::<CacheSpec>();
    let mut defs = generator.take_definitions(true);
    split(&mut defs, "RenderSpec", "kind", "What is rendered: one of", &render_examples());
    split(&mut defs, "Param", "type", "The parameter's type: one of", &param_examples());
    if let Some(cache) = defs.get_mut("CacheSpec") {
        cache["example"] = json!({ "max_age_secs": 300 });
    }
    for schema in defs.values_mut() {
        bound_unsigned(schema);
    }
    defs
}

/// Replaces the `oneOf` of an internally or adjacently tagged enum by references to one
/// component per variant, with a discriminator on `tag`, described as `about` and the
/// list of wire names.
fn split(defs: &mut Map<String, Value>, name: &str, tag: &str, about: &str, variants: &[(&str, &str, Value)]) {
    let Some(Value::Array(one_of)) = defs.get_mut(name).and_then(|s| s.get_mut("oneOf")).map(Value::take) else {
        return;
    };
    let mut refs = Vec::new();
    let mut mapping = Map::new();
    let wire_names: Vec<&str> = variants.iter().map(|(w, _, _)| *w).collect();
    for mut variant in one_of {
        let wire = variant["properties"][tag]["enum"][0].as_str().unwrap_or_default().to_owned();
        let Some((_, component, example)) = variants.iter().find(|(w, _, _)| *w == wire) else { continue };
        variant["example"] = example.clone();
        variant["properties"][tag]["description"] =
            Value::String(format!("{about} {}; `{wire}` here.", wire_names.join(", ")));
        refs.push(json!({ "$ref": reference(component) }));
        mapping.insert(wire, Value::String(reference(component)));
        defs.insert((*component).to_owned(), variant);
    }
    if let Some(schema) = defs.get_mut(name) {
        schema["oneOf"] = Value::Array(refs);
        schema["discriminator"] = json!({ "propertyName": tag, "mapping": mapping });
    }
}

/// States the upper bound of the unsigned integers serde takes (`u32`, `u64`), which
/// schemars leaves open.
fn bound_unsigned(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("uint32") => Some(json!(u32::MAX)),
                Some("uint64") => Some(json!(u64::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                map.entry("maximum").or_insert(max);
            }
            map.values_mut().for_each(bound_unsigned);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_unsigned),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_parameter_type_has_a_component_and_a_parsable_example() {
        let defs = openapi_components();
        let kinds: Vec<&str> = defs["RenderSpec"]["discriminator"]["mapping"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut sorted = crate::RENDER_KINDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(kinds, sorted);
        for (_, component, _) in render_examples() {
            let example = defs[component]["example"].clone();
            let spec: RenderSpec = serde_json::from_value(example).expect("the example parses");
            assert_eq!(spec.check(), Ok(()), "{component}");
            assert_eq!(defs[component]["additionalProperties"], json!(false), "{component}");
        }
        for (_, component, _) in param_examples() {
            let example = defs[component]["example"].clone();
            serde_json::from_value::<Param>(example).expect("the example parses");
        }
        assert_eq!(defs["CacheSpec"]["properties"]["max_age_secs"]["maximum"], json!(u64::MAX));
    }
}
