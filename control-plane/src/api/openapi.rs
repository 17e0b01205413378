//! The OpenAPI 3.0 document of the API, generated from [`crate::api::ROUTES`] (so every
//! route is in it, with the scope it needs) and served at `/v1/openapi.json`. The copy in
//! `docs/openapi.json` is checked against it by a test.

use serde_json::{json, Value};

use crate::api::{Auth, RouteId, ROUTES};

mod embed;
mod error;
mod parameters;
mod tiles;

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props })
}

fn strict(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(key: &str, item: Value) -> Value {
    obj(&[key], json!({ key: { "type": "array", "items": item } }))
}

fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}
fn int_or_null() -> Value {
    json!({ "type": "integer", "format": "int64", "nullable": true })
}
fn string() -> Value {
    json!({ "type": "string" })
}
/// A project's own embed origins (a project narrows the control plane's list).
fn embed_origins() -> Value {
    json!({ "type": "array", "maxItems": 32, "items": { "type": "string", "example": "https://app.example.com" },
            "description": "Origins that may frame the project's embed page, each one listed in the control plane's \
                            embed.frame_ancestors; empty: all of those. Omitted on an update: kept. Shown to editors." })
}

fn string_or_null() -> Value {
    json!({ "type": "string", "nullable": true })
}

/// `schema` that may also be null.
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// `timeout_secs` of a job or a saved query, as `JobSpec::check_shape` bounds it.
fn timeout_secs() -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": outpost_protocol::job::MAX_TIMEOUT_SECS, "nullable": true,
            "description": "statement timeout asked for, seconds; the agent's own timeout for the connection caps it" })
}

/// `params`: typed positional parameters for `$1`, `$2`, ...
fn params() -> Value {
    json!({ "type": "array", "items": r("Param"), "maxItems": outpost_protocol::job::MAX_PARAMS,
            "description": "typed parameters bound to $1, $2, ... in order (never interpolated)" })
}

/// The render spec of a schema browser's catalog job, as `GET /v1/jobs/{id}/spec` shows
/// it (the control plane signs these; `POST /v1/jobs` does not take them).
fn catalog_render() -> Value {
    use outpost_protocol::job::{MAX_CATALOG_COLUMNS, MAX_CATALOG_TABLES};
    strict(
        &["kind", "max_tables", "max_columns"],
        json!({ "kind": { "type": "string", "enum": ["catalog"] },
                "max_tables": { "type": "integer", "minimum": 1, "maximum": MAX_CATALOG_TABLES },
                "max_columns": { "type": "integer", "minimum": 1, "maximum": MAX_CATALOG_COLUMNS } }),
    )
}

/// The schema browser's answer (`outpost_protocol::catalog::Catalog` and where it came from).
fn schema_catalog() -> Value {
    let column = obj(
        &["name", "type", "nullable", "masked"],
        json!({ "name": string(), "type": string(), "nullable": { "type": "boolean" },
                "masked": { "type": "boolean", "description": "a mask rule of the agent's egress policy covers it" } }),
    );
    let table = obj(
        &["schema", "name", "kind", "row_estimate", "columns"],
        json!({ "schema": string(), "name": string(), "kind": { "type": "string", "enum": ["table", "view"] },
                "row_estimate": { "type": "integer", "format": "int64", "nullable": true,
                    "description": "the database's estimate (PostgreSQL reltuples, MySQL/MariaDB TABLE_ROWS, SQLite a count capped at 100000); null when unknown" },
                "columns": { "type": "array", "items": column } }),
    );
    obj(
        &["agent", "connection", "job_id", "fetched_at", "cached", "max_age_secs", "truncated", "tables"],
        json!({
            "agent": string(), "connection": string(),
            "job_id": { "type": "string", "description": "the catalog job that read it" },
            "fetched_at": { "type": "integer", "format": "int64", "description": "when the agent's answer arrived (unix seconds)" },
            "cached": { "type": "boolean", "description": "served from the control plane's cache, without a job" },
            "max_age_secs": { "type": "integer", "format": "int64", "description": "schema_cache_secs" },
            "truncated": { "type": "boolean",
                "description": "the catalog was cut at the caps (2000 tables, 50000 columns, or the agent's max_points)" },
            "tables": { "type": "array", "items": table } }),
    )
}

