//! Unit tests of the egress policy: patterns, masks, provenance and the checks.

use outpost_protocol::{EgressAction, RenderSpec};

use super::*;
use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::{ResultSet, Value};

fn pattern(p: &str) -> ColumnPattern {
    ColumnPattern(p.to_lowercase())
}

#[test]
fn patterns_match_whole_names_case_insensitively() {
    assert!(pattern("email").matches("EMAIL"));
    assert!(!pattern("email").matches("email2"));
    assert!(pattern("*email*").matches("customer_email_address"));
    assert!(pattern("ph?ne").matches("phone"));
    assert!(!pattern("ph?ne").matches("phne"));
    assert!(pattern("*").matches(""));
    assert!(pattern("a*b*c").matches("aXXbYYc"));
    assert!(!pattern("a*b*c").matches("aXXbYY"));
}

fn policy(yaml: &str) -> EgressPolicy {
    let s: EgressSection = serde_saphyr::from_str(yaml).expect("section parses");
    EgressPolicy::resolve(&s, None)
}

fn src(table: &str, column: &str) -> SourceColumn {
    SourceColumn { schema: "public".into(), table: table.into(), column: column.into() }
}

/// Provenance of columns of table `t`: `Some(column)` for a plain column, `None` for
/// an untraceable one; the statement reads every named column.
fn traced(columns: &[Option<&str>]) -> ResultProvenance {
    ResultProvenance {
        columns: columns
            .iter()
            .map(|c| match c {
                Some(c) => Provenance::columns(vec![src("t", c)]),
                None => Provenance::unknown("an expression"),
            })
            .collect(),
        reads: Some(columns.iter().flatten().map(|c| src("t", c)).collect()),
        conditions: Some(Vec::new()),
    }
}

#[test]
fn masked_columns_in_conditions_are_refused_only_when_the_policy_says_so() {
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let allow = policy("mask:\n  - column: public.t.secret\n");
    let strict = policy("mask:\n  - column: public.t.secret\nmasked_predicates: refuse\n");
    assert_eq!(allow.masked_predicates, MaskedPredicates::Allow);
    assert_eq!(strict.masked_predicates, MaskedPredicates::Refuse);
    // `SELECT id FROM t WHERE secret LIKE 'S%'`: the default lets it run.
    let filtered = ResultProvenance {
        reads: Some(vec![src("t", "id"), src("t", "secret")]),
        conditions: Some(vec![Provenance::columns(vec![src("t", "secret")])]),
        ..traced(&[Some("id")])
    };
    assert_eq!(allow.column_masks(&names(&["id"]), Some(&filtered)).expect("allowed"), [None]);
    let err = strict.column_masks(&names(&["id"]), Some(&filtered)).expect_err("refused");
    assert_eq!(err.rule, "mask_in_predicate");
    assert!(err.detail.contains("public.t.secret in a condition"), "{}", err.detail);
    // Plain masked output, and conditions on unmasked columns, still run.
    let plain = ResultProvenance {
        conditions: Some(vec![Provenance::columns(vec![src("t", "id")])]),
        ..traced(&[Some("secret"), Some("id")])
    };
    let masks = strict.column_masks(&names(&["s", "id"]), Some(&plain)).expect("runs");
    assert_eq!(masks[0].as_ref().map(|m| m.why.as_str()), Some("from public.t.secret"));
    // A condition the agent cannot trace: refused when the statement reads (or may
    // read) a masked column, fine when it provably does not.
    let opaque = vec![Provenance::unknown("a sub-plan")];
    let with_secret = ResultProvenance { conditions: Some(opaque.clone()), ..filtered.clone() };
    assert_eq!(
        strict.column_masks(&names(&["id"]), Some(&with_secret)).expect_err("refused").rule,
        "mask_in_predicate"
    );
    let clean = ResultProvenance { conditions: Some(opaque.clone()), ..traced(&[Some("id")]) };
    assert!(strict.column_masks(&names(&["id"]), Some(&clean)).is_ok());
    let blind = ResultProvenance { reads: None, conditions: Some(opaque), ..traced(&[Some("id")]) };
    assert_eq!(strict.column_masks(&names(&["id"]), Some(&blind)).expect_err("refused").rule, "mask_in_predicate");
    // Conditions the connector cannot read (MySQL/MariaDB), or no provenance: refused.
    let mariadb = ResultProvenance { conditions: None, ..traced(&[Some("id")]) };
    assert_eq!(strict.column_masks(&names(&["id"]), Some(&mariadb)).expect_err("refused").rule, "mask_in_predicate");
    assert!(allow.column_masks(&names(&["id"]), Some(&mariadb)).is_ok());
    assert_eq!(strict.column_masks(&names(&["id"]), None).expect_err("refused").rule, "mask_in_predicate");
    // Without mask rules the switch changes nothing.
    assert!(policy("masked_predicates: refuse\n").column_masks(&names(&["id"]), None).is_ok());
    // Per connection, over the defaults.
    let defaults: EgressSection = serde_saphyr::from_str("masked_predicates: refuse\n").expect("section");
    let own: EgressSection = serde_saphyr::from_str("masked_predicates: allow\n").expect("section");
    assert_eq!(EgressPolicy::resolve(&defaults, None).masked_predicates, MaskedPredicates::Refuse);
    assert_eq!(EgressPolicy::resolve(&defaults, Some(&own)).masked_predicates, MaskedPredicates::Allow);
    assert!(serde_saphyr::from_str::<EgressSection>("masked_predicates: maybe\n").is_err());
}

