//! The scrubber against error texts the real servers wrote (PostgreSQL 15, MariaDB
//! 10.11, SQLite 3), collected by running the statements shown against them.

use super::*;

const CANARY: &str = "S3CRET-VALUE-42";

fn known(sql: &str) -> Known {
    Known::new(sql, &[])
}

fn scrubbed(message: &str, sql: &str) -> Scrubbed {
    scrub(message, &known(sql))
}

fn pg(message: &str, sqlstate: &str, position: Option<u32>) -> QueryError {
    QueryError::Server(Box::new(ServerError {
        message: message.into(),
        sqlstate: Some(sqlstate.into()),
        position,
        ..ServerError::default()
    }))
}

fn maria(message: &str, number: u32, sqlstate: &str) -> QueryError {
    QueryError::Server(Box::new(ServerError {
        message: message.into(),
        sqlstate: Some(sqlstate.into()),
        number: Some(number),
        ..ServerError::default()
    }))
}

#[test]
fn postgres_cast_failure_loses_the_value_and_keeps_the_template() {
    let sql = "SELECT id, CAST(secret AS int) AS n FROM customers";
    let out = outgoing(
        ErrorsMode::Scrubbed,
        &pg(&format!("invalid input syntax for type integer: \"{CANARY}\""), "22P02", None),
        &known(sql),
    );
    assert_eq!(out.message, "query failed: invalid input syntax for type integer: \"…\" (SQLSTATE 22P02)");
    assert_eq!(out.logged, out.message);
    let d = out.decision.expect("a decision");
    assert_eq!((d.action, d.rule.as_str()), (EgressAction::Masked, "errors"));
    assert!(d.detail.starts_with("1 fragment(s)"), "{}", d.detail);
}

#[test]
fn full_sends_the_text_as_the_database_wrote_it_and_logs_it_scrubbed() {
    let err = pg(&format!("invalid input syntax for type integer: \"{CANARY}\""), "22P02", None);
    let out = outgoing(ErrorsMode::Full, &err, &known("SELECT CAST(secret AS int) FROM customers"));
    assert_eq!(
        out.message,
        format!("query failed: invalid input syntax for type integer: \"{CANARY}\" (SQLSTATE 22P02)")
    );
    assert!(!out.logged.contains(CANARY), "{}", out.logged);
    assert_eq!(out.decision, None);
}

#[test]
fn code_only_sends_the_codes_and_no_text() {
    let err = maria(&format!("XPATH syntax error: '~{CANARY}'"), 1105, "HY000");
    let out = outgoing(ErrorsMode::CodeOnly, &err, &known("SELECT 1"));
    assert_eq!(
        out.message,
        "query failed (error 1105, SQLSTATE HY000); the error text is withheld (egress.errors: code_only)"
    );
    assert!(out.decision.is_some());
    assert!(!out.logged.contains(CANARY), "{}", out.logged);
}

#[test]
fn a_syntax_error_still_says_where() {
    // PostgreSQL: SELEC id FROM err_probe
    let out = outgoing(
        ErrorsMode::Scrubbed,
        &pg("syntax error at or near \"SELEC\"", "42601", Some(1)),
        &known("SELEC id FROM err_probe"),
    );
    assert_eq!(out.message, "query failed: syntax error at or near \"SELEC\" (SQLSTATE 42601, at character 1)");
    assert_eq!(out.decision, None);
    // MariaDB quotes the rest of the statement.
    let sql = "SELEC id FROM err_probe";
    let m = "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server \
             version for the right syntax to use near 'SELEC id FROM err_probe' at line 1";
    assert_eq!(scrubbed(m, sql), Scrubbed { text: m.into(), removed: 0 });
    // SQLite.
    assert_eq!(scrubbed("near \"SELEC\": syntax error", sql).text, "near \"SELEC\": syntax error");
}

#[test]
fn names_from_the_sql_stay_also_as_postgresql_folds_them() {
    for (m, sql) in [
        ("column \"selec\" does not exist", "SELECT SELEC id FROM err_probe"),
        ("column \"nosuch\" does not exist", "SELECT Nosuch FROM err_probe"),
        ("relation \"nosuch_table\" does not exist", "SELECT * FROM nosuch_table"),
        ("operator does not exist: text + integer", "SELECT secret + 1 FROM err_probe"),
        ("Unknown column 'SELEC' in 'SELECT'", "SELECT SELEC id FROM err_probe"),
        ("Table 'test.nosuch_table' doesn't exist", "SELECT * FROM test.nosuch_table"),
        ("no such column: nosuch", "SELECT nosuch FROM t"),
        ("wrong number of arguments to function substr()", "SELECT substr() FROM t"),
        ("division by zero", "SELECT 1/(id-1) FROM err_probe"),
        ("integer out of range", "SELECT n::int FROM err_probe"),
    ] {
        assert_eq!(scrubbed(m, sql), Scrubbed { text: m.into(), removed: 0 }, "{sql}");
    }
}

