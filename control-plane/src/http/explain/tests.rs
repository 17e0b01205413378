//! A refused parameter or render option is explained: the field, what was given and
//! what is accepted, in the API's spelling (what a caller of `POST /v1/jobs` or of a
//! project's queries reads in the 400's message).

use serde_json::{json, Value};

use crate::http::{parse_json, parse_render};

/// The body of a job as far as its parameters go.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Job {
    params: Vec<outpost_protocol::Param>,
    #[serde(default)]
    cache: outpost_protocol::CacheSpec,
}

fn job_error(body: Value) -> String {
    parse_json::<Job>(body.to_string().as_bytes()).expect_err("refused").message
}

fn render_error(render: Value) -> String {
    parse_render(render).expect_err("refused").message
}

const FORMS: &str = r#"{"type":"null"}, {"type":"bool","value":true}, {"type":"int","value":5}, {"type":"float","value":2.5} or {"type":"text","value":"EMEA"}"#;

#[test]
fn a_bare_value_names_the_parameter_and_every_accepted_form() {
    assert_eq!(
        job_error(json!({ "params": ["5"] })),
        format!(
            r#"params[0]: "5" is a string, not a parameter; for $1 write {{"type":"text","value":"5"}} or, unquoted, {{"type":"int","value":5}}; a parameter is {FORMS}"#
        )
    );
    assert_eq!(
        job_error(json!({ "params": [{ "type": "int", "value": 1 }, 5] })),
        format!(
            r#"params[1]: 5 is a number, not a parameter; for $2 write {{"type":"int","value":5}}; a parameter is {FORMS}"#
        )
    );
    assert_eq!(
        job_error(json!({ "params": [null] })),
        format!(
            r#"params[0]: null was given, not a parameter; for $1 write {{"type":"null"}}; a parameter is {FORMS}"#
        )
    );
    let e = job_error(json!({ "params": ["EMEA"] }));
    let want = r#"params[0]: "EMEA" is a string, not a parameter; for $1 write {"type":"text","value":"EMEA"}; a parameter is "#;
    assert_eq!(e, format!("{want}{FORMS}"));
    let e = job_error(json!({ "params": [[1]] }));
    assert_eq!(e, format!("params[0]: [1] is a list, not a parameter; a parameter is {FORMS}"));
}

