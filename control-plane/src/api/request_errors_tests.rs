//! A refused job body is a 400 whose message names the parameter or render option and
//! says what is accepted: through the route handlers of `POST /v1/jobs` and
//! `POST /v1/projects`, as the API and the console call them.

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::api::{Ctx, RouteId};
use crate::app::{self, App};
use crate::auth::access::{Caller, Credential, Role};
use crate::store::access::AccessStore;

/// A control plane made by `init` in a temp dir, and its admin.
async fn admin_app() -> (tempfile::TempDir, std::sync::Arc<App>, Caller) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("cp");
    app::init(&data, "cp.test", &[], None).await.expect("init");
    let app = app::open(crate::config::ControlPlaneConfig::with_data_dir(data)).await.expect("open");
    let user = app.store.user_by_name("admin".into()).await.expect("db").expect("init made admin");
    let caller = Caller {
        user_id: user.id,
        user: user.name,
        role: Role::Admin,
        scopes: Role::Admin.scopes(),
        credential: Credential::Token { id: "test".into() },
    };
    (dir, app, caller)
}

/// Status and JSON answer of `route` for `body`.
#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
async fn answer(app: &App, caller: &Caller, route: RouteId, body: &Value) -> (StatusCode, Value) {
    let mut ctx = Ctx { caller: Some(caller.clone()), ..Ctx::default() };
    let req = Request::builder().method("POST").uri("/v1/x").body(bytes::Bytes::from(body.to_string())).expect("req");
    let res = match crate::api::jobs::dispatch(app, route, Vec::new(), req, &mut ctx).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let status = res.status();
    let bytes = http_body_util::Limited::new(res.into_body(), 1 << 20).collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json"))
}

fn job(params: Value, render: Value) -> Value {
    json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT $1", "params": params, "render": render })
}

#[tokio::test]
async fn a_job_with_a_bad_parameter_or_render_kind_is_a_400_that_says_what_is_accepted() {
    let (_dir, app, admin) = admin_app().await;
    let table = json!({ "kind": "table" });
    let (status, body) = answer(&app, &admin, RouteId::JobsDispatch, &job(json!(["5"]), table.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(
        body["message"],
        "params[0]: \"5\" is a string, not a parameter; for $1 write {\"type\":\"text\",\"value\":\"5\"} or, unquoted, \
         {\"type\":\"int\",\"value\":5}; a parameter is \
         {\"type\":\"null\"}, {\"type\":\"bool\",\"value\":true}, {\"type\":\"int\",\"value\":5}, \
         {\"type\":\"float\",\"value\":2.5} or {\"type\":\"text\",\"value\":\"EMEA\"}"
    );
    let int_as_text = json!([{ "type": "int", "value": 1 }, { "type": "int", "value": "5" }]);
    let (status, body) = answer(&app, &admin, RouteId::JobsDispatch, &job(int_as_text, table)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "params[1].value: \"5\" is a string; an int parameter takes a whole number (64-bit); \
         for $2 write {\"type\":\"int\",\"value\":5}"
    );
    let pi = json!({ "kind": "pi", "label": "region", "value": "total" });
    let (status, body) = answer(&app, &admin, RouteId::JobsDispatch, &job(json!([]), pi)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "render.kind: \"pi\" is not a render kind; one of table, scalar, bar, line, area, scatter or pie (did you mean \"pie\"?)"
    );
}

#[tokio::test]
async fn a_project_with_a_bad_query_is_a_400_naming_the_query_and_the_field() {
    let (_dir, app, admin) = admin_app().await;
    let mut query = job(json!([{ "int": 5 }]), json!({ "kind": "bar", "x": "region", "y": ["total"] }));
    query["name"] = json!("Revenue");
    let (status, body) =
        answer(&app, &admin, RouteId::ProjectsCreate, &json!({ "name": "Sales", "queries": [query.clone()] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "queries[0].params[0]: {\"int\":5} gives its type as a key; for $1 write {\"type\":\"int\",\"value\":5}"
    );
    query["params"] = json!([]);
    query["render"] = json!({ "kind": "bar", "x": "region", "y": "total" });
    let (status, body) =
        answer(&app, &admin, RouteId::ProjectsCreate, &json!({ "name": "Sales", "queries": [query] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "queries[0].render.y: \"total\" is a string; y of a bar chart is a list of 1 to 10 strings"
    );
}