#[test]
fn values_are_removed_wherever_the_server_put_them() {
    let sql = "SELECT x FROM err_probe";
    for (m, want) in [
        // PostgreSQL
        (format!("invalid input syntax for type uuid: \"{CANARY}\""), "invalid input syntax for type uuid: \"…\""),
        ("date/time field value out of range: \"2024-13-45\"".into(), "date/time field value out of range: \"…\""),
        (format!("relation \"{}\" does not exist", CANARY.to_lowercase()), "relation \"…\" does not exist"),
        ("\"S\" is not a valid binary digit".into(), "\"…\" is not a valid binary digit"),
        ("invalid value \"S3CR\" for \"YYYY\"".into(), "invalid value \"…\" for \"…\""),
        ("date field value out of range: 2024-17-01".into(), "date field value out of range: …"),
        ("requested character too large for encoding: 2000012".into(), "requested character too large for encoding: …"),
        (
            format!("could not open file \"{CANARY}\" for reading: No such file or directory"),
            "could not open file \"…\" for reading: No such file or directory",
        ),
        (format!("unrecognized configuration parameter \"{CANARY}\""), "unrecognized configuration parameter \"…\""),
        // A stored routine's RAISE: the whole message may be data.
        (format!("boom {CANARY}"), "…"),
        (CANARY.into(), "…"),
        // MariaDB
        (format!("XPATH syntax error: '~{CANARY}'"), "XPATH syntax error: '…'"),
        (format!("Truncated incorrect INTEGER value: '{CANARY}'"), "Truncated incorrect INTEGER value: '…'"),
        (format!("Duplicate entry '{CANARY}1' for key 'group_key'"), "Duplicate entry '…' for key '…'"),
        // SQLite
        (format!("JSON path error near '{CANARY}'"), "JSON path error near '…'"),
    ] {
        let s = scrubbed(&m, sql);
        assert_eq!(s.text, want, "{m}");
        assert!(s.removed > 0, "{m}");
        assert!(!s.text.contains("S3CR") && !s.text.contains("2024") && !s.text.contains("2000012"), "{m}");
    }
}

#[test]
fn a_value_in_detail_or_after_an_equals_sign_goes_with_its_line() {
    let m = "duplicate key value violates unique constraint \"customers_pkey\"\nDETAIL:  Key (id)=(42) already exists.";
    assert_eq!(scrubbed(m, "SELECT id FROM customers").text, "duplicate key value violates unique constraint \"…\"");
    let m = format!("invalid input syntax for type json\nDETAIL:  Token \"{CANARY}\" is invalid.\nCONTEXT:  JSON data, line 1: {{\"a\": {CANARY}...");
    let s = scrubbed(&m, "SELECT j::json FROM err_probe");
    assert_eq!(s.text, "invalid input syntax for type json");
    assert!(s.removed >= 2, "{s:?}");
    let m = format!("new row violates check constraint \"c\"\nDETAIL:  Failing row contains (1, {CANARY}, 42).");
    assert!(!scrubbed(&m, "SELECT c FROM t").text.contains("DETAIL"));
    // A supplementary line whose every fragment passes stays.
    let m = "column \"idd\" does not exist\nHINT:  Perhaps you meant to reference the column \"t.id\".";
    assert_eq!(scrubbed(m, "SELECT idd FROM t JOIN u ON t.id = u.id"), Scrubbed { text: m.into(), removed: 0 });
    // One that does not goes whole.
    assert_eq!(scrubbed(m, "SELECT idd FROM t").text, "column \"idd\" does not exist");
}

#[test]
fn a_value_that_looks_like_a_keyword_or_template_word_is_still_removed_when_quoted() {
    let sql = "SELECT CAST(secret AS int) FROM customers";
    for value in ["integer", "syntax", "invalid", "type", "SELEC"] {
        let m = format!("invalid input syntax for type integer: \"{value}\"");
        assert_eq!(scrubbed(&m, sql).text, "invalid input syntax for type integer: \"…\"", "{value}");
    }
}

