//! Where a result column's values come from: the facts a connector establishes with the
//! database's own metadata and planner, so that a mask follows a column whatever it is
//! renamed to or wrapped in.
//!
//! Owns: the types ([`SourceColumn`], [`Provenance`], [`ResultProvenance`]) and the
//! reading of PostgreSQL's `EXPLAIN (VERBOSE, FORMAT JSON)` plan. It decides nothing:
//! the egress policy ([`crate::policy`]) turns these facts into masks and refusals.
//!
//! The rule everything here follows: when a fact cannot be established, say
//! [`Provenance::Unknown`], never "clean". Unknown is refused or masked by the policy
//! when the statement reads a masked column.

use serde::{Deserialize, Serialize};

/// One column of a base table (or view) in the database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceColumn {
    /// Schema (PostgreSQL), database (MySQL/MariaDB) or attached database (`main` in SQLite).
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
}

impl std::fmt::Display for SourceColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// Where one result column's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Provenance {
    /// Derived from these base columns and nothing else (none: a constant, `count(*)`).
    Columns {
        /// The columns, each once.
        sources: Vec<SourceColumn>,
    },
    /// The database could not tell (an expression the agent cannot trace, a subquery,
    /// a view on a server that hides its definition).
    Unknown {
        /// Why, for the egress decision.
        why: String,
    },
}

impl Provenance {
    /// Derived from `sources` only.
    pub fn columns(mut sources: Vec<SourceColumn>) -> Self {
        sources.sort();
        sources.dedup();
        Provenance::Columns { sources }
    }

    /// Not established, because `why`.
    pub fn unknown(why: impl Into<String>) -> Self {
        Provenance::Unknown { why: why.into() }
    }
}

/// What a connector established about a whole result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResultProvenance {
    /// One per result column, in order.
    pub columns: Vec<Provenance>,
    /// Every base column the statement may read (at least the columns of every table it
    /// scans), or `None` when the connector cannot tell.
    pub reads: Option<Vec<SourceColumn>>,
    /// What the statement reads other than as the plain source of a result column: the
    /// columns of its conditions (filters, join and index conditions, grouping, sort and
    /// window keys), each condition traced like a result column; `None` when the
    /// connector cannot tell (MySQL/MariaDB).
    #[serde(default)]
    pub conditions: Option<Vec<Provenance>>,
}

/// A relation as a PostgreSQL plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRelation {
    /// The alias the plan's expressions use (unique within one plan).
    pub alias: String,
    /// Schema.
    pub schema: String,
    /// Relation name.
    pub name: String,
}

/// What the agent reads out of one `EXPLAIN (VERBOSE, FORMAT JSON)` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanFacts {
    /// The top node's output expressions, one per target column (junk columns after).
    pub outputs: Vec<String>,
    /// Every base relation scanned anywhere in the plan (views are expanded by the planner).
    pub relations: Vec<PlanRelation>,
    /// Whether the plan has sub-plans (InitPlan, SubPlan, CTE): their results appear in
    /// expressions as `$n` or `(SubPlan n)`, which the agent cannot trace.
    pub has_subplans: bool,
    /// Whether the plan combines several inputs into one column (UNION, INTERSECT,
    /// EXCEPT, a recursive CTE, a partitioned table): EXPLAIN prints such a column as
    /// the first input's expression only, so it says nothing about the others.
    pub set_operation: bool,
    /// Whether something other than a table is scanned (a function, a subquery, a CTE,
    /// VALUES): then an unqualified name may not be a table's column.
    pub other_scans: bool,
    /// Whether some node calls a function that runs SQL given as text or reads session
    /// state ([`HIDDEN_INPUT_FUNCTIONS`]): then the relations listed are not all the
    /// statement reads.
    pub hidden_reads: bool,
    /// Every expression of every node other than its output list: filters, join, hash,
    /// merge, index and recheck conditions, one-time filters, grouping, sort, presorted
    /// and cache keys, window run conditions, a function scan's call. Each reads its
    /// columns for a decision about rows, not as a result value.
    pub conditions: Vec<String>,
    /// The indexes scanned (`Index Name`): reading one in order sorts by its columns,
    /// and a partial one filters by its predicate, which the plan does not print.
    pub indexes: Vec<String>,
}

/// Whether `sql` may ask for rows in an order or grouped (`ORDER`, `GROUP`, `DISTINCT`,
/// `OVER`, `PARTITION`, `INDEXED` as a word anywhere, in a literal or comment too):
/// only then can an index scan's order be a decision on its columns rather than the
/// order rows happen to come in. Over-approximates, never misses such a clause.
pub fn may_order(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| {
        ["ORDER", "GROUP", "DISTINCT", "OVER", "PARTITION", "INDEXED"].iter().any(|k| k.eq_ignore_ascii_case(w))
    })
}