#[test]
fn masks_follow_the_source_column_and_untraceable_columns_are_refused_or_masked() {
    let p = policy("mask:\n  - column: public.t.secret\n  - column: '*.email'\n    with: hash\n");
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // Renamed: the source decides, the name does not.
    let masks = p.column_masks(&names(&["contact", "n"]), Some(&traced(&[Some("secret"), Some("id")]))).expect("ok");
    assert_eq!(masks[0].as_ref().map(|m| (m.with, m.why.as_str())), Some((MaskWith::Stars, "from public.t.secret")));
    assert_eq!(masks[1], None);
    // A qualified rule does not match a result column's name.
    let masks = p.column_masks(&names(&["secret"]), Some(&traced(&[Some("id")]))).expect("ok");
    assert_eq!(masks[0], None);
    // An expression in a statement that reads the masked column: refused...
    let mixed = ResultProvenance { reads: Some(vec![src("t", "secret")]), ..traced(&[None]) };
    let err = p.column_masks(&names(&["l"]), Some(&mixed)).expect_err("refused");
    assert_eq!(err.rule, "mask_unprovable");
    assert!(err.detail.contains("reads masked column public.t.secret"), "{}", err.detail);
    // ...or masked, if the policy says so.
    let lenient = policy("mask:\n  - column: public.t.secret\nunprovable: mask\n");
    let masks = lenient.column_masks(&names(&["l"]), Some(&mixed)).expect("masked");
    assert_eq!(masks[0].as_ref().map(|m| m.why.as_str()), Some("source unprovable"));
    // An expression over unmasked columns only is fine; unknown reads are not.
    let clean = ResultProvenance { reads: Some(vec![src("t", "region")]), ..traced(&[None]) };
    assert_eq!(p.column_masks(&names(&["n"]), Some(&clean)).expect("ok"), [None]);
    let blind = ResultProvenance { reads: None, ..traced(&[None]) };
    assert!(p.column_masks(&names(&["n"]), Some(&blind)).is_err());
    assert!(p.column_masks(&names(&["n"]), None).is_err(), "no provenance at all is never clean");
    // Without rules nothing is traced or refused.
    assert_eq!(policy("{}").column_masks(&names(&["n"]), None).expect("ok"), [None]);
    // A masked column may be a label but not drawn to scale.
    let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"contact","y":["n"]}"#).expect("spec");
    let masks = p.column_masks(&names(&["contact", "n"]), Some(&traced(&[Some("secret"), Some("id")]))).expect("ok");
    assert!(p.check_drawn(&bar, &names(&["contact", "n"]), &masks).is_ok());
    let drawn: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"n","y":["contact"]}"#).expect("spec");
    assert_eq!(p.check_drawn(&drawn, &names(&["contact", "n"]), &masks).map_err(|d| d.rule), Err("mask".to_owned()));
}

