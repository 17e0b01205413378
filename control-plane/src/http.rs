//! HTTP plumbing shared by both listeners: bounded body reads, JSON responses, the JSON
//! error shape `{"code": ..., "message": ...}`, and percent-encoding of URL parts.
//!
//! It sits below every handler (API, console, agent listener, enrolment, single sign-on),
//! so that each can answer in the same shape without importing the layer that serves it.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

mod explain;
pub(crate) use explain::did_you_mean;

/// Response body type of every handler.
pub type Body = Full<Bytes>;

/// An error answered to the client: a status, a stable code, a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable short name.
    pub code: &'static str,
    /// One line for a human; never secrets or internals.
    pub message: String,
    /// Seconds for a `Retry-After` header (a refusal that passes).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// The same, with `Retry-After: secs`.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 400 naming the field.
    pub fn bad_field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", format!("{field}: {message}"))
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 500; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "Request failed inside the control plane.");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the control plane's log")
    }

    /// Renders the error as a response.
    pub fn into_response(self) -> Response<Body> {
        let mut res =
            json(self.status, &outpost_protocol::wire::ErrorBody { code: self.code.to_owned(), message: self.message });
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::AgentRefused { revoked_at: Some(_), .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                "agent_revoked",
                "this agent has been revoked; it must be enrolled again",
            ),
            crate::store::StoreError::AgentRefused { revoked_at: None, .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "unknown_agent", "this certificate belongs to no enrolled agent")
            }
            crate::store::StoreError::CertificateSuperseded { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                "certificate_superseded",
                "this agent was enrolled again; this certificate is no longer accepted",
            ),
            other => ApiError::internal(other),
        }
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, "application/json", body)
}

/// A response with the given content type and the security headers every response carries.
pub fn bytes_response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Rendered results come from agents, which are not trusted to produce safe markup:
    // nothing in a response may run script or load anything.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"),
    );
    res
}

/// Reads a request body of at most `max` bytes: the one capped body read of the control plane.
#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {max} bytes"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("could not read request body: {e}"))),
    }
}

/// Parses JSON, naming the offending field (dotted path) in the error; a refused
/// parameter is explained (`explain::param`).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // The error path only: the body again as a value, to show what was given.
        let root = serde_json::from_slice::<serde_json::Value>(bytes).ok();
        located(root.as_ref(), e.path(), "", &e.inner().to_string())
    })
}

/// Parses an already-decoded JSON value, naming fields as `prefix.field`.
pub fn parse_value_at<T: serde::de::DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&value)
        .map_err(|e| located(Some(&value), e.path(), prefix, &e.inner().to_string()))
}

/// `prefix.path`, or either alone.
fn joined(prefix: &str, path: &str) -> String {
    match (prefix, path) {
        (_, "." | "") => prefix.to_owned(),
        ("", _) => path.to_owned(),
        (_, _) if path.starts_with('[') => format!("{prefix}{path}"),
        _ => format!("{prefix}.{path}"),
    }
}

/// The 400 for serde's `msg` at `path` (under `prefix`) of `root`: a parameter (the
/// innermost `params[i]` on the path; every `params` list of the API holds job
/// parameters) is explained in the API's words, anything else keeps serde's message with
/// Rust's type names replaced.
fn located(root: Option<&serde_json::Value>, path: &serde_path_to_error::Path, prefix: &str, msg: &str) -> ApiError {
    use serde_path_to_error::Segment;
    let mut at = prefix.to_owned();
    let mut here = root;
    let mut param = None;
    let mut after_params = false;
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                at = format!("{at}[{index}]");
                here = here.and_then(|v| v.get(index));
                if after_params {
                    param = here.map(|v| (at.clone(), v, *index));
                }
                after_params = false;
            }
            Segment::Map { key } => {
                at = joined(&at, key);
                here = here.and_then(|v| v.get(key));
                after_params = key == "params";
            }
            Segment::Enum { .. } | Segment::Unknown => {
                here = None;
                after_params = false;
            }
        }
    }
    let explained = param.and_then(|(at, v, i)| explain::param(v, i + 1).map(|(under, m)| (format!("{at}{under}"), m)));
    let (field, message) = explained.unwrap_or_else(|| (joined(prefix, &path.to_string()), strip_position(msg)));
    if field.is_empty() {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    } else {
        ApiError::bad_field(&field, message)
    }
}