/// Plan node keys that hold names or settings, not expressions.
const NOT_EXPRESSIONS: [&str; 20] = [
    "Node Type",
    "Plans",
    "Output",
    "Relation Name",
    "Schema",
    "Alias",
    "Index Name",
    "Parent Relationship",
    "Subplan Name",
    "Join Type",
    "Strategy",
    "Partial Mode",
    "Scan Direction",
    "CTE Name",
    "Function Name",
    "Command",
    "Operation",
    "Cache Mode",
    "Sampling Method",
    "Custom Plan Provider",
];

/// Every string in `value` (strings, arrays and objects of them), for [`PlanFacts::conditions`].
fn collect_expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_expressions(v, out)),
        serde_json::Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !NOT_EXPRESSIONS.contains(&k.as_str()))
            .for_each(|(_, v)| collect_expressions(v, out)),
        _ => {}
    }
}

/// Reads a PostgreSQL `EXPLAIN (VERBOSE, FORMAT JSON)` answer.
pub fn plan_facts(explain: &serde_json::Value) -> Result<PlanFacts, String> {
    let top = explain.get(0).and_then(|p| p.get("Plan")).ok_or("the EXPLAIN answer has no plan")?;
    let outputs = match top.get("Output") {
        Some(serde_json::Value::Array(a)) => {
            a.iter().map(|o| o.as_str().map(str::to_owned).ok_or("an output is not text")).collect::<Result<_, _>>()?
        }
        _ => Vec::new(),
    };
    let mut facts = PlanFacts { outputs, ..PlanFacts::default() };
    let mut stack = vec![top];
    let mut nodes = 0usize;
    while let Some(node) = stack.pop() {
        nodes += 1;
        if nodes > 100_000 {
            return Err("the plan is too large to read".into());
        }
        if let (Some(name), Some(schema)) = (
            node.get("Relation Name").and_then(serde_json::Value::as_str),
            node.get("Schema").and_then(serde_json::Value::as_str),
        ) {
            let alias = node.get("Alias").and_then(serde_json::Value::as_str).unwrap_or(name);
            facts.relations.push(PlanRelation {
                alias: alias.to_owned(),
                schema: schema.to_owned(),
                name: name.to_owned(),
            });
        }
        if calls_hidden_input(node) {
            facts.hidden_reads = true;
        }
        collect_expressions(node, &mut facts.conditions);
        if let Some(index) = node.get("Index Name").and_then(serde_json::Value::as_str) {
            facts.indexes.push(index.to_owned());
        }
        if node.get("Relation Name").is_none() && node.get("Alias").is_some() {
            facts.other_scans = true;
        }
        if matches!(
            node.get("Node Type").and_then(serde_json::Value::as_str),
            Some("Append" | "Merge Append" | "SetOp" | "Recursive Union")
        ) {
            facts.set_operation = true;
        }
        if node.get("Subplan Name").is_some()
            || matches!(
                node.get("Parent Relationship").and_then(serde_json::Value::as_str),
                Some("InitPlan" | "SubPlan")
            )
        {
            facts.has_subplans = true;
        }
        if let Some(serde_json::Value::Array(children)) = node.get("Plans") {
            stack.extend(children.iter());
        }
    }
    Ok(facts)
}

/// A reference to a column in a deparsed plan expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprRef {
    /// `alias.column`.
    Column {
        /// The relation's alias.
        qualifier: String,
        /// The column.
        column: String,
    },
    /// `alias.*`: the whole row.
    WholeRow {
        /// The relation's alias.
        qualifier: String,
    },
    /// An unqualified name that is not a keyword, function or type: a column of the
    /// plan's only relation (EXPLAIN leaves out the qualifier when there is one).
    Bare(String),
    /// Something whose source the agent cannot see: a sub-plan's result (`$1`,
    /// `(SubPlan 1)`, `(InitPlan 1)`), or a call of a [`HIDDEN_INPUT_FUNCTIONS`] one
    /// (`current_setting()`).
    Opaque(String),
}

