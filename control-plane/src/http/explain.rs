//! A refused job parameter or render option, said in the API's words.
//!
//! serde speaks of Rust types (`expected adjacently tagged enum Param`, `expected u8`); a
//! caller needs to hear which parameter or option is wrong, what was given, and what is
//! accepted. The accepted forms, names, bounds and examples are read from the protocol's
//! own schemas ([`outpost_protocol::schema::openapi_components`], the ones the OpenAPI
//! document publishes), so the words follow the types. These functions only explain a
//! value serde has already refused; they never decide whether a value is accepted.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// The protocol's schemas by component name (`RenderSpec`, `BarRender`, `Param`, ...).
fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(outpost_protocol::schema::openapi_components)
}

/// `schema` with a `$ref` (or an `allOf` of one) followed.
fn resolve(schema: &Value) -> &Value {
    let target = schema["$ref"].as_str().or_else(|| schema["allOf"][0]["$ref"].as_str());
    match target.and_then(|t| t.strip_prefix("#/components/schemas/")).and_then(|n| schemas().get(n)) {
        Some(s) => resolve(s),
        None => schema,
    }
}

/// The variants of a tagged union (`RenderSpec` on `kind`, `Param` on `type`): wire name
/// and schema, in declaration order.
fn variants(union: &str, tag: &str) -> Vec<(&'static str, &'static Value)> {
    let one_of = schemas().get(union).and_then(|s| s["oneOf"].as_array());
    one_of
        .into_iter()
        .flatten()
        .map(resolve)
        .filter_map(|v| Some((v["properties"][tag]["enum"][0].as_str()?, v)))
        .collect()
}

/// `a`, `a or b`, `a, b or c`.
fn listed(items: &[&str], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., end] => format!("{} {last} {end}", init.join(", ")),
    }
}