fn components() -> Value {
    let role = json!({ "type": "string", "enum": ["admin", "editor", "viewer"] });
    let grant = json!({ "type": "string", "enum": ["view-app", "view-logic", "edit"] });
    let scope_names: Vec<&str> = crate::auth::access::Scope::ALL.iter().map(|s| s.as_str()).collect();
    let mut doc = json!({
        "securitySchemes": {
            "apiToken": { "type": "http", "scheme": "bearer", "description": "An API token (opat_…)." },
            "session": { "type": "apiKey", "in": "cookie", "name": crate::auth::access::SESSION_COOKIE,
                         "description": "The session cookie from POST /v1/sessions; state-changing requests also need the X-CSRF-Token header." },
            "embedToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An embed token (EdDSA JWT)." }
        },
        "schemas": {
            "Error": error::schema(),
            "Role": role,
            "Grant": grant,
            "Scope": { "type": "string", "enum": scope_names },
            "User": obj(&["name", "role", "disabled", "created_at", "has_password"], json!({
                "name": string(), "role": r("Role"), "disabled": { "type": "boolean" }, "disabled_at": int_or_null(),
                "created_at": int(), "last_sign_in": int_or_null(), "has_password": { "type": "boolean" } })),
            "Group": obj(&["name", "created_at", "members"], json!({
                "name": string(), "created_at": int(), "members": { "type": "array", "items": string() } })),
            "Share": obj(&["id", "agent", "connection", "created_at", "created_by"], json!({
                "id": string(), "agent": string(), "connection": string(), "user": string_or_null(),
                "group": string_or_null(), "created_at": int(), "created_by": string() })),
            "Token": obj(&["id", "name", "user", "scopes", "status", "created_at"], json!({
                "id": string(), "name": string(), "user": string(), "scopes": { "type": "array", "items": string() },
                "status": { "type": "string", "enum": ["active", "expired", "revoked"] }, "created_at": int(),
                "expires_at": int_or_null(), "last_used": int_or_null(), "revoked_at": int_or_null() })),
            "Agent": obj(&["name", "status", "enrolled_at", "connections", "cert_not_after"], json!({
                "name": string(), "status": { "type": "string", "enum": ["online", "offline", "revoked"] },
                "revoked_at": int_or_null(), "offline_since": int_or_null(), "enrolled_at": int(),
                "last_seen": int_or_null(), "seconds_since_seen": int_or_null(), "version": string_or_null(),
                "connections": { "type": "array", "items": string() }, "cert_not_after": int(),
                "pool": string_or_null() })),
            "Job": obj(&["id", "name", "state", "created_at", "expires_at", "attempts"], json!({
                "id": string(),
                "name": { "type": "string", "description": "its project query's name, or the first line of its SQL (a leading `--` comment without the dashes), cut to 80 characters" },
                "sql": { "type": "string", "description": "the job's SQL: only with GET /v1/jobs?sql=true, and only to callers who may read it" },
                "requester": { "type": "string", "description": "the user who dispatched it; hidden, with agent and connection, from view-app viewers" },
                "agent": string(), "pool": string(), "connection": string(),
                "state": { "type": "string", "enum": ["queued", "leased", "cancelling", "succeeded", "failed", "rejected", "expired", "cancelled"] },
                "created_at": int(), "expires_at": int(), "finished_at": int_or_null(), "attempts": int(),
                "reason": obj(&["code", "message"], json!({ "code": string(), "message": string() })),
                "stats": { "type": "object" }, "content_type": string(), "cancel_requested_at": int(),
                "project_id": string(), "query_index": int(), "customer": string(),
                "filters": { "type": "object", "additionalProperties": {},
                             "description": "GET /v1/jobs/{id} only: the dashboard filter values a project job ran with, by parameter name (those its query binds)" } })),
            "ProjectQuery": strict(&["name", "agent", "connection", "sql", "render"], json!({
                "name": string(), "agent": string(), "connection": string(), "sql": string(),
                "params": params(), "render": r("RenderSpec"),
                "cache": r("CacheSpec"), "timeout_secs": timeout_secs(),
                "customer_param": { "type": "integer", "minimum": 1, "maximum": 65535,
                    "description": "1-based position of the parameter that receives the end customer id" },
                "bind": parameters::bind() })),
            "Tile": tiles::tile(),
            "Parameter": parameters::parameter(),
            "ProjectIn": strict(&["name", "queries"], json!({
                "name": string(), "queries": { "type": "array", "items": r("ProjectQuery") },
                "embed_origins": embed_origins(), "tiles": tiles::tiles(), "parameters": parameters::parameters(),
                "schedule": nullable(strict(&["cron", "timezone"], json!({
                    "cron": { "type": "string", "example": "0 6 * * 1-5",
                              "description": "five fields: minute hour day-of-month month weekday (0 and 7: Sunday), \
                                              or @hourly, @daily, @weekly, @monthly; no more often than \
                                              schedules.min_interval_secs (default 300)" },
                    "timezone": { "type": "string", "example": "Europe/Berlin",
                                  "description": "IANA time zone the pattern is read in" },
                    "customers": { "type": "array", "maxItems": 100, "items": { "type": "string", "minLength": 1, "maxLength": 128 },
                                   "description": "end customers each run is for: required when a query has customer_param, \
                                                   refused when none has" } }))),
            })),
            "Project": obj(&["id", "name", "owner", "access", "created_at", "updated_at", "queries"], json!({
                "id": string(), "name": string(), "owner": string(),
                "access": { "type": "string", "enum": ["admin", "owner", "edit", "view-logic", "view-app"] },
                "created_at": int(), "updated_at": int(),
                "queries": { "type": "array", "items": obj(&["index", "name"], json!({ "index": int(), "name": string() })),
                             "description": "SQL, parameters, connection and render spec only with view-logic, edit, ownership or admin" },
                "grants": { "type": "array", "items": obj(&["user", "access"], json!({ "user": string(), "access": r("Grant") })) },
                "embed_origins": embed_origins(), "tiles": tiles::tiles(), "parameters": parameters::parameters(),
                "schedule": nullable(obj(&["description", "timezone", "next_run_at"], json!({
                    "description": { "type": "string", "example": "Every weekday at 06:00" },
                    "timezone": string(), "next_run_at": int_or_null(),
                    "cron": { "type": "string", "description": "only with view-logic, edit, ownership or admin" },
                    "customers": { "type": "array", "items": string(),
                                   "description": "only with view-logic, edit, ownership or admin" } }))) })),
            "AuditEvent": obj(&["seq", "at", "actor", "credential", "action", "outcome", "status"], json!({
                "seq": int(), "at": int(), "actor": string(), "credential": string(), "action": string(),
                "target": string(), "outcome": { "type": "string", "enum": ["ok", "denied", "failed"] },
                "status": int(), "remote": string(), "detail": {} })),
        }
    });
    // RenderSpec, Param, CacheSpec and their parts, derived from the types serde parses.
    if let Some(schemas) = doc["schemas"].as_object_mut() {
        schemas.insert("SchemaCatalog".into(), schema_catalog());
        schemas.insert("CatalogRender".into(), catalog_render());
        schemas.extend(outpost_protocol::schema::openapi_components());
    }
    doc
}

