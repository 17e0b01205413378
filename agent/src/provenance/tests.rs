//! Unit tests of provenance: expression references, plan facts, expression columns.

use super::*;

fn col(q: &str, c: &str) -> ExprRef {
    ExprRef::Column { qualifier: q.into(), column: c.into() }
}

#[test]
fn references_are_found_outside_literals_types_and_function_names() {
    assert_eq!(expression_refs("c.email"), [col("c", "email")]);
    assert_eq!(expression_refs("lower((c.email)::text)"), [col("c", "email")]);
    assert_eq!(expression_refs("count(*)"), []);
    assert_eq!(expression_refs("'c.email'::text"), []);
    assert_eq!(expression_refs("'it''s c.x'::text || c.name"), [col("c", "name")]);
    assert_eq!(
        expression_refs("CASE WHEN (c.id > 3) THEN c.\"E-Mail\" ELSE NULL::text END"),
        [col("c", "id"), col("c", "E-Mail")]
    );
    assert_eq!(expression_refs("(c.secret)::integer"), [col("c", "secret")]);
    assert_eq!(expression_refs("row_to_json(c.*)"), [ExprRef::WholeRow { qualifier: "c".into() }]);
    assert_eq!(expression_refs("public.my_fn(c.id)"), [col("c", "id")]);
    assert_eq!(expression_refs("(c.amount)::numeric(10,2)"), [col("c", "amount")]);
    assert_eq!(expression_refs("(c.d)::character varying"), [col("c", "d")]);
    assert_eq!(expression_refs("$0"), [ExprRef::Opaque("$0".into())]);
    assert_eq!(expression_refs("(SubPlan 1)"), [ExprRef::Opaque("SubPlan".into())]);
    assert_eq!(expression_refs("(InitPlan 1).col1")[0], ExprRef::Opaque("InitPlan".into()));
    assert_eq!(expression_refs("\"*SELECT* 1\".email"), [col("*SELECT* 1", "email")]);
    assert_eq!(expression_refs("string_agg(c.email, ', '::text ORDER BY c.id)"), [col("c", "email"), col("c", "id")]);
    assert_eq!(expression_refs("json_build_object('e', c.email)"), [col("c", "email")]);
    assert_eq!(expression_refs("(c.addr).street"), [col("c", "addr"), ExprRef::Bare("street".into())]);
    // Without a qualifier (one relation in the plan), names are bare; keywords and
    // multi-word type names are not names.
    assert_eq!(
        expression_refs(
            "CASE WHEN (id > 1) THEN (ts)::timestamp without time zone ELSE NULL::timestamp with time zone END"
        ),
        [ExprRef::Bare("id".into()), ExprRef::Bare("ts".into())]
    );
    assert_eq!(expression_refs("\"E-Mail\""), [ExprRef::Bare("E-Mail".into())]);
}

fn facts() -> PlanFacts {
    PlanFacts {
        outputs: vec![],
        relations: vec![
            PlanRelation { alias: "c".into(), schema: "public".into(), name: "customers".into() },
            PlanRelation { alias: "customers_1".into(), schema: "public".into(), name: "customers".into() },
        ],
        ..PlanFacts::default()
    }
}

fn src(c: &str) -> SourceColumn {
    SourceColumn { schema: "public".into(), table: "customers".into(), column: c.into() }
}

#[test]
fn an_expression_derives_from_the_columns_it_names_and_nothing_it_cannot_place() {
    let none = |_: &str, _: &str| None;
    let all = |_: &str, _: &str| Some(vec!["id".to_owned(), "email".to_owned()]);
    assert_eq!(
        expression_provenance("upper((customers_1.email)::text)", &facts(), &none),
        Provenance::columns(vec![src("email")])
    );
    assert_eq!(expression_provenance("count(*)", &facts(), &none), Provenance::columns(vec![]));
    assert_eq!(
        expression_provenance("row_to_json(c.*)", &facts(), &all),
        Provenance::columns(vec![src("id"), src("email")])
    );
    assert!(matches!(expression_provenance("row_to_json(c.*)", &facts(), &none), Provenance::Unknown { .. }));
    assert!(matches!(expression_provenance("sub.e", &facts(), &none), Provenance::Unknown { .. }));
    assert!(matches!(expression_provenance("($1 || c.id)", &facts(), &none), Provenance::Unknown { .. }));
    // A bare name belongs to the only relation; with two it cannot be placed.
    assert!(matches!(expression_provenance("lower(email)", &facts(), &none), Provenance::Unknown { .. }));
    let one = PlanFacts { relations: facts().relations[..1].to_vec(), ..PlanFacts::default() };
    assert_eq!(expression_provenance("lower(email)", &one, &none), Provenance::columns(vec![src("email")]));
    let with_function = PlanFacts { other_scans: true, ..one.clone() };
    assert!(matches!(expression_provenance("lower(email)", &with_function, &none), Provenance::Unknown { .. }));
    // UNION prints the first branch only: never trusted.
    let union = PlanFacts { set_operation: true, ..one };
    assert!(matches!(expression_provenance("c.region", &union, &none), Provenance::Unknown { .. }));
}