/// A JSON value as the error shows it, cut to a readable length.
fn shown(v: &Value) -> String {
    const MAX: usize = 40;
    let s = v.to_string();
    if s.chars().count() <= MAX {
        s
    } else {
        let cut: String = s.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// What a given value is: `"5" is a string`.
fn what(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null was given".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    format!("{} is {kind}", shown(v))
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// ` (did you mean "pie"?)` when one name is close to what was given.
pub(crate) fn did_you_mean(given: &str, names: &[&str]) -> String {
    let lower = given.to_lowercase();
    let best = names.iter().map(|n| (distance(&lower, n), *n)).min();
    match best {
        // One typo in a short word, one more per 4 characters beyond.
        Some((d, name)) if d <= (given.chars().count() / 4).max(1) && d < given.chars().count() => {
            format!(" (did you mean {name:?}?)")
        }
        _ => String::new(),
    }
}

/// The names an enum schema allows (`enum`, or a `oneOf` of one-value enums).
fn enum_names(s: &Value) -> Option<Vec<&str>> {
    if let Some(e) = s["enum"].as_array() {
        return Some(e.iter().filter_map(Value::as_str).collect());
    }
    let one_of = s["oneOf"].as_array()?;
    one_of.iter().map(|v| v["enum"][0].as_str()).collect()
}

/// What a schema accepts, as a phrase: `a whole number from 0 to 10`.
fn describe(schema: &Value) -> String {
    let s = resolve(schema);
    if let Some(names) = enum_names(s) {
        return format!("one of {}", listed(&names, "or"));
    }
    match s["type"].as_str() {
        Some("integer") => match (s["minimum"].as_i64(), s["maximum"].as_u64()) {
            (Some(min), Some(max)) => format!("a whole number from {min} to {max}"),
            (Some(min), None) => format!("a whole number of at least {min}"),
            _ if s["format"] == "int64" => "a whole number (64-bit)".into(),
            _ => "a whole number".into(),
        },
        Some("number") => "a number".into(),
        Some("boolean") => "true or false".into(),
        Some("string") => match s["maxLength"].as_u64() {
            Some(n) => format!("a string of at most {n} characters"),
            None => "a string".into(),
        },
        Some("array") => {
            let items = if resolve(&s["items"])["type"] == "string" { "strings" } else { "items" };
            match (s["minItems"].as_u64(), s["maxItems"].as_u64()) {
                (Some(min), Some(max)) => format!("a list of {min} to {max} {items}"),
                (None, Some(max)) => format!("a list of at most {max} {items}"),
                (Some(min), None) => format!("a list of at least {min} {items}"),
                (None, None) => format!("a list of {items}"),
            }
        }
        _ => "an object".into(),
    }
}

/// What is wrong with `v` under `schema`, as a phrase (`300 is out of range`), or `None`
/// when the schema allows it.
fn problem(schema: &Value, v: &Value) -> Option<String> {
    let s = resolve(schema);
    if v.is_null() && s["nullable"] == json!(true) {
        return None;
    }
    if let Some(names) = enum_names(s) {
        return match v.as_str() {
            Some(x) if names.contains(&x) => None,
            Some(x) => Some(format!("{} is not allowed{}", shown(v), did_you_mean(x, &names))),
            None => Some(what(v)),
        };
    }
    match (s["type"].as_str(), v) {
        (Some("integer"), Value::Number(n)) => {
            let whole = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
            let Some(i) = whole else {
                let f = n.as_f64().unwrap_or_default();
                return Some(if f.fract() != 0.0 {
                    format!("{n} is not a whole number")
                } else if f.abs() < 1e15 {
                    format!("{n} has a decimal point; write {f:.0}")
                } else {
                    format!("{n} is out of range")
                });
            };
            let below = s["minimum"].as_i64().is_some_and(|m| i < i128::from(m));
            let above = s["maximum"].as_u64().is_some_and(|m| i > i128::from(m));
            let int64 = s["format"] == "int64" && n.as_i64().is_none();
            (below || above || int64).then(|| format!("{n} is out of range"))
        }
        (Some("number"), Value::Number(_)) | (Some("boolean"), Value::Bool(_)) => None,
        (Some("string"), Value::String(x)) => {
            let n = x.chars().count();
            s["maxLength"].as_u64().filter(|max| n as u64 > *max).map(|_| format!("{} is {n} characters", shown(v)))
        }
        (Some("array"), Value::Array(items)) => {
            let n = items.len() as u64;
            if s["minItems"].as_u64().is_some_and(|m| n < m) {
                return Some(if n == 0 { "the list is empty".into() } else { format!("the list has {n} items") });
            }
            if s["maxItems"].as_u64().is_some_and(|m| n > m) {
                return Some(format!("the list has {n} items"));
            }
            items.iter().find_map(|i| problem(&s["items"], i))
        }
        (Some("object"), Value::Object(_)) | (None, _) => None,
        _ => Some(what(v)),
    }
}

/// "a int" said right: "an int".
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "a bar chart", "a table".
fn noun(kind: &str) -> String {
    match kind {
        "table" | "scalar" => format!("a {kind}"),
        _ => format!("a {kind} chart"),
    }
}

/// Why a render spec's `kind` is refused, or `None` when it names an offered kind.
/// Returns the field and the message.
pub(crate) fn render_kind(render: &Value) -> Option<(&'static str, String)> {
    let kinds: Vec<&str> = variants("RenderSpec", "kind").into_iter().map(|(k, _)| k).collect();
    let one_of = format!("one of {}", listed(&kinds, "or"));
    let Value::Object(map) = render else {
        let example = json!({ "kind": "bar", "x": "region", "y": ["total"] });
        return Some((
            "render",
            format!("{}; a render spec is an object such as {example}, of kind {one_of}", what(render)),
        ));
    };
    let message = match map.get("kind") {
        None if map.get("type").is_some_and(Value::is_string) => {
            format!("missing; the kind of chart goes in \"kind\", not \"type\": {one_of}")
        }
        None => format!("missing; {one_of}"),
        Some(Value::String(k)) if kinds.contains(&k.as_str()) => return None,
        Some(Value::String(k)) => format!("{k:?} is not a render kind; {one_of}{}", did_you_mean(k, &kinds)),
        Some(other) => format!("{}; {one_of}", what(other)),
    };
    Some(("render.kind", message))
}

/// serde's refusal of the options of a render spec of `kind` (the spec without `kind`),
/// explained: a missing or unknown option lists the kind's options, a bad value says what
/// the option takes. `field` is the option serde stopped at, if any. `None` when there is
/// nothing to add to serde's words.
pub(crate) fn render_option(kind: &str, options: &Value, field: Option<&str>, serde_msg: &str) -> Option<String> {
    let schema = variants("RenderSpec", "kind").into_iter().find(|(k, _)| *k == kind)?.1;
    let props = schema["properties"].as_object()?;
    let noun = noun(kind);
    let names = |keys: Vec<&str>| listed(&keys, "and");
    if serde_msg.starts_with("missing field") {
        let required = schema["required"].as_array()?.iter().filter_map(Value::as_str).filter(|k| *k != "kind");
        return Some(format!("{serde_msg}; {noun} needs {}", names(required.collect())));
    }
    let options_of: Vec<&str> = props.keys().map(String::as_str).filter(|k| *k != "kind").collect();
    if serde_msg.starts_with("unknown field") {
        let hint = field.map(|f| did_you_mean(f, &options_of)).unwrap_or_default();
        return Some(format!("unknown field; the options of {noun} are {}{hint}", names(options_of)));
    }
    let field = field?;
    let prop = props.get(field)?;
    let why = problem(prop, options.get(field)?)?;
    Some(format!("{why}; {field} of {noun} is {}", describe(prop)))
}

/// The accepted forms of a parameter, from the schema's examples:
/// `{"type":"null"}, {"type":"bool","value":true}, ... or {"type":"text","value":"EMEA"}`.
fn param_forms() -> String {
    let examples: Vec<String> = variants("Param", "type").iter().map(|(_, s)| s["example"].to_string()).collect();
    let refs: Vec<&str> = examples.iter().map(String::as_str).collect();
    listed(&refs, "or")
}

/// The parameter of type `t` carrying `value` (`{"type":"null"}` when `t` takes none).
fn param_of(t: &str, schema: &Value, value: &Value) -> Value {
    if schema["properties"]["value"].is_null() {
        json!({ "type": t })
    } else {
        json!({ "type": t, "value": value })
    }
}

/// The first parameter type whose value `v` fits, written out: how a bare value is passed.
fn as_param(v: &Value) -> Option<Value> {
    variants("Param", "type").into_iter().find_map(|(t, s)| {
        let fits = match s["properties"].get("value") {
            None => v.is_null(),
            Some(p) => !v.is_null() && problem(p, v).is_none(),
        };
        fits.then(|| param_of(t, s, v))
    })
}

/// What a database type named as a parameter type is passed as.
fn type_hint(given: &str, types: &[&str]) -> String {
    let near = did_you_mean(given, types);
    if !near.is_empty() {
        return near;
    }
    let as_type = match given.to_lowercase().as_str() {
        "integer" | "i64" | "long" | "bigint" | "smallint" => "int",
        "number" | "double" | "real" | "decimal" | "numeric" | "f64" => "float",
        "boolean" => "bool",
        "string" | "str" | "varchar" | "char" => "text",
        "date" | "time" | "timestamp" | "datetime" | "timestamptz" | "uuid" | "json" => {
            return " (a date, time or other value is passed as text and cast in SQL, e.g. CAST($1 AS DATE))".into()
        }
        _ => return String::new(),
    };
    format!(" (did you mean {as_type:?}?)")
}

/// Why `v`, the parameter bound to `$position`, is refused: the field under the
/// parameter (`""`, `".type"`, `".value"`, `".x"`) and the message. `None` when the
/// schema allows it (serde's words then stand).
pub(crate) fn param(v: &Value, position: usize) -> Option<(String, String)> {
    let types = variants("Param", "type");
    let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
    let forms = param_forms();
    let Value::Object(map) = v else {
        // `"5"`: text as given, or what it would be without the quotes.
        let unquoted = v.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()).filter(|u| !u.is_string());
        let or = unquoted.as_ref().and_then(as_param).map(|p| format!(" or, unquoted, {p}")).unwrap_or_default();
        let write = as_param(v).map(|p| format!("for ${position} write {p}{or}; ")).unwrap_or_default();
        return Some((String::new(), format!("{}, not a parameter; {write}a parameter is {forms}", what(v))));
    };
    // `{"int": 5}`: the type given as the key.
    if let [(key, value)] = map.iter().collect::<Vec<_>>()[..] {
        if let Some((t, s)) = types.iter().find(|(t, _)| t == key) {
            let p = param_of(t, s, value);
            return Some((String::new(), format!("{} gives its type as a key; for ${position} write {p}", shown(v))));
        }
    }
    if let Some(key) = map.keys().find(|k| *k != "type" && *k != "value") {
        let message = format!("unknown field; a parameter has a \"type\" and a \"value\", as in {forms}");
        return Some((format!(".{key}"), message));
    }
    let one_of = listed(&names, "or");
    let t = match map.get("type") {
        None => {
            let write = map.get("value").and_then(as_param).map(|p| format!("; for ${position} write {p}"));
            let message = format!("missing; the type of ${position} is one of {one_of}{}", write.unwrap_or_default());
            return Some((".type".into(), message));
        }
        Some(Value::String(t)) => t,
        Some(other) => {
            return Some((".type".into(), format!("{}; the type of ${position} is one of {one_of}", what(other))))
        }
    };
    let Some((t, schema)) = types.iter().find(|(name, _)| name == t) else {
        let message = format!(
            "{t:?} is not a parameter type; the type of ${position} is one of {one_of}{}",
            type_hint(t, &names)
        );
        return Some((".type".into(), message));
    };
    let value_schema = schema["properties"].get("value");
    match (value_schema, map.get("value")) {
        (None, None) | (None, Some(Value::Null)) => None,
        (None, Some(_)) => Some((
            ".value".into(),
            format!("{} {t} parameter carries no value; for ${position} write {}", article(t), json!({ "type": t })),
        )),
        (Some(_), None) => Some((
            ".value".into(),
            format!("missing; {} {t} parameter carries a value, as in {}", article(t), schema["example"]),
        )),
        (Some(p), Some(value)) => {
            let why = problem(p, value)?;
            // `"5"` for an int: the same without quotes; else another type it fits.
            let unquoted =
                value.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()).filter(|u| problem(p, u).is_none());
            let write = match unquoted {
                Some(u) => format!("; for ${position} write {}", param_of(t, schema, &u)),
                None => as_param(value).map(|q| format!("; or write {q}")).unwrap_or_default(),
            };
            Some((".value".into(), format!("{why}; {} {t} parameter takes {}{write}", article(t), describe(p))))
        }
    }
}

/// serde's names for Rust types and the protocol's tagged enums, said as the API's.
pub(crate) fn in_users_words(msg: &str) -> String {
    const WORDS: [(&str, &str); 13] = [
        (
            "adjacently tagged enum Param",
            "a parameter such as {\"type\": \"int\", \"value\": 5} (type: null, bool, int, float or text)",
        ),
        (
            "internally tagged enum RenderSpec",
            "a render spec such as {\"kind\": \"bar\", \"x\": \"region\", \"y\": [\"total\"]} \
             (kind: table, scalar, bar, line, area, scatter or pie)",
        ),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number from 0 to 18446744073709551615"),
        ("expected usize", "expected a whole number of at least 0"),
        ("expected i32", "expected a whole number (32-bit)"),
        ("expected i64", "expected a whole number (64-bit)"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("invalid type: map", "invalid type: object"),
    ];
    WORDS.iter().fold(msg.to_owned(), |m, (serde, ours)| m.replace(serde, ours))
}

#[cfg(test)]
mod tests;