/// The column references in one expression as PostgreSQL's EXPLAIN VERBOSE prints it:
/// qualified names outside string literals, whole-row references, sub-plan results.
/// Function names (a name followed by `(`), type names after `::` and keywords are not
/// references.
pub fn expression_refs(expr: &str) -> Vec<ExprRef> {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Vec::new();
    let mut i = 0;
    // A chain of identifiers separated by dots: `a`, `a.b`, `a.*`, `"A"."b c"`.
    let mut after_cast = false;
    let mut after_collate = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A string literal ('' is an escaped quote); E'…' strings use the same form
            // in EXPLAIN's output (ruleutils doubles quotes and backslashes).
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            after_cast = false;
            continue;
        }
        if c == '$' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            refs.push(ExprRef::Opaque(chars[start..i].iter().collect()));
            after_cast = false;
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            i += 2;
            after_cast = true;
            continue;
        }
        if c == '"' || c.is_alphabetic() || c == '_' {
            let mut parts: Vec<(String, bool)> = Vec::new();
            let mut star = false;
            loop {
                let (part, quoted, next) = identifier(&chars, i);
                parts.push((part, quoted));
                i = next;
                if chars.get(i) == Some(&'.') {
                    match chars.get(i + 1) {
                        Some('*') => {
                            star = true;
                            i += 2;
                            break;
                        }
                        Some(&n) if n == '"' || n.is_alphabetic() || n == '_' => {
                            i += 1;
                            continue;
                        }
                        _ => break,
                    }
                }
                break;
            }
            let mut j = i;
            while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                j += 1;
            }
            let is_call = chars.get(j) == Some(&'(');
            let was_cast = std::mem::replace(&mut after_cast, false);
            if std::mem::replace(&mut after_collate, false) {
                // A collation name (`COLLATE "C"`, `COLLATE pg_catalog."default"`).
                continue;
            }
            if !parts[0].1 && parts.len() == 1 && words_is(&parts, "COLLATE") {
                after_collate = true;
                continue;
            }
            if was_cast {
                // A type name (`::text`, `::character varying(20)`, `::public.mytype`,
                // `::timestamp without time zone`): skip its further words too.
                loop {
                    let mut k = i;
                    while chars.get(k) == Some(&' ') {
                        k += 1;
                    }
                    let (word, quoted, next) = identifier(&chars, k);
                    if !quoted && TYPE_WORDS.contains(&word.as_str()) {
                        i = next;
                    } else {
                        break;
                    }
                }
                continue;
            }
            let words: Vec<&str> = parts.iter().map(|(p, _)| p.as_str()).collect();
            if star {
                refs.push(ExprRef::WholeRow { qualifier: parts.concat_names() });
            } else if is_call {
                // A function call; SubPlan/InitPlan are printed as `(SubPlan 1)`. A
                // function whose value does not come from its arguments (it runs SQL
                // given as text, or reads session state another expression wrote) is
                // a value the plan cannot place.
                let name = parts.last().map(|(p, _)| p.as_str()).unwrap_or_default();
                if hidden_input(name) {
                    refs.push(ExprRef::Opaque(format!("{name}()")));
                }
            } else if parts.len() >= 2 {
                // `alias.column`, or `alias.column.field`? PostgreSQL prints field access
                // of a composite as `(alias.column).field`, so two parts are a column.
                refs.push(ExprRef::Column { qualifier: words[0].to_owned(), column: words[1].to_owned() });
                if parts.len() > 2 {
                    refs.push(ExprRef::Opaque(words.join(".")));
                }
            } else if !parts[0].1 && (words[0] == "SubPlan" || words[0] == "InitPlan") {
                refs.push(ExprRef::Opaque(words[0].to_owned()));
            } else if parts[0].1 || !words[0].chars().any(char::is_uppercase) {
                // PostgreSQL prints an identifier bare only when it is all lower case
                // and no keyword, and quotes it otherwise; so this is a name, taken as
                // a column (more columns than needed only masks more).
                refs.push(ExprRef::Bare(words[0].to_owned()));
            }
            // Upper-case bare words are keywords (CASE, WHEN, AND, NULL, ANY, ARRAY, …).
            continue;
        }
        after_cast = false;
        i += 1;
    }
    refs
}

/// Built-in PostgreSQL functions whose result does not derive from their arguments
/// columns: they run a query given as text (the plan does not show what it reads:
/// `query_to_xml('SELECT secret FROM t', …)`, `ts_stat`, `ts_rewrite`), or read the
/// session's settings, which `set_config(…, secret, …)` elsewhere in the same statement
/// can have written (`current_setting`). Names compared lower-case, any schema.
pub const HIDDEN_INPUT_FUNCTIONS: [&str; 18] = [
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "current_setting",
    "set_config",
];

