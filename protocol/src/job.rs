//! The job specification: what a signed job asks the agent to do.
//!
//! A `JobSpec` is serialised to JSON once, by the signer, and the agent parses the very
//! bytes that were signed. Unknown fields are refused so that a field added by a newer
//! signer is never silently ignored by an older agent; the `version` field says which
//! shape to expect.

use serde::{Deserialize, Serialize};

mod render;
pub use render::*;

/// The only job-spec version this build understands.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest accepted name of an agent or a connection.
pub const MAX_NAME_LEN: usize = 64;

/// Largest SQL text accepted in a job (bytes).
pub const MAX_SQL_LEN: usize = 64 * 1024;

/// Most parameters a job may carry.
pub const MAX_PARAMS: usize = 256;

/// Most series a chart may draw (`y` columns, or `series` values): one colour each.
pub const MAX_SERIES: usize = 10;

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
    /// How the request was authenticated: `session`, or `token:ID` for an API token;
    /// `schedule` when a project's schedule ran it as its owner.
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

/// A typed query parameter, bound to `$1`, `$2`, ... in order: `{"type": "int", "value": 5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "value", rename_all = "snake_case", deny_unknown_fields)]
pub enum Param {
    /// SQL NULL: `{"type": "null"}`.
    Null,
    /// A boolean: `{"type": "bool", "value": true}`.
    Bool(bool),
    /// A 64-bit signed integer: `{"type": "int", "value": 5}`.
    Int(i64),
    /// A 64-bit float: `{"type": "float", "value": 2.5}`.
    Float(f64),
    /// Text: `{"type": "text", "value": "EMEA"}`.
    Text(String),
}