#[test]
fn a_value_holding_quotes_cannot_end_its_fragment_early() {
    // PostgreSQL does not escape a quote inside the value it quotes.
    let sql = "SELECT CAST(secret AS int) FROM customers";
    let m = "invalid input syntax for type integer: \"x\" password hunter \"y\"";
    assert_eq!(scrubbed(m, sql).text, "invalid input syntax for type integer: \"…\"");
}

#[test]
fn a_fragment_must_occur_in_the_sql_as_a_whole_token() {
    let sql = "SELECT id, CAST(secret AS int) AS n FROM customers WHERE region = 'EU' LIMIT 42";
    let m = |v: &str| format!("invalid input syntax for type integer: \"{v}\"");
    // Substrings of the SQL that are not tokens of it: removed.
    for v in ["ELEC", "S", "E", "ustomer", "4", "AS i"] {
        assert_eq!(scrubbed(&m(v), sql).text, "invalid input syntax for type integer: \"…\"", "{v}");
    }
    // Exactly in it: came from the cloud, may go back.
    for v in ["EU", "customers", "42", "region = 'EU'"] {
        assert_eq!(scrubbed(&m(v), sql).text, m(v), "{v}");
    }
    // A number not in the SQL is data too.
    assert_eq!(scrubbed("value 123456 out of range", sql).text, "value … out of range");
    assert_eq!(scrubbed("value 42 out of range", sql).text, "value 42 out of range");
}

#[test]
fn a_parameter_the_cloud_sent_may_come_back() {
    let k = Known::new("SELECT $1::int", &[Param::Text("abc".into())]);
    assert_eq!(scrub("invalid input syntax for type integer: \"abc\"", &k).removed, 0);
}

#[test]
fn unicode_is_compared_as_written() {
    let sql = "SELECT 'Ünïcødé-x'::int, E'\\u00e9t\\u00e9'::int";
    assert_eq!(scrubbed("invalid input syntax for type integer: \"Ünïcødé-x\"", sql).removed, 0);
    // The escape in the SQL is not the text the server decoded from it.
    assert_eq!(scrubbed("invalid input syntax for type integer: \"été\"", sql).removed, 1);
    // Localized quotes and words outside the templates.
    let s = scrubbed("ungültige Eingabesyntax für Typ integer: »S3CRET«", sql);
    assert!(!s.text.contains("S3CRET"), "{s:?}");
    // Fullwidth letters are not the ASCII ones of the SQL; French words are not template words.
    assert_eq!(scrubbed("valeur «Ｓ3CRET» invalide", "SELECT 'S3CRET'").text, "… «…» …");
    // Control characters never pass.
    let s = scrubbed("bad value: \u{202e}S3CRET\u{7}", "SELECT 1");
    assert!(!s.text.contains("S3CRET") && !s.text.contains('\u{202e}'), "{s:?}");
}

#[test]
fn removed_words_in_a_row_become_one_ellipsis() {
    assert_eq!(scrubbed("value alpha7 beta9 gamma1 is invalid", "SELECT 1").text, "value … is invalid");
}

#[test]
fn a_line_number_up_to_the_sqls_lines_stays() {
    let sql = "SELECT id\nFROM t WHERE\n SELEC";
    let m = "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server \
             version for the right syntax to use near 'SELEC' at line 3";
    assert_eq!(scrubbed(m, sql).removed, 0);
    assert!(scrubbed(&m.replace("line 3", "line 1234"), sql).text.ends_with("at line …"));
}

#[test]
fn a_sqlstate_a_stored_routine_chose_is_withheld() {
    let err = QueryError::Server(Box::new(ServerError {
        message: "S3CRE".into(),
        sqlstate: Some("S3CRE".into()),
        custom_code: true,
        ..ServerError::default()
    }));
    let out = outgoing(ErrorsMode::Scrubbed, &err, &known("SELECT f(secret) FROM t"));
    assert_eq!(out.message, "query failed: … (SQLSTATE withheld: set by a stored routine)");
}

#[test]
fn a_position_outside_the_sql_is_not_told() {
    let out = outgoing(ErrorsMode::Scrubbed, &pg("division by zero", "22012", Some(999)), &known("SELECT 1/0"));
    assert_eq!(out.message, "query failed: division by zero (SQLSTATE 22012)");
}

#[test]
fn the_agents_own_messages_pass_unchanged() {
    for err in [QueryError::Timeout { after_ms: 5000 }, QueryError::Cancelled] {
        for mode in [ErrorsMode::Scrubbed, ErrorsMode::CodeOnly] {
            let out = outgoing(mode, &err, &known("SELECT 1"));
            assert_eq!((out.message, out.decision), (err.to_string(), None));
        }
    }
}

