//! The document's render, parameter and cache schemas agree with the server's parser:
//! for every render kind and parameter type, objects built from the schema (its example,
//! its required fields only, every field, each nullable field null) are accepted, and
//! objects that break it (an unknown field, a required one missing, each type and bound
//! broken) are refused with an error naming the field.

use serde_json::{json, Value};

use crate::http::{parse_json, parse_render, parse_value_at};

/// A body with parameters only.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Params {
    params: Vec<outpost_protocol::Param>,
}

/// `schema` with a `$ref` (or a lone `allOf` of one) followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let target = schema["$ref"].as_str().or_else(|| schema["allOf"][0]["$ref"].as_str());
    match target.and_then(|t| t.strip_prefix("#/components/schemas/")) {
        Some(name) => resolve(doc, &doc["components"]["schemas"][name]),
        None => schema,
    }
}

/// A value the schema allows, named after the property (so columns differ).
fn sample(doc: &Value, schema: &Value, name: &str) -> Value {
    let s = resolve(doc, schema);
    if let Some(first) = s["enum"].get(0) {
        return first.clone();
    }
    if let Some(first) = s["oneOf"].get(0) {
        return sample(doc, first, name);
    }
    match s["type"].as_str() {
        Some("string") => json!(name),
        Some("integer") => [&s["maximum"], &s["minimum"]].into_iter().find(|v| v.is_u64()).cloned().unwrap_or(json!(5)),
        Some("number") => json!(2.5),
        Some("boolean") => json!(true),
        Some("array") => json!([sample(doc, &s["items"], name)]),
        other => panic!("{name}: no sample for {other:?}"),
    }
}

/// Objects the schema accepts: its example, its required fields only, every field,
/// and every field with each nullable one null.
fn valid_objects(doc: &Value, s: &Value) -> Vec<Value> {
    let props = s["properties"].as_object().cloned().unwrap_or_default();
    let required: Vec<&str> = s["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let full: serde_json::Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), sample(doc, p, k))).collect();
    let minimal: serde_json::Map<String, Value> =
        full.iter().filter(|(k, _)| required.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut out = vec![s["example"].clone(), Value::Object(minimal), Value::Object(full.clone())];
    for (k, p) in &props {
        if p["nullable"] == json!(true) {
            let mut with_null = full.clone();
            with_null.insert(k.clone(), Value::Null);
            out.push(Value::Object(with_null));
        }
    }
    out
}

/// Objects the schema refuses, each with what breaks it: an unknown field, a
/// required field missing, and each stated bound or type broken.
fn invalid_objects(doc: &Value, s: &Value) -> Vec<(String, Value)> {
    let props = s["properties"].as_object().cloned().unwrap_or_default();
    let full: serde_json::Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), sample(doc, p, k))).collect();
    let with = |k: &str, v: Value| {
        let mut o = full.clone();
        o.insert(k.to_owned(), v);
        Value::Object(o)
    };
    let mut out = vec![("an unknown field".to_owned(), with("colour", json!("red")))];
    for r in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let mut o = full.clone();
        o.remove(r);
        out.push((format!("no {r}"), Value::Object(o)));
    }
    for (k, p) in &props {
        let p = resolve(doc, p);
        let mut broken = Vec::new();
        match p["type"].as_str() {
            Some("string") => broken.push(("a number for a string", json!(5))),
            Some("integer") | Some("number") => broken.push(("a string for a number", json!("5"))),
            Some("boolean") => broken.push(("a string for a boolean", json!("true"))),
            Some("array") => broken.push(("a string for an array", json!("y"))),
            _ => {}
        }
        if let Some(max) = p["maximum"].as_u64() {
            broken.push(("above its maximum", max.checked_add(1).map_or(json!(1.9e19), |m| json!(m))));
        }
        if p["minimum"].as_u64() == Some(0) {
            broken.push(("below its minimum", json!(-1)));
        }
        if let Some(n) = p["maxLength"].as_u64() {
            broken.push(("longer than its maxLength", json!("é".repeat(n as usize + 1))));
        }
        if p["minItems"].as_u64() == Some(1) {
            broken.push(("fewer than minItems", json!([])));
        }
        if let Some(n) = p["maxItems"].as_u64() {
            broken.push(("more than maxItems", json!((0..=n).map(|i| format!("c{i}")).collect::<Vec<_>>())));
        }
        if p["enum"].is_array() || p["oneOf"].is_array() {
            broken.push(("a value outside its enum", json!("xml")));
        }
        out.extend(broken.into_iter().map(|(why, v)| (format!("{k}: {why}"), with(k, v))));
    }
    out
}