/// Whether `name` is one of [`HIDDEN_INPUT_FUNCTIONS`].
fn hidden_input(name: &str) -> bool {
    HIDDEN_INPUT_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// Whether any string anywhere in `value` (a plan node: outputs, filters, join and
/// index conditions, a function scan's call) calls a [`HIDDEN_INPUT_FUNCTIONS`] one.
fn calls_hidden_input(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => {
            s.contains('(') && expression_refs(s).iter().any(|r| matches!(r, ExprRef::Opaque(w) if w.ends_with("()")))
        }
        serde_json::Value::Array(a) => a.iter().any(calls_hidden_input),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k != "Plans" && calls_hidden_input(v)),
        _ => false,
    }
}

/// Whether `parts` is the one unquoted word `word`.
fn words_is(parts: &[(String, bool)], word: &str) -> bool {
    matches!(parts, [(w, false)] if w == word)
}

/// Words that continue a type name after `::`.
const TYPE_WORDS: [&str; 6] = ["varying", "precision", "without", "with", "time", "zone"];

trait ConcatNames {
    fn concat_names(&self) -> String;
}

impl ConcatNames for Vec<(String, bool)> {
    fn concat_names(&self) -> String {
        self.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(".")
    }
}

/// One identifier starting at `i`: bare (letters, digits, `_`, `$`; lower-cased as
/// PostgreSQL folds it) or double-quoted (`""` inside is one quote). Returns the name,
/// whether it was quoted, and the index after it.
fn identifier(chars: &[char], mut i: usize) -> (String, bool, usize) {
    let mut name = String::new();
    if chars.get(i) == Some(&'"') {
        i += 1;
        while i < chars.len() {
            if chars[i] == '"' {
                if chars.get(i + 1) == Some(&'"') {
                    name.push('"');
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            name.push(chars[i]);
            i += 1;
        }
        return (name, true, i);
    }
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
        name.push(chars[i]);
        i += 1;
    }
    (name, false, i)
}

/// The provenance of one expression column of a PostgreSQL plan: the base columns its
/// references name, or unknown when it names anything the agent cannot place.
/// `columns_of(schema, table)` lists a relation's columns (for `alias.*`).
pub fn expression_provenance(
    expr: &str,
    facts: &PlanFacts,
    columns_of: &dyn Fn(&str, &str) -> Option<Vec<String>>,
) -> Provenance {
    if facts.set_operation {
        return Provenance::unknown("a set operation (UNION, INTERSECT, EXCEPT, a recursive CTE or partitions)");
    }
    let only = match (facts.relations.as_slice(), facts.other_scans) {
        ([only], false) => Some(only),
        _ => None,
    };
    let mut sources = Vec::new();
    for r in expression_refs(expr) {
        let (qualifier, column) = match r {
            ExprRef::Opaque(what) => return Provenance::unknown(format!("a value the planner hides ({what})")),
            ExprRef::Bare(name) => match only {
                Some(rel) => (rel.alias.clone(), Some(name)),
                None => return Provenance::unknown(format!("an unqualified name ({name:?})")),
            },
            ExprRef::Column { qualifier, column } => (qualifier, Some(column)),
            ExprRef::WholeRow { qualifier } => (qualifier, None),
        };
        let Some(rel) = facts.relations.iter().find(|r| r.alias == qualifier) else {
            return Provenance::unknown(format!(
                "a column of {qualifier:?}, which is not a table (a subquery, CTE, function or set operation)"
            ));
        };
        match column {
            Some(column) => {
                sources.push(SourceColumn { schema: rel.schema.clone(), table: rel.name.clone(), column });
            }
            None => match columns_of(&rel.schema, &rel.name) {
                Some(all) => sources.extend(all.into_iter().map(|column| SourceColumn {
                    schema: rel.schema.clone(),
                    table: rel.name.clone(),
                    column,
                })),
                None => return Provenance::unknown(format!("the whole row of {qualifier:?}")),
            },
        }
    }
    Provenance::columns(sources)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            expression_refs("string_agg(c.email, ', '::text ORDER BY c.id)"),
            [col("c", "email"), col("c", "id")]
        );
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
        assert_eq!(
            expression_refs("current_setting('outpost.x'::text)"),
            [ExprRef::Opaque("current_setting()".into())]
        );
        assert!(matches!(
            expression_provenance("pg_catalog.current_setting('x'::text, true)", &one, &none),
            Provenance::Unknown { .. }
        ));
        assert!(matches!(
            expression_provenance(
                "(query_to_xml('SELECT secret FROM t'::text, true, false, ''::text))::text",
                &one,
                &none
            ),
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
        assert_eq!(
            f.relations,
            [PlanRelation { alias: "c".into(), schema: "public".into(), name: "customers".into() }]
        );
        assert!(f.has_subplans);
        assert!(plan_facts(&serde_json::json!({})).is_err());
    }
}