/// (request body schema, success status, success schema) of a route.
fn shapes(id: RouteId) -> (Option<Value>, &'static str, Value) {
    use RouteId::*;
    let none = || json!({ "type": "object" });
    match id {
        SessionCreate => (
            Some(strict(
                &["user", "password"],
                json!({ "user": string(), "password": { "type": "string", "format": "password" } }),
            )),
            "201",
            obj(
                &["user", "role", "csrf_token", "expires_at", "idle_timeout_secs"],
                json!({
                "user": string(), "role": r("Role"), "csrf_token": string(), "expires_at": int(), "idle_timeout_secs": int() }),
            ),
        ),
        SessionDelete | GroupsDelete | GroupMemberAdd | GroupMemberRemove | SharesDelete | ProjectsDelete
        | ProjectGrantRemove | TokensRevoke => (None, "204", none()),
        ProjectGrantSet => (Some(strict(&["access"], json!({ "access": r("Grant") }))), "204", none()),
        Me => (
            None,
            "200",
            obj(
                &["user", "role", "scopes", "credential"],
                json!({
            "user": string(), "role": r("Role"), "scopes": { "type": "array", "items": r("Scope") },
            "credential": { "type": "string", "enum": ["session", "token"] }, "csrf_token": string_or_null() }),
            ),
        ),
        UsersList => (None, "200", list_of("users", r("User"))),
        UsersCreate => (
            Some(strict(
                &["name", "role"],
                json!({ "name": string(), "role": r("Role"), "password": { "type": "string", "format": "password" } }),
            )),
            "201",
            r("User"),
        ),
        UsersUpdate => (
            Some(strict(
                &[],
                json!({ "role": r("Role"), "disabled": { "type": "boolean" }, "password": { "type": "string", "format": "password" } }),
            )),
            "200",
            r("User"),
        ),
        GroupsList => (None, "200", list_of("groups", r("Group"))),
        GroupsCreate => (Some(strict(&["name"], json!({ "name": string() }))), "201", r("Group")),
        SharesList => (None, "200", list_of("shares", r("Share"))),
        SharesCreate => (
            Some(strict(
                &["agent", "connection"],
                json!({ "agent": string(), "connection": string(), "user": string(), "group": string() }),
            )),
            "201",
            r("Share"),
        ),
        AgentsList => (
            None,
            "200",
            obj(
                &["agents", "pools"],
                json!({
                    "agents": { "type": "array", "items": r("Agent") },
                    "pools": { "type": "array", "items": obj(&["name", "target", "members", "online"], json!({
                        "name": string(), "target": string(),
                        "members": { "type": "array", "items": string() }, "online": int() })) } }),
            ),
        ),
        AgentsRevoke => (
            None,
            "200",
            obj(
                &["agent", "status", "failed_jobs"],
                json!({
            "agent": string(), "status": string(), "failed_jobs": { "type": "array", "items": string() } }),
            ),
        ),
        AgentsAuditHead => (
            None,
            "200",
            obj(
                &["agent", "head", "received_at"],
                json!({
                    "agent": string(),
                    "head": nullable(obj(&["seq", "hash", "key", "signature"], json!({
                        "seq": int(), "hash": string(), "key": string(), "signature": string() }))),
                    "received_at": int_or_null() }),
            ),
        ),
        AgentsConnectionSchema => (None, "200", r("SchemaCatalog")),
        EnrolmentTokensCreate => (
            Some(strict(
                &["agent"],
                json!({ "agent": string(), "pool": string(), "ttl_secs": { "type": "integer", "minimum": 0 } }),
            )),
            "201",
            obj(
                &["token", "id", "agent", "expires_at"],
                json!({ "token": string(), "id": string(), "agent": string(), "pool": string_or_null(), "expires_at": int() }),
            ),
        ),
        EnrolmentTokensList => (
            None,
            "200",
            list_of(
                "tokens",
                obj(
                    &["id", "agent", "created_at", "expires_at"],
                    json!({ "id": string(), "agent": string(), "pool": string_or_null(),
                            "created_at": int(), "expires_at": int() }),
                ),
            ),
        ),
        EnrolmentTokensRevoke => (None, "204", none()),
        JobsList => (None, "200", list_of("jobs", r("Job"))),
        JobsDispatch => (
            Some(strict(
                &["agent", "connection", "sql", "render"],
                json!({
                "agent": { "type": "string",
                    "description": "an agent's name, or pool:NAME for one live member of that pool" },
                "connection": string(), "sql": string(), "params": params(),
                "render": r("RenderSpec"), "cache": r("CacheSpec"), "timeout_secs": timeout_secs() }),
            )),
            "202",
            obj(&["id", "state", "expires_at"], json!({ "id": string(), "state": string(), "expires_at": int() })),
        ),
        JobsRead => (None, "200", r("Job")),
        JobsSpec => (
            None,
            "200",
            obj(
                &["id", "connection", "sql", "params", "render", "issued_at", "expires_at"],
                json!({
                    "id": string(), "agent": string_or_null(), "pool": string_or_null(), "connection": string(),
                    "sql": string(), "params": { "type": "array", "items": r("Param") },
                    "render": { "oneOf": [r("RenderSpec"), r("CatalogRender")],
                                "description": "the job's render spec; a schema browser's catalog job (no SQL) says catalog" },
                    "cache": r("CacheSpec"), "timeout_secs": int_or_null(),
                    "requester": { "type": "object", "nullable": true }, "issued_at": int(), "expires_at": int() }),
            ),
        ),
        JobsResult | EmbedResult => (None, "200", json!({})),
        JobsCancel => (None, "200", obj(&["id", "state"], json!({ "id": string(), "state": string() }))),
        ProjectsList => (None, "200", list_of("projects", r("Project"))),
        ProjectsCreate => (Some(r("ProjectIn")), "201", r("Project")),
        ProjectsRead => (None, "200", r("Project")),
        ProjectsUpdate => (Some(r("ProjectIn")), "200", r("Project")),
        ProjectsRun => (
            Some(strict(&[], json!({ "customer": string(), "filters": parameters::filters() }))),
            "202",
            obj(
                &["project", "jobs"],
                json!({ "project": string(), "customer": string_or_null(), "filters": parameters::filters(),
                "jobs": { "type": "array", "items": obj(&["index", "name", "id"], json!({ "index": int(), "name": string(), "id": string() })) } }),
            ),
        ),
        ProjectsResults => (
            None,
            "200",
            obj(
                &["project", "queries"],
                json!({ "project": string(), "customer": string_or_null(), "filters": parameters::filters(),
            "queries": { "type": "array", "items": obj(&["index", "name"], json!({ "index": int(), "name": string(),
                "job": { "allOf": [r("Job")], "nullable": true,
                    "description": "the newest successful run (kept past retention, see results.keep_latest_secs); before the first one, the newest run" },
                "refresh": { "allOf": [r("Job")], "nullable": true,
                    "description": "a newer run than `job` that is still going or did not succeed" } })) } }),
            ),
        ),
        EmbedTokensCreate => embed::token_create(),
        EmbedTokensRevoke => {
            (None, "200", obj(&["project", "embed_epoch"], json!({ "project": string(), "embed_epoch": int() })))
        }
        EmbedProject => embed::project(),
        EmbedRun => embed::run(),
        TokensList => (None, "200", list_of("tokens", r("Token"))),
        TokensCreate => (
            Some(strict(
                &["name", "scopes"],
                json!({
                "name": string(), "scopes": { "type": "array", "items": string(), "description": "scope names, or [\"*\"] for all of the caller's" },
                "expires_in_days": { "type": "integer", "minimum": 0 }, "user": string() }),
            )),
            "201",
            obj(
                &["id", "token", "name", "user", "scopes", "expires_at"],
                json!({
                "id": string(), "token": string(), "name": string(), "user": string(),
                "scopes": { "type": "array", "items": string() }, "expires_at": int() }),
            ),
        ),
        AuditRead => (
            None,
            "200",
            obj(
                &["events", "next_after"],
                json!({
            "events": { "type": "array", "items": r("AuditEvent") }, "next_after": int_or_null() }),
            ),
        ),
        ResultsPurge => (
            Some(strict(&[], json!({ "older_than_secs": { "type": "integer", "minimum": 0 } }))),
            "200",
            obj(&["deleted", "older_than_secs"], json!({ "deleted": int(), "older_than_secs": int() })),
        ),
        OpenApi => (None, "200", json!({ "type": "object" })),
    }
}