fn variants(doc: &Value, name: &str) -> Vec<Value> {
    let schema = &doc["components"]["schemas"][name];
    let one_of = schema["oneOf"].as_array().cloned().unwrap_or_default();
    assert_eq!(one_of.len(), schema["discriminator"]["mapping"].as_object().map_or(0, |m| m.len()), "{name}");
    one_of.iter().map(|v| resolve(doc, v).clone()).collect()
}

#[test]
fn every_documented_render_kind_is_what_the_server_parses_and_no_more() {
    let doc = super::document();
    let kinds = variants(&doc, "RenderSpec");
    assert_eq!(kinds.len(), outpost_protocol::RENDER_KINDS.len());
    for kind in &kinds {
        let name = kind["properties"]["kind"]["enum"][0].as_str().expect("a kind").to_owned();
        assert_eq!(kind["additionalProperties"], json!(false), "{name}");
        for ok in valid_objects(&doc, kind) {
            let spec = parse_render(ok.clone()).unwrap_or_else(|e| panic!("{name}: {ok} refused: {}", e.message));
            assert_eq!(spec.kind(), name);
        }
        for (why, bad) in invalid_objects(&doc, kind) {
            let e = parse_render(bad.clone()).expect_err(&format!("{name}, {why}: {bad} accepted"));
            assert!(e.message.starts_with("render"), "{name}, {why}: {}", e.message);
            assert!(!e.message.contains("expected"), "{name}, {why}: serde's words, not explained: {}", e.message);
        }
    }
    // What the schema cannot say: a series column takes exactly one y column.
    let e = parse_render(json!({ "kind": "bar", "x": "m", "y": ["a", "b"], "series": "r" })).expect_err("two y");
    assert!(e.message.starts_with("render.series: "), "{}", e.message);
}

#[test]
fn every_documented_parameter_and_cache_form_is_what_the_server_parses() {
    let doc = super::document();
    let types = variants(&doc, "Param");
    assert_eq!(types.len(), 5);
    for t in &types {
        // Through a body, as `POST /v1/jobs` and a project's queries parse them.
        let parse = |p: Value| parse_json::<Params>(json!({ "params": [p] }).to_string().as_bytes());
        for ok in valid_objects(&doc, t) {
            parse(ok.clone()).unwrap_or_else(|e| panic!("{ok} refused: {}", e.message));
        }
        for (why, bad) in invalid_objects(&doc, t) {
            // Any JSON number is a float; a string "5" is not.
            if t["properties"]["type"]["enum"][0] == "float" && why == "value: a string for a number" {
                assert!(parse(bad).is_err());
                continue;
            }
            let e = parse(bad.clone()).expect_err(&format!("{why}: {bad} accepted"));
            assert!(e.message.starts_with("params[0]"), "{}", e.message);
            assert!(!e.message.contains("expected"), "serde's words, not explained: {}", e.message);
        }
    }
    let cache = resolve(&doc, &doc["components"]["schemas"]["CacheSpec"]).clone();
    for ok in valid_objects(&doc, &cache).into_iter().chain([json!({})]) {
        parse_value_at::<outpost_protocol::CacheSpec>(ok.clone(), "cache")
            .unwrap_or_else(|e| panic!("{ok}: {}", e.message));
    }
    for (why, bad) in invalid_objects(&doc, &cache) {
        parse_value_at::<outpost_protocol::CacheSpec>(bad.clone(), "cache").expect_err(&format!("{why}: {bad}"));
    }
    // Both request bodies that carry a job refer to these components.
    let dispatch = &doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let saved = &doc["components"]["schemas"]["ProjectQuery"];
    for body in [dispatch, saved] {
        assert_eq!(body["properties"]["render"]["$ref"], "#/components/schemas/RenderSpec");
        assert_eq!(body["properties"]["params"]["items"]["$ref"], "#/components/schemas/Param");
        assert_eq!(body["properties"]["cache"]["$ref"], "#/components/schemas/CacheSpec");
    }
}