/// Cache instructions of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
        if let RenderSpec::Catalog(_) = self.render {
            // A catalog job runs the agent's own metadata queries, nothing of the job's.
            if !self.sql.is_empty() || !self.params.is_empty() {
                return Err("sql: a catalog job carries no SQL and no parameters".into());
            }
        } else if self.sql.trim().is_empty() {
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
        self.render.check()
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
    fn params_refuse_unknown_keys_and_wrong_value_types() {
        for bad in [
            r#"{"type":"int","value":5,"valeu":6}"#,
            r#"{"type":"int","value":"5"}"#,
            r#"{"type":"int"}"#,
            r#"{"type":"integer","value":5}"#,
            r#"{"value":5}"#,
        ] {
            assert!(serde_json::from_str::<Param>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::from_str::<Param>(r#"{"type":"null"}"#).ok(), Some(Param::Null));
        assert_eq!(serde_json::from_str::<Param>(r#"{"type":"float","value":5}"#).ok(), Some(Param::Float(5.0)));
    }

    /// Issue 23: charts take a number format (`compact`, `percent`, `currency` with its
    /// ISO code) and a unit, checked before the job is signed.
    #[test]
    fn chart_formats_are_optional_and_checked() {
        let plain: RenderSpec = serde_json::from_str(r#"{"kind":"line","x":"d","y":["v"]}"#).expect("parses");
        assert_eq!(serde_json::to_string(&plain).ok().as_deref(), Some(r#"{"kind":"line","x":"d","y":["v"]}"#));
        assert_eq!(bar(r#"{"kind":"bar","x":"m","y":["v"],"format":"compact","unit":"EUR"}"#), Ok(()));
        assert_eq!(bar(r#"{"kind":"pie","label":"m","value":"v","format":"currency","unit":"EUR"}"#), Ok(()));
        assert_eq!(bar(r#"{"kind":"area","x":"m","y":["v"],"format":"percent","decimals":1}"#), Ok(()));
        let e = bar(r#"{"kind":"line","x":"m","y":["v"],"format":"currency","unit":"euros"}"#).expect_err("code");
        assert!(e.starts_with("render.unit: a currency format needs the ISO 4217 code"), "{e}");
        let e = bar(r#"{"kind":"bar","x":"m","y":["v"],"format":"currency"}"#).expect_err("no code");
        assert!(e.starts_with("render.unit: "), "{e}");
        let e = bar(r#"{"kind":"bar","x":"m","y":["v"],"format":"percent","unit":"%"}"#).expect_err("percent");
        assert!(e.starts_with("render.unit: a percent format adds %"), "{e}");
        let e = bar(r#"{"kind":"scatter","x":"m","y":["v"],"decimals":11}"#).expect_err("decimals");
        assert_eq!(e, "render.decimals: at most 10");
        assert!(bar(r#"{"kind":"bar","x":"m","y":["v"],"format":"fancy"}"#).is_err());
        assert_eq!(bar(r#"{"kind":"scalar","column":"n","format":"compact"}"#), Ok(()));
        let e = bar(r#"{"kind":"scalar","column":"n","format":"currency","unit":"€"}"#).expect_err("code");
        assert!(e.starts_with("render.unit: a currency format needs"), "{e}");
    }

    /// Issue 23: lines, areas and scatter plots take their series from a column too.
    #[test]
    fn a_line_series_column_takes_one_y_and_a_third_column() {
        assert_eq!(bar(r#"{"kind":"line","x":"d","y":["v"],"series":"r"}"#), Ok(()));
        assert_eq!(bar(r#"{"kind":"area","x":"d","y":["v"],"series":"r"}"#), Ok(()));
        let e = bar(r#"{"kind":"line","x":"d","y":["v","w"],"series":"r"}"#).expect_err("two y");
        assert!(e.starts_with("render.series: "), "{e}");
        let e = bar(r#"{"kind":"area","x":"d","y":["v"],"series":"d"}"#).expect_err("series is x");
        assert!(e.contains("already the x column"), "{e}");
        assert_eq!(bar(r#"{"kind":"scatter","x":"d","y":["v"],"series":"r"}"#), Ok(()));
        // A right axis (dual axis), within the ten colours.
        assert_eq!(bar(r#"{"kind":"line","x":"d","y":["v"],"y2":["w"],"series":"r"}"#), Ok(()));
        let e = bar(r#"{"kind":"line","x":"d","y":["a","b","c","d","e","f"],"y2":["g","h","i","j","k"]}"#)
            .expect_err("eleven");
        assert!(e.starts_with("render.y2: y and y2 name at most 10"), "{e}");
        let plain: RenderSpec = serde_json::from_str(r#"{"kind":"line","x":"d","y":["v"]}"#).expect("parses");
        assert!(!serde_json::to_string(&plain).unwrap_or_default().contains("y2"));
        let spec: RenderSpec =
            serde_json::from_str(r#"{"kind":"line","x":"d","y":["v"],"series":"r"}"#).expect("parses");
        assert!(spec.columns().contains(&("r", ColumnRole::Label)));
    }

    fn bar(json: &str) -> Result<(), String> {
        serde_json::from_str::<RenderSpec>(json).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn a_series_column_takes_exactly_one_y_and_a_third_column() {
        assert_eq!(bar(r#"{"kind":"bar","x":"m","y":["v"],"series":"r","stacked":true}"#), Ok(()));
        let e = bar(r#"{"kind":"bar","x":"m","y":["v","w"],"series":"r"}"#).expect_err("two y");
        assert!(e.starts_with("render.series: ") && e.contains("y names 2"), "{e}");
        let e = bar(r#"{"kind":"bar","x":"m","y":["v"],"series":"m"}"#).expect_err("series is x");
        assert_eq!(e, r#"render.series: "m" is already the x column; name a third column"#);
        let e = bar(r#"{"kind":"bar","x":"m","y":["v"],"series":"v"}"#).expect_err("series is y");
        assert!(e.contains("already the y column"), "{e}");
        let e = bar(r#"{"kind":"bar","x":"m","y":[],"series":"r"}"#).expect_err("no y");
        assert_eq!(e, "render.y: must name at least one column");
        // Without `series`, a wire-format job is unchanged (old agents refuse the new field).
        let plain: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"m","y":["v"]}"#).expect("parses");
        assert_eq!(serde_json::to_string(&plain).ok().as_deref(), Some(r#"{"kind":"bar","x":"m","y":["v"]}"#));
    }

    #[test]
    fn charts_take_at_most_ten_y_columns() {
        let y: Vec<String> = (0..=MAX_SERIES).map(|i| format!("\"c{i}\"")).collect();
        let e = bar(&format!(r#"{{"kind":"line","x":"t","y":[{}]}}"#, y.join(","))).expect_err("eleven");
        assert_eq!(e, "render.y: at most 10 columns (one colour each), got 11");
        assert_eq!(bar(&format!(r#"{{"kind":"bar","x":"t","y":[{}]}}"#, y[..10].join(","))), Ok(()));
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
    fn a_catalog_job_carries_no_sql_and_bounded_caps() {
        let render: RenderSpec =
            serde_json::from_str(r#"{"kind":"catalog","max_tables":500,"max_columns":10000}"#).expect("parses");
        assert_eq!(render, RenderSpec::Catalog(CatalogSpec { max_tables: 500, max_columns: 10_000 }));
        assert_eq!(render.kind(), "catalog");
        assert!(render.columns().is_empty());
        let job = JobSpec {
            version: PROTOCOL_VERSION,
            job_id: "00000000-0000-4000-8000-000000000001".into(),
            audience: "edge-1".into(),
            issued_at: 1,
            expires_at: 2,
            nonce: "00".into(),
            connection: "sample".into(),
            sql: String::new(),
            params: Vec::new(),
            render,
            cache: CacheSpec::default(),
            timeout_secs: None,
            requester: None,
        };
        assert_eq!(job.check_shape(), Ok(()));
        let with_sql = JobSpec { sql: "SELECT 1".into(), ..job.clone() };
        assert_eq!(with_sql.check_shape(), Err("sql: a catalog job carries no SQL and no parameters".into()));
        let zero =
            JobSpec { render: RenderSpec::Catalog(CatalogSpec { max_tables: 0, max_columns: 1 }), ..job.clone() };
        assert_eq!(zero.check_shape(), Err("render.max_tables: must be between 1 and 5000".into()));
        // Any other kind still needs SQL.
        let table = JobSpec { render: RenderSpec::Table(TableSpec::default()), ..job };
        assert_eq!(table.check_shape(), Err("sql: must not be empty".into()));
        assert!(
            serde_json::from_str::<RenderSpec>(r#"{"kind":"catalog","max_tables":1,"max_columns":1,"x":1}"#).is_err()
        );
        // Not a kind API clients may ask for.
        assert!(!RENDER_KINDS.contains(&"catalog"));
    }

    #[test]
    fn names_are_restricted() {
        assert!(validate_name("edge-01.eu").is_ok());
        for bad in ["", "Edge", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert_eq!(validate_name(bad), Err(InvalidName), "{bad:?}");
        }
    }
}