#[test]
fn open_errors_keep_the_configured_address() {
    let err = QueryError::Open {
        path: "db.internal:5432/test".into(),
        reason: format!("password authentication failed for user \"{CANARY}\""),
    };
    let out = outgoing(ErrorsMode::Scrubbed, &err, &known("SELECT 1"));
    assert_eq!(
        out.message,
        "cannot open database db.internal:5432/test: password authentication failed for user \"…\""
    );
}

#[test]
fn long_messages_are_capped() {
    let err = QueryError::Database { message: "x ".repeat(5000) };
    assert!(outgoing(ErrorsMode::Full, &err, &known("SELECT 1")).message.chars().count() <= MAX_MESSAGE_CHARS + 1);
}

#[test]
fn a_value_error_gives_nothing_back_even_what_the_sql_names() {
    // Candidates listed in the SQL: a data exception must not say which one the row holds.
    let sql = "SELECT CAST(secret AS int) FROM t WHERE secret IN ('alice', 'bob', 'carol')";
    let out = outgoing(
        ErrorsMode::Scrubbed,
        &pg("invalid input syntax for type integer: \"bob\"", "22P02", None),
        &known(sql),
    );
    assert_eq!(out.message, "query failed: invalid input syntax for type integer: \"…\" (SQLSTATE 22P02)");
    let out =
        outgoing(ErrorsMode::Scrubbed, &maria("Truncated incorrect INTEGER value: 'bob'", 1292, "22007"), &known(sql));
    assert_eq!(out.message, "query failed: Truncated incorrect INTEGER value: '…' (error 1292, SQLSTATE 22007)");
    let out = outgoing(ErrorsMode::Scrubbed, &pg("value bob", "P0001", None), &known(sql));
    assert_eq!(out.message, "query failed: value … (SQLSTATE P0001)");
    // Another class may quote the SQL back: a name the job used.
    let out = outgoing(
        ErrorsMode::Scrubbed,
        &pg("column \"secrt\" does not exist", "42703", Some(13)),
        &known("SELECT CAST(secrt AS int) FROM t"),
    );
    assert_eq!(out.message, "query failed: column \"secrt\" does not exist (SQLSTATE 42703, at character 13)");
}

/// Runs `sql` on a fresh sample database and returns what the policy sends of its error.
async fn sqlite_failure(sql: &str, mode: ErrorsMode) -> Outgoing {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sample.db");
    crate::connectors::sqlite::ensure_sample_db(&path).expect("sample db");
    let conn = crate::connectors::sqlite::SqliteConnector::new(path);
    let limits = crate::connectors::QueryLimits::new(10, std::time::Duration::from_secs(5));
    let err = conn.query(sql.into(), vec![], limits).await.expect_err("the query fails");
    outgoing(mode, &err, &known(sql))
}

#[tokio::test]
async fn sqlite_errors_come_in_parts_without_the_statement_and_values_are_scrubbed() {
    // rusqlite's text would be "no such column: x in SELECT region, x AS v FROM orders at
    // offset 15": the server's message and the position travel apart, the SQL does not.
    let sql = "SELECT region, x AS v FROM orders";
    let out = sqlite_failure(sql, ErrorsMode::Full).await;
    assert!(out.message.starts_with("query failed: no such column: x (SQLite error 1"), "{}", out.message);
    assert!(out.message.ends_with(", at character 16)"), "{}", out.message);
    assert!(!out.message.contains("FROM orders"), "{}", out.message);
    let out = sqlite_failure("SELEC region FROM orders", ErrorsMode::Scrubbed).await;
    assert!(out.message.starts_with("query failed: near \"SELEC\": syntax error (SQLite error 1"), "{}", out.message);
    assert_eq!(out.decision, None);
    // A value from a row inside a runtime error.
    let sql = "SELECT json_extract('{}', region) FROM orders";
    let raw = sqlite_failure(sql, ErrorsMode::Full).await;
    let region = raw.message.split('\'').nth(1).unwrap_or_default().to_owned();
    // SQLite 3.45+ says `bad JSON path: 'North'`, older ones `JSON path error near 'North'`.
    assert!(raw.message.contains("JSON path") && !region.is_empty(), "{}", raw.message);
    let out = sqlite_failure(sql, ErrorsMode::Scrubbed).await;
    assert_eq!(out.message, raw.message.replace(&region, "…"));
    assert!(!out.message.contains(&region) && !raw.logged.contains(&region), "{} / {}", out.message, raw.logged);
    assert!(out.decision.is_some());
}