/// Issue 23: a line's series column names its series by its values, and line charts stream
/// their rows unmasked, so a masked series column is refused rather than shown.
#[test]
fn a_masked_column_cannot_name_the_series_of_a_line_chart() {
    let p = policy("mask:\n  - column: public.t.secret\n");
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let cols = names(&["day", "contact", "n"]);
    let masks = p.column_masks(&cols, Some(&traced(&[Some("id"), Some("secret"), Some("id")]))).expect("ok");
    let line: RenderSpec =
        serde_json::from_str(r#"{"kind":"line","x":"day","y":["n"],"series":"contact"}"#).expect("spec");
    let refused = p.check_drawn(&line, &cols, &masks).expect_err("masked series");
    assert_eq!(refused.rule, "mask");
    assert!(refused.detail.contains("would name its series"), "{}", refused.detail);
    // A bar chart masks the rows it is drawn from, so there the column may name series.
    let bar: RenderSpec =
        serde_json::from_str(r#"{"kind":"bar","x":"day","y":["n"],"series":"contact"}"#).expect("spec");
    assert!(p.check_drawn(&bar, &cols, &masks).is_ok());
}

#[test]
fn qualified_patterns_match_each_part_and_bad_ones_are_refused() {
    let rule = |s: &str| serde_saphyr::from_str::<ColumnPattern>(s);
    let p = rule("sales.*.card_*").expect("pattern");
    assert!(p.matches_source(&SourceColumn {
        schema: "Sales".into(),
        table: "orders".into(),
        column: "card_no".into()
    }));
    assert!(!p.matches_source(&SourceColumn { schema: "hr".into(), table: "orders".into(), column: "card_no".into() }));
    assert!(!p.matches("card_no"), "a qualified pattern never matches a bare result name");
    assert!(rule("a.b.c.d").is_err());
    assert!(rule("a..b").is_err());
}

#[test]
fn masking_replaces_values_and_hashes_equal_values_equally() {
    let p = policy("mask:\n  - column: '*email*'\n    with: hash\n  - column: ssn\n");
    let mut rs = ResultSet {
        columns: vec!["id".into(), "Email".into(), "ssn".into()],
        rows: vec![
            vec![Value::Int(1), Value::Text("a@x.org".into()), Value::Text("123".into())],
            vec![Value::Int(2), Value::Text("a@x.org".into()), Value::Null],
            vec![Value::Int(3), Value::Text("b@x.org".into()), Value::Int(456)],
        ],
        truncated: false,
        provenance: Some(traced(&[Some("id"), Some("email"), Some("ssn")])),
    };
    let key = [7u8; 32];
    let d = p.mask(&mut rs, Some(&key)).expect("masked").expect("a decision");
    assert_eq!(d.action, EgressAction::Masked);
    assert_eq!(d.detail, "masked columns: Email (keyed hash), ssn (***)");
    let email = |r: usize| match &rs.rows[r][1] {
        Value::Text(t) => t.clone(),
        v => panic!("{v:?}"),
    };
    assert_eq!(email(0), email(1));
    assert_ne!(email(0), email(2));
    assert!(email(0).starts_with("h:") && email(0).len() == 18, "{}", email(0));
    assert_eq!(rs.rows[0][2], Value::Text("***".into()));
    assert_eq!(rs.rows[1][2], Value::Null);
    assert_eq!(rs.rows[2][0], Value::Int(3));
    // Another key gives other hashes.
    let mut again = ResultSet {
        columns: vec!["email".into()],
        rows: vec![vec![Value::Text("a@x.org".into())]],
        truncated: false,
        provenance: Some(traced(&[Some("email")])),
    };
    p.mask(&mut again, Some(&[8u8; 32])).expect("masked");
    assert_ne!(again.rows[0][0], Value::Text(email(0)));
    // Without the key, a hash rule refuses rather than leaking.
    let mut no_key = ResultSet { columns: vec!["email".into()], rows: vec![], truncated: false, provenance: None };
    assert_eq!(p.mask(&mut no_key, None).map(|_| ()).map_err(|d| d.action), Err(EgressAction::Refused));
}

#[test]
fn kinds_tables_and_masked_chart_values_are_checked_before_the_query() {
    let p = policy("allowed_kinds: [bar, table]\nallow_raw_table: false\nmask:\n  - column: salary\n");
    let table: RenderSpec = serde_json::from_str(r#"{"kind":"table"}"#).expect("spec");
    assert_eq!(p.check_spec(&table).map_err(|d| d.rule), Err("allow_raw_table".to_owned()));
    let line: RenderSpec = serde_json::from_str(r#"{"kind":"line","x":"t","y":["v"]}"#).expect("spec");
    let err = p.check_spec(&line).expect_err("refused");
    assert_eq!(
        (err.rule.as_str(), err.detail.as_str()),
        ("allowed_kinds", "line results may not leave this network; allowed: table, bar")
    );
    let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"name","y":["SALARY"]}"#).expect("spec");
    assert_eq!(p.check_spec(&bar).map_err(|d| d.rule), Err("mask".to_owned()));
    let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"salary","y":["n"]}"#).expect("spec");
    assert!(p.check_spec(&bar).is_ok(), "a masked label is drawn masked");
}

#[test]
fn a_connection_overrides_fields_and_adds_masks() {
    let defaults: EgressSection = serde_saphyr::from_str("max_rows: 100\nmask:\n  - column: a\n").expect("parses");
    let own: EgressSection = serde_saphyr::from_str("max_bytes: 2048\nmask:\n  - column: b\n").expect("parses");
    let p = EgressPolicy::resolve(&defaults, Some(&own));
    assert_eq!((p.max_rows, p.max_bytes, p.max_points), (100, 2048, DEFAULT_MAX_POINTS as usize));
    assert!(p.mask_for("a").is_some() && p.mask_for("b").is_some());
    assert!(p.allow_raw_table && p.allowed_kinds.len() == ALL_KINDS.len());
    let bad = serde_saphyr::from_str::<EgressSection>("max_bytes: 10\n");
    assert!(bad.is_err());
}
