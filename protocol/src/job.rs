//! The job specification: what a signed job asks the agent to do.
//!
//! A `JobSpec` is serialised to JSON once, by the signer, and the agent parses the very
//! bytes that were signed. Unknown fields are refused so that a field added by a newer
//! signer is never silently ignored by an older agent; the `version` field says which
//! shape to expect.

use serde::{Deserialize, Serialize};

/// The only job-spec version this build understands.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest accepted name of an agent or a connection.
pub const MAX_NAME_LEN: usize = 64;

/// Largest SQL text accepted in a job (bytes).
pub const MAX_SQL_LEN: usize = 64 * 1024;

/// Most parameters a job may carry.
pub const MAX_PARAMS: usize = 256;

/// One job, as signed by the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Shape of this spec; see [`PROTOCOL_VERSION`].
    pub version: u16,
    /// Unique id (UUID v4 text).
    pub job_id: String,
    /// The agent (by enrolled name) that may run this job.
    pub audience: String,
    /// Unix seconds when the job was signed.
    pub issued_at: i64,
    /// Unix seconds after which the job must not run.
    pub expires_at: i64,
    /// 128-bit random hex; with `job_id` it makes a replayed envelope recognisable.
    pub nonce: String,
    /// Name of a connection in the agent's local config.
    pub connection: String,
    /// The SQL text; parameters are bound, never interpolated.
    pub sql: String,
    /// Typed positional parameters for `$1`, `$2`, ...
    #[serde(default)]
    pub params: Vec<Param>,
    /// How to render the result; only the rendering leaves the agent.
    pub render: RenderSpec,
    /// How old a cached result may be.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Statement timeout this job asks for, seconds (1 to [`MAX_TIMEOUT_SECS`]). The
    /// agent's timeout for the connection caps it; absent, that timeout applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Who asked for this job, signed with it so that the agent's audit log can say who
    /// ran what. Absent in jobs signed before requesters were carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
}

/// Longest text of a requester field, characters.
pub const MAX_REQUESTER_FIELD: usize = 128;

/// The person or program on whose behalf the control plane signed a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// The control plane's account id of the user.
    pub user_id: String,
    /// The user's name.
    pub user: String,
    /// How the request was authenticated: `session`, or `token:ID` for an API token.
    pub via: String,
    /// The project whose query runs, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The query's index in that project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<u32>,
    /// The end customer the project ran for (embedded data apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

impl Requester {
    /// Checks lengths and characters (every field ends up in a log line).
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("user_id", Some(&self.user_id)),
            ("user", Some(&self.user)),
            ("via", Some(&self.via)),
            ("project", self.project.as_ref()),
            ("customer", self.customer.as_ref()),
        ];
        for (name, value) in fields {
            let Some(v) = value else { continue };
            if v.chars().count() > MAX_REQUESTER_FIELD || v.chars().any(char::is_control) {
                return Err(format!(
                    "requester.{name}: at most {MAX_REQUESTER_FIELD} characters, no control characters"
                ));
            }
        }
        Ok(())
    }
}

/// Longest statement timeout a job may ask for, seconds.
pub const MAX_TIMEOUT_SECS: u32 = 3600;

/// A typed query parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// Text.
    Text(String),
}

/// How a result is rendered. Only the rendered form leaves the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderSpec {
    /// A table of at most `max_rows` rows.
    Table(TableSpec),
    /// One value with a label, as JSON.
    Scalar(ScalarSpec),
    /// A bar chart as SVG: one bar group per row, one series per `y` column.
    Bar(BarSpec),
    /// A line chart as SVG over a numeric or time `x`, downsampled when large.
    Line(XySpec),
    /// A line chart filled down to zero, as SVG.
    Area(XySpec),
    /// A scatter plot as SVG, downsampled when large.
    Scatter(XySpec),
    /// A pie chart as SVG: one slice per row.
    Pie(PieSpec),
}

/// Every render kind's wire name, in a stable order.
pub const RENDER_KINDS: [&str; 7] = ["table", "scalar", "bar", "line", "area", "scatter", "pie"];

/// A single value: the first row's `column`, with a label and a number format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarSpec {
    /// The column whose first-row value is shown.
    pub column: String,
    /// What the value is, for a human; default: the column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Decimals shown for a number (0..=10); default: as the database gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Text after the number (`%`, ` ms`, ` EUR`), at most 16 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A line, area or scatter chart: `x` numeric or temporal, one series per `y` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XySpec {
    /// Column of the horizontal axis: a number, date, time or timestamp.
    pub x: String,
    /// Columns of the values (one series each).
    pub y: Vec<String>,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Most points drawn over all series; the agent's policy may lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u32>,
}

/// A pie chart: one slice per row, labelled by `label`, sized by `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieSpec {
    /// Column of the slice names.
    pub label: String,
    /// Column of the slice sizes (numbers, none negative).
    pub value: String,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A table rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// JSON or HTML.
    #[serde(default)]
    pub format: TableFormat,
    /// Row cap requested by the job; the agent's policy may lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u32>,
}

/// A bar chart rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarSpec {
    /// Column holding the category labels.
    pub x: String,
    /// Columns holding the numeric values (one series each).
    pub y: Vec<String>,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Series stacked on each other instead of side by side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stacked: bool,
}