#[test]
fn functions_that_run_sql_text_or_read_session_state_hide_what_they_read() {
    let none = |_: &str, _: &str| None;
    let one = PlanFacts { relations: facts().relations[..1].to_vec(), ..PlanFacts::default() };
    // `SELECT set_config('x', secret, false) AS a, current_setting('x') AS j FROM t`:
    // the second column names no column yet carries the secret.
    assert_eq!(expression_refs("current_setting('outpost.x'::text)"), [ExprRef::Opaque("current_setting()".into())]);
    assert!(matches!(
        expression_provenance("pg_catalog.current_setting('x'::text, true)", &one, &none),
        Provenance::Unknown { .. }
    ));
    assert!(matches!(
        expression_provenance("(query_to_xml('SELECT secret FROM t'::text, true, false, ''::text))::text", &one, &none),
        Provenance::Unknown { .. }
    ));
    // A name in a literal or a column so named is not a call.
    assert_eq!(expression_refs("'ts_stat(x)'::text"), []);
    assert_eq!(expression_refs("c.current_setting"), [col("c", "current_setting")]);
    // Anywhere in the plan (a function scan, a filter): what the plan lists is not
    // all the statement reads.
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Function Scan", "Function Name": "ts_stat", "Alias": "ts_stat",
        "Output": ["word"], "Function Call": "ts_stat('SELECT to_tsvector(secret) FROM t'::text)"
    }}]);
    assert!(plan_facts(&plan).expect("facts").hidden_reads);
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public", "Alias": "t",
        "Output": ["id"], "Filter": "(set_config('x'::text, secret, false) <> ''::text)"
    }}]);
    assert!(plan_facts(&plan).expect("facts").hidden_reads);
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public", "Alias": "t",
        "Output": ["id", "lower(secret)"], "Filter": "(region = 'current_setting()'::text)"
    }}]);
    assert!(!plan_facts(&plan).expect("facts").hidden_reads);
}

#[test]
fn ordering_words_are_found_anywhere_as_words() {
    assert!(may_order("select id from t order by 2"));
    assert!(may_order("SELECT DISTINCT x FROM t"));
    assert!(may_order("SELECT row_number() over (partition by a) FROM t"));
    assert!(may_order("SELECT id FROM t INDEXED BY t_secret"));
    assert!(may_order("SELECT 'order' FROM t"));
    assert!(!may_order("SELECT orders.id, grouped FROM orders WHERE id = 1"));
}

#[test]
fn conditions_are_every_expression_of_every_node_but_its_output() {
    // `SELECT c1.n FROM t a JOIN nums c1 ON c1.n = ascii(substr(a.secret, 1, 1)) WHERE a.id > 3
    //  ORDER BY a.region`, as PostgreSQL 15 prints it (abridged).
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Sort", "Output": ["c1.n", "a.region"], "Sort Key": ["a.region COLLATE \"C\" DESC"],
        "Plans": [{
            "Node Type": "Hash Join", "Join Type": "Inner", "Parent Relationship": "Outer",
            "Output": ["c1.n", "a.region"], "Hash Cond": "(c1.n = ascii(substr(a.secret, 1, 1)))",
            "Plans": [
                { "Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "nums",
                  "Schema": "public", "Alias": "c1", "Output": ["c1.n"] },
                { "Node Type": "Index Scan", "Parent Relationship": "Inner", "Index Name": "t_pkey",
                  "Scan Direction": "Forward", "Relation Name": "t", "Schema": "public", "Alias": "a",
                  "Output": ["a.secret", "a.region"], "Index Cond": "(a.id > 3)" }
            ]
        }]
    }}]);
    let f = plan_facts(&plan).expect("facts");
    let mut conditions = f.conditions.clone();
    conditions.sort();
    assert_eq!(conditions, ["(a.id > 3)", "(c1.n = ascii(substr(a.secret, 1, 1)))", "a.region COLLATE \"C\" DESC"]);
    assert_eq!(f.indexes, ["t_pkey"]);
    let none = |_: &str, _: &str| None;
    let traced: Vec<Provenance> = f.conditions.iter().map(|c| expression_provenance(c, &f, &none)).collect();
    let t = |c: &str| SourceColumn { schema: "public".into(), table: "t".into(), column: c.into() };
    let nums = SourceColumn { schema: "public".into(), table: "nums".into(), column: "n".into() };
    assert!(traced.contains(&Provenance::columns(vec![nums, t("secret")])));
    assert!(traced.contains(&Provenance::columns(vec![t("region")])), "a collation is not a column: {traced:?}");
    assert!(traced.contains(&Provenance::columns(vec![t("id")])));
    // Grouping sets nest their keys in objects.
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Aggregate", "Strategy": "Mixed", "Output": ["count(*)"],
        "Grouping Sets": [{ "Hash Keys": [["t.secret"]] }, { "Group Keys": [["t.region"]] }]
    }}]);
    assert_eq!(plan_facts(&plan).expect("facts").conditions, ["t.secret", "t.region"]);
}

#[test]
fn plan_facts_list_scanned_relations_and_sub_plans() {
    let plan = serde_json::json!([{ "Plan": {
        "Node Type": "Aggregate", "Output": ["c.email", "count(*)"],
        "Plans": [
            { "Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "customers",
              "Schema": "public", "Alias": "c", "Output": ["c.id", "c.email"] },
            { "Node Type": "Result", "Parent Relationship": "InitPlan", "Subplan Name": "InitPlan 1 (returns $0)" }
        ]
    }}]);
    let f = plan_facts(&plan).expect("facts");
    assert_eq!(f.outputs, ["c.email", "count(*)"]);
    assert_eq!(f.relations, [PlanRelation { alias: "c".into(), schema: "public".into(), name: "customers".into() }]);
    assert!(f.has_subplans);
    assert_eq!(plan_facts(&serde_json::json!({})), Err(PlanError::NoPlan));
    assert_eq!(PlanError::NoPlan.to_string(), "the EXPLAIN answer has no plan");
    let odd = serde_json::json!([{"Plan": {"Node Type": "Result", "Output": [1]}}]);
    assert_eq!(plan_facts(&odd), Err(PlanError::OutputNotText));
}