/// Parses a render spec, naming the exact field on error. Serde buffers internally
/// tagged enums, which hides the field path, so the kind is read first and the rest is
/// parsed as that kind's struct; refusals are explained (`explain::render_kind`,
/// `explain::render_option`).
pub fn parse_render(value: serde_json::Value) -> Result<outpost_protocol::RenderSpec, ApiError> {
    use outpost_protocol::RenderSpec;
    if let Some((field, message)) = explain::render_kind(&value) {
        return Err(ApiError::bad_field(field, message));
    }
    let serde_json::Value::Object(mut map) = value else {
        return Err(ApiError::bad_field("render", "must be an object with a `kind`"));
    };
    let kind = match map.remove("kind") {
        Some(serde_json::Value::String(k)) => k,
        _ => return Err(ApiError::bad_field("render.kind", "must be a string")),
    };
    let rest = serde_json::Value::Object(map);
    let spec = match kind.as_str() {
        "table" => RenderSpec::Table(parse_options(&kind, &rest)?),
        "scalar" => RenderSpec::Scalar(parse_options(&kind, &rest)?),
        "bar" => RenderSpec::Bar(parse_options(&kind, &rest)?),
        "line" => RenderSpec::Line(parse_options(&kind, &rest)?),
        "area" => RenderSpec::Area(parse_options(&kind, &rest)?),
        "scatter" => RenderSpec::Scatter(parse_options(&kind, &rest)?),
        "pie" => RenderSpec::Pie(parse_options(&kind, &rest)?),
        other => {
            let kinds = outpost_protocol::RENDER_KINDS.join(", ");
            return Err(ApiError::bad_field("render.kind", format!("{other:?} is not a render kind; one of {kinds}")));
        }
    };
    // What serde cannot check (bounds, a series column with one y), so that a project
    // is refused when saved rather than when it runs.
    spec.check().map_err(|m| {
        let (field, msg) = m.split_once(": ").unwrap_or(("render", m.as_str()));
        ApiError::bad_field(field, msg)
    })?;
    Ok(spec)
}

/// The options of a render spec of `kind` (the spec without `kind`), as that kind's struct.
fn parse_options<T: serde::de::DeserializeOwned>(kind: &str, options: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(options).map_err(|e| {
        let field = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let at = joined("render", &e.path().to_string());
        let msg = strip_position(&e.inner().to_string());
        let message = explain::render_option(kind, options, field.as_deref(), &msg).unwrap_or(msg);
        ApiError::bad_field(&at, message)
    })
}

fn strip_position(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    explain::in_users_words(msg)
}

/// An empty 204 answer.
pub fn no_content() -> Response<Body> {
    bytes_response(StatusCode::NO_CONTENT, "application/json", Vec::new())
}

/// `?key=true|false` (absent: false); anything else is a 400 naming the key.
pub fn bool_param(query: Option<&str>, key: &str) -> Result<bool, ApiError> {
    match query_param(query, key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::bad_field(key, "must be true or false")),
    }
}

/// The value of `key` in a query string.
pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Percent-encodes everything but unreserved characters (for a path segment or query value).
pub fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(char::from(b));
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// Decodes `%XX` and `+` in a query value.
pub fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let h = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        agent: String,
        render: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        y: Vec<String>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Req>(br#"{"agent":"a","render":{"y":5}}"#).expect_err("bad type");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("render.y: invalid type"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"render":{"y":[]}}"#).expect_err("missing");
        assert!(e.message.contains("missing field `agent`"), "{}", e.message);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("jobs.%2A+x").as_deref(), Some("jobs.* x"));
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn path_segments_and_query_values_are_percent_encoded() {
        assert_eq!(pct("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn query_params_are_found() {
        assert_eq!(query_param(Some("a=1&wait=30"), "wait"), Some("30"));
        assert_eq!(query_param(None, "wait"), None);
    }
}