impl RenderSpec {
    /// The kind's name on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderSpec::Table(_) => "table",
            RenderSpec::Scalar(_) => "scalar",
            RenderSpec::Bar(_) => "bar",
            RenderSpec::Line(_) => "line",
            RenderSpec::Area(_) => "area",
            RenderSpec::Scatter(_) => "scatter",
            RenderSpec::Pie(_) => "pie",
        }
    }

    /// The columns the spec reads: `(column, role)`, role saying what it needs to be.
    pub fn columns(&self) -> Vec<(&str, ColumnRole)> {
        match self {
            RenderSpec::Table(_) => Vec::new(),
            RenderSpec::Scalar(s) => vec![(s.column.as_str(), ColumnRole::Any)],
            RenderSpec::Bar(b) => {
                let mut v = vec![(b.x.as_str(), ColumnRole::Label)];
                v.extend(b.y.iter().map(|c| (c.as_str(), ColumnRole::Number)));
                v
            }
            RenderSpec::Line(s) | RenderSpec::Area(s) | RenderSpec::Scatter(s) => {
                let mut v = vec![(s.x.as_str(), ColumnRole::Axis)];
                v.extend(s.y.iter().map(|c| (c.as_str(), ColumnRole::Number)));
                v
            }
            RenderSpec::Pie(p) => vec![(p.label.as_str(), ColumnRole::Label), (p.value.as_str(), ColumnRole::Number)],
        }
    }
}

/// What a render spec needs a column to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// Anything (shown as text).
    Any,
    /// Category labels (anything, shown as text).
    Label,
    /// Numbers drawn to scale.
    Number,
    /// A numeric or temporal axis.
    Axis,
}

/// Output format of a table rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// `application/json`: columns and rows.
    #[default]
    Json,
    /// `text/html`: an escaped `<table>`.
    Html,
}

/// Cache instructions of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// A cached result older than this is not used; 0 means always run the query.
    #[serde(default)]
    pub max_age_secs: u64,
}

/// Why a name (agent, connection) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit")]
pub struct InvalidName;

/// Prefix of a job audience that names a pool rather than one agent: `pool:<name>`.
pub const POOL_PREFIX: &str = "pool:";

/// The pool name of a `pool:<name>` audience, or `None` for an agent's name.
pub fn pool_of(audience: &str) -> Option<&str> {
    audience.strip_prefix(POOL_PREFIX)
}

/// Checks a job audience: an agent name, or `pool:` and a pool name.
pub fn validate_audience(audience: &str) -> Result<(), InvalidName> {
    validate_name(pool_of(audience).unwrap_or(audience))
}

/// Checks an agent or connection name: short, lower-case, safe in paths and certificate subjects.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName)
    }
}

impl JobSpec {
    /// Checks the limits that do not depend on the verifier's clock or identity.
    pub fn check_shape(&self) -> Result<(), String> {
        if validate_name(&self.connection).is_err() {
            return Err(format!("connection: {}", InvalidName));
        }
        if self.sql.trim().is_empty() {
            return Err("sql: must not be empty".into());
        }
        if self.sql.len() > MAX_SQL_LEN {
            return Err(format!("sql: longer than {MAX_SQL_LEN} bytes"));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(format!("params: more than {MAX_PARAMS}"));
        }
        if self.expires_at <= self.issued_at {
            return Err("expires_at: must be after issued_at".into());
        }
        if let Some(r) = &self.requester {
            r.check()?;
        }
        if let Some(t) = self.timeout_secs {
            if !(1..=MAX_TIMEOUT_SECS).contains(&t) {
                return Err(format!("timeout_secs: must be between 1 and {MAX_TIMEOUT_SECS}"));
            }
        }
        match &self.render {
            RenderSpec::Bar(BarSpec { y, .. })
            | RenderSpec::Line(XySpec { y, .. })
            | RenderSpec::Area(XySpec { y, .. })
            | RenderSpec::Scatter(XySpec { y, .. })
                if y.is_empty() =>
            {
                return Err("render.y: must name at least one column".into());
            }
            RenderSpec::Scalar(ScalarSpec { decimals: Some(d), .. }) if *d > 10 => {
                return Err("render.decimals: at most 10".into());
            }
            RenderSpec::Scalar(ScalarSpec { unit: Some(u), .. }) if u.chars().count() > 16 => {
                return Err("render.unit: at most 16 characters".into());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_have_a_stable_tagged_shape() {
        let p = vec![Param::Null, Param::Int(7), Param::Text("x".into())];
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(json, r#"[{"type":"null"},{"type":"int","value":7},{"type":"text","value":"x"}]"#);
        let back: Vec<Param> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, p);
    }

    #[test]
    fn render_spec_refuses_unknown_fields_and_kinds() {
        assert!(serde_json::from_str::<RenderSpec>(r#"{"kind":"bar","x":"a","y":["b"]}"#).is_ok());
        assert!(serde_json::from_str::<RenderSpec>(r#"{"kind":"bar","x":"a","y":["b"],"z":1}"#).is_err());
        assert!(serde_json::from_str::<RenderSpec>(r#"{"kind":"pie3d"}"#).is_err());
    }

    #[test]
    fn a_requester_is_bounded_and_printable() {
        let r = Requester {
            user_id: "u1".into(),
            user: "alice".into(),
            via: "session".into(),
            project: None,
            query: None,
            customer: Some("acme".into()),
        };
        assert!(r.check().is_ok());
        assert!(Requester { user: "a\nb".into(), ..r.clone() }.check().is_err());
        assert!(Requester { customer: Some("x".repeat(129)), ..r.clone() }.check().is_err());
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(json, r#"{"user_id":"u1","user":"alice","via":"session","customer":"acme"}"#);
    }

    #[test]
    fn names_are_restricted() {
        assert!(validate_name("edge-01.eu").is_ok());
        for bad in ["", "Edge", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert_eq!(validate_name(bad), Err(InvalidName), "{bad:?}");
        }
    }
}
