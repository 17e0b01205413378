//! The column references in one expression as PostgreSQL's EXPLAIN VERBOSE deparses it:
//! qualified names, whole rows, and what the agent cannot see (sub-plans, functions
//! that read hidden input).

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
pub(super) fn calls_hidden_input(value: &serde_json::Value) -> bool {
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