#[test]
fn a_parameter_of_the_wrong_shape_says_how_to_write_it() {
    let cases = [
        (json!({ "int": 5 }), r#"params[0]: {"int":5} gives its type as a key; for $1 write {"type":"int","value":5}"#),
        (json!({ "null": null }), r#"params[0]: {"null":null} gives its type as a key; for $1 write {"type":"null"}"#),
        (
            json!({ "type": "integer", "value": 5 }),
            r#"params[0].type: "integer" is not a parameter type; the type of $1 is one of null, bool, int, float or text (did you mean "int"?)"#,
        ),
        (
            json!({ "type": "Text", "value": "x" }),
            r#"params[0].type: "Text" is not a parameter type; the type of $1 is one of null, bool, int, float or text (did you mean "text"?)"#,
        ),
        (
            json!({ "type": "date", "value": "2026-01-31" }),
            r#"params[0].type: "date" is not a parameter type; the type of $1 is one of null, bool, int, float or text (a date, time or other value is passed as text and cast in SQL, e.g. CAST($1 AS DATE))"#,
        ),
        (
            json!({ "type": 5, "value": 5 }),
            "params[0].type: 5 is a number; the type of $1 is one of null, bool, int, float or text",
        ),
        (
            json!({ "value": 5 }),
            r#"params[0].type: missing; the type of $1 is one of null, bool, int, float or text; for $1 write {"type":"int","value":5}"#,
        ),
        (
            json!({ "type": "int", "value": "5" }),
            r#"params[0].value: "5" is a string; an int parameter takes a whole number (64-bit); for $1 write {"type":"int","value":5}"#,
        ),
        (
            json!({ "type": "int", "value": 1.5 }),
            r#"params[0].value: 1.5 is not a whole number; an int parameter takes a whole number (64-bit); or write {"type":"float","value":1.5}"#,
        ),
        (
            json!({ "type": "int", "value": 10_000_000_000_000_000_000_u64 }),
            "params[0].value: 10000000000000000000 is out of range; an int parameter takes a whole number (64-bit); \
             or write {\"type\":\"float\",\"value\":10000000000000000000}",
        ),
        (
            json!({ "type": "bool", "value": "yes" }),
            r#"params[0].value: "yes" is a string; a bool parameter takes true or false; or write {"type":"text","value":"yes"}"#,
        ),
        (
            json!({ "type": "text", "value": 5 }),
            r#"params[0].value: 5 is a number; a text parameter takes a string; or write {"type":"int","value":5}"#,
        ),
        (
            json!({ "type": "int" }),
            r#"params[0].value: missing; an int parameter carries a value, as in {"type":"int","value":5}"#,
        ),
        (
            json!({ "type": "null", "value": 5 }),
            r#"params[0].value: a null parameter carries no value; for $1 write {"type":"null"}"#,
        ),
        (
            json!({ "type": "int", "value": 5, "valeu": 6 }),
            &format!(r#"params[0].valeu: unknown field; a parameter has a "type" and a "value", as in {FORMS}"#),
        ),
    ];
    for (param, want) in cases {
        assert_eq!(job_error(json!({ "params": [param] })), want, "{param}");
    }
}

#[test]
fn a_parameter_of_a_saved_query_is_named_inside_its_query() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Project {
        queries: Vec<Job>,
    }
    let body = json!({ "queries": [{ "params": [] }, { "params": [{ "type": "text", "value": "a" }, "5"] }] });
    let e = parse_json::<Project>(body.to_string().as_bytes()).expect_err("refused");
    assert!(
        e.message.starts_with(r#"queries[1].params[1]: "5" is a string, not a parameter; for $2 write"#),
        "{}",
        e.message
    );
}

/// The explanation never contradicts the parser: it finds a problem exactly when serde
/// refuses the value.
#[test]
fn a_parameter_is_explained_exactly_when_the_parser_refuses_it() {
    let values = [
        json!({ "type": "null" }),
        json!({ "type": "null", "value": null }),
        json!({ "type": "null", "value": 1 }),
        json!({ "type": "bool", "value": false }),
        json!({ "type": "bool", "value": null }),
        json!({ "type": "int", "value": -9_223_372_036_854_775_808_i64 }),
        json!({ "type": "int", "value": 9_223_372_036_854_775_808_u64 }),
        json!({ "type": "int", "value": 5.0 }),
        json!({ "type": "int", "value": null }),
        json!({ "type": "float", "value": 5 }),
        json!({ "type": "float", "value": 1e300 }),
        json!({ "type": "float", "value": "2.5" }),
        json!({ "type": "text", "value": "" }),
        json!({ "type": "text", "value": ["a"] }),
        json!({ "type": "text" }),
        json!({ "type": "text", "value": "a", "extra": 1 }),
        json!({ "text": "a" }),
        json!({}),
        json!("a"),
        json!(true),
    ];
    for v in values {
        let parsed = serde_json::from_value::<outpost_protocol::Param>(v.clone());
        let explained = super::param(&v, 1);
        assert_eq!(parsed.is_ok(), explained.is_none(), "{v}: {parsed:?} / {explained:?}");
    }
}

#[test]
fn a_render_kind_that_is_not_one_lists_the_kinds() {
    let kinds = "one of table, scalar, bar, line, area, scatter or pie";
    assert_eq!(
        render_error(json!({ "kind": "pi", "label": "a", "value": "b" })),
        format!(r#"render.kind: "pi" is not a render kind; {kinds} (did you mean "pie"?)"#)
    );
    assert_eq!(
        render_error(json!({ "type": "bar", "x": "a", "y": ["b"] })),
        format!(r#"render.kind: missing; the kind of chart goes in "kind", not "type": {kinds}"#)
    );
    assert_eq!(render_error(json!({ "x": "a" })), format!("render.kind: missing; {kinds}"));
    assert_eq!(render_error(json!({ "kind": 5 })), format!("render.kind: 5 is a number; {kinds}"));
    // The control plane's own catalog jobs are not a kind API clients may ask for.
    assert_eq!(
        render_error(json!({ "kind": "catalog", "max_tables": 1, "max_columns": 1 })),
        format!(r#"render.kind: "catalog" is not a render kind; {kinds}"#)
    );
    assert_eq!(
        render_error(json!("bar")),
        format!(
            r#"render: "bar" is a string; a render spec is an object such as {{"kind":"bar","x":"region","y":["total"]}}, of kind {kinds}"#
        )
    );
}

#[test]
fn a_bad_render_option_says_what_the_option_takes() {
    let cases = [
        (json!({ "kind": "pie", "label": "a" }), "render: missing field `value`; a pie chart needs label and value"),
        (
            json!({ "kind": "bar", "x": "a", "y": ["b"], "colour": "red" }),
            "render.colour: unknown field; the options of a bar chart are decimals, format, series, stacked, title, unit, x and y",
        ),
        (
            json!({ "kind": "bar", "x": "a", "y": ["b"], "serie": "c" }),
            r#"render.serie: unknown field; the options of a bar chart are decimals, format, series, stacked, title, unit, x and y (did you mean "series"?)"#,
        ),
        (
            json!({ "kind": "bar", "x": "a", "y": "b" }),
            r#"render.y: "b" is a string; y of a bar chart is a list of 1 to 10 strings"#,
        ),
        (
            json!({ "kind": "line", "x": "a", "y": [5] }),
            "render.y[0]: 5 is a number; y of a line chart is a list of 1 to 10 strings",
        ),
        (json!({ "kind": "line", "x": 5, "y": ["b"] }), "render.x: 5 is a number; x of a line chart is a string"),
        (
            json!({ "kind": "scalar", "column": "a", "decimals": 300 }),
            "render.decimals: 300 is out of range; decimals of a scalar is a whole number from 0 to 10",
        ),
        (
            json!({ "kind": "scalar", "column": "a", "decimals": -1 }),
            "render.decimals: -1 is out of range; decimals of a scalar is a whole number from 0 to 10",
        ),
        (
            json!({ "kind": "table", "format": "xml" }),
            r#"render.format: "xml" is not allowed; format of a table is one of json or html"#,
        ),
        (
            json!({ "kind": "table", "format": "HTML" }),
            r#"render.format: "HTML" is not allowed (did you mean "html"?); format of a table is one of json or html"#,
        ),
        (
            json!({ "kind": "table", "max_rows": "10" }),
            r#"render.max_rows: "10" is a string; max_rows of a table is a whole number from 0 to 4294967295"#,
        ),
        (
            json!({ "kind": "bar", "x": "a", "y": ["b"], "stacked": "yes" }),
            r#"render.stacked: "yes" is a string; stacked of a bar chart is true or false"#,
        ),
    ];
    for (render, want) in cases {
        assert_eq!(render_error(render.clone()), want, "{render}");
    }
}

#[test]
fn other_fields_name_json_types_not_rust_types() {
    let e = job_error(json!({ "params": [], "cache": { "max_age_secs": -1 } }));
    assert_eq!(
        e,
        "cache.max_age_secs: invalid value: integer `-1`, expected a whole number from 0 to 18446744073709551615"
    );
    let e = job_error(json!({ "params": { "a": 1 } }));
    assert_eq!(e, "params: invalid type: object, expected a list");
}
