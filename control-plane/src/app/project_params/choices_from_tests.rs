use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::app::project_params::{checked, resolve, Val};

fn one(v: Value) -> Result<Vec<Parameter>, String> {
    checked(&[v]).map_err(|e| e.message)
}

fn region() -> Vec<Parameter> {
    one(json!({ "name": "region", "kind": "choice", "choices_from": { "query": 1, "column": "region" } })).expect("ok")
}

fn day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 3, 31).expect("date")
}

#[test]
fn the_shape_is_checked_naming_the_field() {
    let p = region();
    let Kind::Choice { choices, default, choices_from } = &p[0].kind else { panic!("a choice") };
    assert!(choices.is_empty() && default.is_empty());
    assert_eq!(choices_from, &Some(ChoicesFrom { query: 1, column: "region".into() }));
    let stored = crate::app::project_params::to_json(&p).expect("json");
    assert_eq!(crate::app::project_params::parse_stored(&stored), p, "stored and read back");
    for (v, starts) in [
        (json!({ "query": "a", "column": "x" }), "parameters[0].choices_from.query: "),
        (json!({ "query": 0 }), "parameters[0].choices_from.column: "),
        (json!({ "query": 0, "column": " " }), "parameters[0].choices_from.column: "),
        (json!({ "query": 0, "column": "x", "sort": 1 }), "parameters[0].choices_from.sort: unknown field"),
        (json!([0, "x"]), "parameters[0].choices_from: must be"),
    ] {
        let m = one(json!({ "name": "r", "kind": "choice", "choices_from": v })).expect_err("refused");
        assert!(m.starts_with(starts), "{m}");
    }
    let m =
        one(json!({ "name": "r", "kind": "choice", "choices": ["a"], "choices_from": { "query": 0, "column": "x" } }))
            .expect_err("both");
    assert!(m.starts_with("parameters[0].choices: give either choices or choices_from"), "{m}");
}

#[test]
fn the_source_query_must_exist_be_a_table_and_not_bind_the_parameter() {
    let p = region();
    let none = BTreeMap::new();
    let binds: BTreeMap<String, String> = [("1".to_owned(), "region".to_owned())].into();
    assert!(check_choices_from(&p, &[("table", &binds), ("table", &none)]).is_ok());
    for (queries, says) in [
        (vec![("table", &binds)], "there is no query 1 (the project has 1, counted from 0)"),
        (vec![("table", &binds), ("bar", &none)], "query 1 renders bar; choices come from a table query"),
        (vec![("table", &none), ("table", &binds)], "query 1 binds \"region\" itself"),
    ] {
        let m = check_choices_from(&p, &queries).expect_err("refused").message;
        assert!(m.starts_with(&format!("parameters[0].choices_from.query: {says}")), "{m}");
    }
}

#[test]
fn distinct_values_keep_the_result_order_and_cap() {
    let r =
        json!({ "columns": ["region", "n"], "rows": [["North", 1], ["South", 2], ["North", 3], [null, 4], [7, 5]] });
    assert_eq!(distinct_values(&r, "region"), ["North", "South", "7"]);
    assert!(distinct_values(&r, "nope").is_empty());
    let many: Vec<Value> = (0..300).map(|i| json!([format!("v{i}")])).collect();
    let r = json!({ "columns": ["c"], "rows": many });
    let got = distinct_values(&r, "c");
    assert_eq!((got.len(), got[0].as_str(), got[199].as_str()), (200, "v0", "v199"));
}

#[test]
fn run_values_must_be_current_choices() {
    let p = region();
    let current = |c: Option<&[&str]>| -> Current {
        [("region".to_owned(), c.map(|c| c.iter().map(|s| (*s).to_owned()).collect()))].into()
    };
    let run = |given: Value, now: &Current| {
        let mut f = resolve(&p, Some(&given), day()).map_err(|e| e.message)?;
        apply(&p, &mut f, Some(&given), now).map_err(|e| e.message)?;
        Ok::<_, String>(f.get("region").cloned())
    };
    let now = current(Some(&["North", "South"]));
    assert_eq!(run(json!({ "region": "South" }), &now), Ok(Some(Val::Text("South".into()))));
    assert_eq!(run(json!({}), &now), Ok(Some(Val::Text("North".into()))), "no default: the first choice");
    assert_eq!(
        run(json!({ "region": "West" }), &now),
        Err("filters.region: \"West\" is not one of its choices (North, South)".into())
    );
    let m = run(json!({ "region": "North" }), &current(None)).expect_err("no result yet");
    assert!(m.contains("run the dashboard once to fill it"), "{m}");
    assert_eq!(run(json!({}), &current(None)), Ok(Some(Val::Text(String::new()))), "the first run still runs");
    let shown = shown(&p, &now);
    assert_eq!(shown[0]["choices"], json!(["North", "South"]));
}
