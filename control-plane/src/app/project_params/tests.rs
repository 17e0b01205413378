use super::*;
use outpost_protocol::Param;
use serde_json::json;

fn params(v: Value) -> Result<Vec<Parameter>, String> {
    checked(v.as_array().expect("list")).map_err(|e| e.message)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn sample() -> Vec<Parameter> {
    params(json!([
        { "name": "region", "label": "Region", "kind": "choice", "choices": ["EU", "US"], "default": "EU" },
        { "name": "period", "kind": "date_range", "default": { "last_days": 30 } },
        { "name": "min_total", "kind": "number", "integer": true, "min": 0, "default": 10 },
        { "name": "q", "kind": "text" },
    ]))
    .expect("valid")
}

fn bind(v: Value) -> BTreeMap<String, String> {
    serde_json::from_value(v).expect("bind")
}

#[test]
fn parameters_are_checked_and_defaulted() {
    let p = sample();
    assert_eq!(p[0].label, "Region");
    assert_eq!(p[1].label, "period", "the label defaults to the name");
    assert_eq!(p[3].kind, Kind::Text { default: String::new() });
    let stored = to_json(&p).expect("json");
    assert_eq!(parse_stored(&stored), p, "stored and read back");
    assert!(stored.contains(r#""kind":"choice""#), "{stored}");
    // Defaults: relative dates read on the day given.
    let f = resolve(&p, None, day("2026-03-31")).expect("defaults");
    assert_eq!(f.get("period"), Some(&Val::Dates(day("2026-03-02"), day("2026-03-31"))));
    assert_eq!(f.get("region"), Some(&Val::Text("EU".into())));
    assert_eq!(
        f.to_json(),
        json!({ "min_total": 10, "period": { "from": "2026-03-02", "to": "2026-03-31" }, "q": "", "region": "EU" })
    );
    // A choice without a default takes its first; a fixed date range.
    let p = params(json!([{ "name": "c", "kind": "choice", "choices": ["b", "a"] },
                          { "name": "d", "kind": "date_range", "default": { "from": "2026-01-01", "to": "2026-02-01" } }]))
    .expect("ok");
    let f = resolve(&p, None, day("2026-03-31")).expect("defaults");
    assert_eq!(
        (f.get("c"), f.get("d")),
        (Some(&Val::Text("b".into())), Some(&Val::Dates(day("2026-01-01"), day("2026-02-01"))))
    );
}

#[test]
fn each_bad_parameter_is_named() {
    let bad = |v: Value, starts: &str| {
        let m = params(v).expect_err("refused");
        assert!(m.starts_with(starts), "{m}");
        m
    };
    let m = bad(
        json!([{ "name": "a", "kind": "text" }, { "name": "region", "kind": "choice", "choices": ["EU", "US"], "default": "APAC" }]),
        "parameters[1].default: ",
    );
    assert!(m.contains("\"APAC\" is not one of its choices (EU, US)"), "{m}");
    let m = bad(json!([{ "name": "r", "kind": "choise", "choices": ["a"] }]), "parameters[0].kind: ");
    assert!(m.contains("did you mean \"choice\""), "{m}");
    bad(json!([{ "name": "Region", "kind": "text" }]), "parameters[0].name: ");
    bad(json!([{ "name": "a", "kind": "text" }, { "name": "a", "kind": "text" }]), "parameters[1].name: ");
    bad(json!([{ "name": "a", "kind": "choice", "choices": [] }]), "parameters[0].choices: ");
    bad(json!([{ "name": "a", "kind": "choice", "choices": ["x", "x"] }]), "parameters[0].choices[1]: ");
    bad(json!([{ "name": "a", "kind": "text", "choices": ["x"] }]), "parameters[0].choices: unknown field");
    bad(
        json!([{ "name": "a", "kind": "text", "default": "x".repeat(201) }]),
        "parameters[0].default: is 201 characters",
    );
    bad(json!([{ "name": "a", "kind": "number", "min": 5, "max": 1 }]), "parameters[0].max: ");
    bad(
        json!([{ "name": "a", "kind": "number", "integer": true, "default": 1.5 }]),
        "parameters[0].default: 1.5 is not a whole",
    );
    let m = bad(
        json!([{ "name": "p", "kind": "date_range", "default": { "from": "2026-02-01", "to": "2026-01-01" } }]),
        "parameters[0].default: ",
    );
    assert!(m.contains("after"), "{m}");
    bad(
        json!([{ "name": "p", "kind": "date_range", "default": { "from": "2026-13-01", "to": "2026-01-01" } }]),
        "parameters[0].default.from: ",
    );
    bad(
        json!([{ "name": "p", "kind": "date_range", "default": { "last_days": 0 } }]),
        "parameters[0].default.last_days: ",
    );
    let many: Vec<Value> = (0..=MAX_PARAMETERS).map(|i| json!({ "name": format!("p{i}"), "kind": "text" })).collect();
    bad(Value::Array(many), "parameters: give at most 20");
}

#[test]
fn bindings_are_checked_against_parameters_params_and_the_customer() {
    let p = sample();
    let check =
        |b: Value, n: usize, c: Option<u16>| check_bind("queries[0].bind", &bind(b), &p, n, c).map_err(|e| e.message);
    assert!(check(json!({ "2": "region", "3": "period.from", "4": "period.to" }), 1, None).is_ok());
    assert!(check(json!({ "1": "region" }), 1, None).is_ok(), "replaces a param");
    assert!(check(json!({ "3": "q" }), 1, Some(2)).is_ok(), "after the customer's position");
    let m = check(json!({ "2": "regon" }), 1, None).expect_err("typo");
    assert_eq!(m, "queries[0].bind.2: no parameter \"regon\" (did you mean \"region\"?)");
    let m = check(json!({ "2": "region" }), 1, Some(2)).expect_err("clash");
    assert!(m.starts_with("queries[0].bind.2: position 2 is customer_param's"), "{m}");
    let m = check(json!({ "3": "region" }), 1, None).expect_err("gap");
    assert!(m.starts_with("queries[0].bind.3: position 2 would have no value"), "{m}");
    let m = check(json!({ "2": "period" }), 1, None).expect_err("which end");
    assert!(m.contains("bind period.from or period.to"), "{m}");
    check(json!({ "2": "region.from" }), 1, None).expect_err("not a range");
    let m = check(json!({ "x": "region" }), 1, None).expect_err("not a position");
    assert!(m.starts_with("queries[0].bind.x: "), "{m}");
    check(json!({ "0": "region" }), 1, None).expect_err("1-based");
}

#[test]
fn filters_are_checked_by_kind_and_named() {
    let p = sample();
    let today = day("2026-03-31");
    let bad = |v: Value, starts: &str| {
        let m = resolve(&p, Some(&v), today).expect_err("refused").message;
        assert!(m.starts_with(starts), "{m}");
    };
    bad(json!({ "region": "APAC" }), "filters.region: \"APAC\" is not one of its choices");
    bad(json!({ "regon": "US" }), "filters.regon: no parameter \"regon\" (did you mean \"region\"?)");
    bad(json!({ "min_total": -1 }), "filters.min_total: -1 is below");
    bad(json!({ "min_total": 2.5 }), "filters.min_total: 2.5 is not a whole number");
    bad(json!({ "min_total": "x" }), "filters.min_total: must be a number");
    bad(
        json!({ "period": { "from": "2026-02-01", "to": "2026-01-01" } }),
        "filters.period: from (2026-02-01) is after",
    );
    bad(json!({ "period": "2026-01-01" }), "filters.period: must be");
    bad(json!({ "period": { "from": "2026-01-01" } }), "filters.period.to: is required");
    bad(json!([]), "filters: must be an object");
    let f = resolve(&p, Some(&json!({ "region": "US", "period": "2026-01-01..2026-02-01", "min_total": "7" })), today)
        .expect("valid, the URL's forms too");
    assert_eq!(f.get("min_total"), Some(&Val::Num(7.0)));
    assert_eq!(f.get("period").map(Val::to_url).as_deref(), Some("2026-01-01..2026-02-01"));
}

#[test]
fn values_go_into_their_positions_typed_and_jobs_record_what_their_query_binds() {
    let p = sample();
    let today = day("2026-03-31");
    let f =
        resolve(&p, Some(&json!({ "region": "US", "period": { "from": "2026-01-01", "to": "2026-02-01" } })), today)
            .expect("ok");
    let b = bind(json!({ "1": "region", "3": "period.from", "4": "period.to", "5": "min_total" }));
    let got = bind_params(vec![Param::Text("x".into()), Param::Bool(true)], &b, &p, &f).expect("bound");
    assert_eq!(
        got,
        [
            Param::Text("US".into()),
            Param::Bool(true),
            Param::Text("2026-01-01".into()),
            Param::Text("2026-02-01".into()),
            Param::Int(10),
        ]
    );
    // The key is of the bound parameters only: another text value changes nothing here.
    let other =
        resolve(&p, Some(&json!({ "region": "US", "period": "2026-01-01..2026-02-01", "q": "z" })), today).expect("ok");
    assert_eq!(filters_key(&b, &f), filters_key(&b, &other));
    let eu = resolve(&p, Some(&json!({ "region": "EU", "period": "2026-01-01..2026-02-01" })), today).expect("ok");
    assert_ne!(filters_key(&b, &f), filters_key(&b, &eu));
    assert_eq!(filters_key(&b, &f).map(|k| k.len()), Some(64), "a sha256, hex");
    assert_eq!(filters_key(&BTreeMap::new(), &f), None, "a query binding nothing records none, as jobs before filters");
    // A float parameter is bound as a float.
    let fp = params(json!([{ "name": "x", "kind": "number", "default": 2.5 }])).expect("ok");
    let v = resolve(&fp, None, today).expect("ok");
    assert_eq!(bind_params(Vec::new(), &bind(json!({ "1": "x" })), &fp, &v).expect("ok"), [Param::Float(2.5)]);
}