fn query_params(id: RouteId) -> Vec<Value> {
    let q = |name: &str, schema: Value, d: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": d });
    let wait = || q("wait", json!({ "type": "integer", "minimum": 0 }), "seconds to wait for the result (at most 60)");
    match id {
        RouteId::JobsResult => vec![wait()],
        RouteId::EmbedResult => vec![wait(), embed::viewer_filters_query()],
        RouteId::EmbedProject => vec![embed::viewer_filters_query()],
        RouteId::JobsRead => vec![
            q(
                "wait",
                json!({ "type": "integer", "minimum": 0 }),
                "with `state`: seconds to wait for the job to leave that state (at most 60)",
            ),
            q("state", json!({ "type": "string" }), "the state the caller last saw (queued, leased, cancelling…)"),
        ],
        RouteId::JobsList => vec![
            q("all", json!({ "type": "boolean" }), "every user's jobs (admins)"),
            q("limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "at most this many"),
        ],
        RouteId::AgentsConnectionSchema => {
            vec![q("refresh", json!({ "type": "boolean" }), "ask the agent again instead of serving the kept catalog")]
        }
        RouteId::TokensList => vec![q("all", json!({ "type": "boolean" }), "every user's tokens (admins)")],
        RouteId::ProjectsResults => vec![
            q("customer", string(), "the end customer the project ran for"),
            q(
                "filters",
                string(),
                "a JSON object of parameter values (URL-encoded), as a run's filters; the results of exactly \
                 those values (absent ones: their default)",
            ),
        ],
        RouteId::AuditRead => vec![
            q("actor", string(), "user name, embed:<customer>, schedule, control-plane or anonymous"),
            q("action", string(), "action, or a prefix ending in '.' such as jobs."),
            q("outcome", json!({ "type": "string", "enum": ["ok", "denied", "failed"] }), "outcome"),
            q("target", string(), "exact target"),
            q("since", int(), "at or after (unix seconds)"),
            q("until", int(), "before (unix seconds)"),
            q("after", int(), "sequence numbers above this (paging)"),
            q("limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "at most this many (default 100)"),
        ],
        _ => Vec::new(),
    }
}

/// OpenAPI links from a `POST` that creates something to the routes under it, so that
/// clients (and fuzzers) can follow the created id or name.
fn links_from(route: &crate::api::Route) -> serde_json::Map<String, Value> {
    let mut links = serde_json::Map::new();
    if route.method != "POST" || route.path.contains('{') {
        return links;
    }
    let prefix = format!("{}/{{", route.path);
    for target in ROUTES.iter().filter(|r| r.path.starts_with(&prefix)) {
        let param = target.path[prefix.len()..].split('}').next().unwrap_or_default();
        let field = if param == "name" { "name" } else { "id" };
        let key = target
            .action
            .replace(['.', '_'], " ")
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect::<String>();
        links.insert(
            key,
            json!({ "operationId": target.action, "parameters": { param: format!("$response.body#/{field}") } }),
        );
    }
    links
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let (body, ok_status, ok_schema) = shapes(route.id);
        let mut params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(query_params(route.id));
        let (security, scope_note) = match route.auth {
            Auth::Public => (json!([]), "No authentication.".to_owned()),
            Auth::Embed => (json!([{ "embedToken": [] }]), "An embed token only.".to_owned()),
            Auth::Caller(scope) => (
                json!([{ "apiToken": [] }, { "session": [] }]),
                match scope {
                    Some(s) => format!("Needs the scope `{s}`."),
                    None => "Any signed-in caller.".to_owned(),
                },
            ),
        };
        let ok_content = match route.id {
            RouteId::JobsResult | RouteId::EmbedResult => json!({
                "image/svg+xml": { "schema": { "type": "string" } },
                "application/json": { "schema": {} },
                "text/html": { "schema": { "type": "string" } }
            }),
            _ if ok_status == "204" => Value::Null,
            _ => json!({ "application/json": { "schema": ok_schema } }),
        };
        let mut ok = json!({ "description": "Success." });
        if !ok_content.is_null() {
            ok["content"] = ok_content;
        }
        let links = links_from(route);
        if !links.is_empty() {
            ok["links"] = Value::Object(links);
        }
        let error = json!({ "description": "An error: {code, message}.", "content": { "application/json": { "schema": r("Error") } } });
        let mut responses = serde_json::Map::new();
        responses.insert(ok_status.to_owned(), ok);
        if matches!(route.id, RouteId::JobsResult | RouteId::EmbedResult) {
            let pending =
                obj(&["code", "message", "state"], json!({ "code": string(), "message": string(), "state": string() }));
            responses.insert(
                "202".into(),
                json!({ "description": "Not ready yet.", "content": { "application/json": { "schema": pending } } }),
            );
        }
        if route.id == RouteId::AgentsConnectionSchema {
            let pending = obj(
                &["code", "message"],
                json!({ "code": { "type": "string", "enum": ["agent_offline", "catalog_pending"] }, "message": string(),
                        "job_id": { "type": "string", "description": "catalog_pending: the job that keeps running" } }),
            );
            responses.insert(
                "202".into(),
                json!({ "description": "No catalog yet: the agent is offline (no job is made), or has not answered \
                                        yet (the catalog job keeps running).",
                        "content": { "application/json": { "schema": pending } } }),
            );
        }
        if route.id == RouteId::JobsCancel {
            responses.insert(
                "202".into(),
                json!({ "description": "The agent is told to stop.", "content": { "application/json": { "schema": obj(&["id", "state"], json!({ "id": string(), "state": string() })) } } }),
            );
        }
        responses.insert("default".into(), error);
        let mut op = json!({
            "operationId": route.action,
            "summary": route.summary,
            "description": scope_note,
            "security": security,
            "parameters": params,
            "responses": responses,
        });
        if let Some(b) = body {
            op["requestBody"] = json!({ "required": !matches!(route.id, RouteId::ProjectsRun | RouteId::ResultsPurge),
                                        "content": { "application/json": { "schema": b } } });
        }
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Outpost control plane API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Dispatch signed jobs to Outpost agents and read their rendered results, with users, roles, connection shares, projects, scoped API tokens, embed tokens and an audit log. Errors are {code, message}."
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": components(),
    })
}

/// The document as served and committed (pretty JSON with a final newline).
pub fn document_json() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod render_tests;

#[cfg(test)]
mod tests;
