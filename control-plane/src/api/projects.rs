//! Projects (saved queries with their render specs, shared with grants) and embed tokens.
//!
//! What a caller sees of a project depends on their access: `view-app` shows names and
//! render kinds only, never SQL, parameters or connections; `view-logic`, `edit`, the
//! owner and admins see everything. A project runs with its **owner's** data access, so
//! a viewer can refresh what they may view without any connection being shared with them,
//! and a project stops running when its owner loses the connection.

use http::{Response, StatusCode};
use serde::Deserialize;

use crate::api::{check_connection, forbidden, Ctx, JobView};
use crate::app::project_choices::{run_filters, stored_parameters};
use crate::app::project_jobs;
use crate::app::project_params::{self, Parameter};
use crate::app::project_tiles::{self, Tile};
use crate::app::projects::{parse_queries, RunBy};
use crate::app::schedules::Schedule;
use crate::app::App;
use crate::auth::access::{self, Caller, Grant, ProjectAccess, Role};
use crate::http::{json, parse_json, parse_render, query_param, ApiError, Body};
use crate::store::access::{AccessStore, ProjectRecord, ScheduleState};
use crate::store::Store;

pub use crate::api::project_embed::{embed_claims, embed_project, embed_result, embed_revoke, embed_run, embed_token};
pub use crate::app::projects::ProjectQuery;
pub use crate::app::projects::MAX_QUERIES;
pub use crate::app::schedules::MAX_CUSTOMER_LEN;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: String,
    queries: Vec<ProjectQuery>,
    /// The origins that may frame the project's embed page; absent on an update: kept.
    #[serde(default)]
    embed_origins: Option<Vec<String>>,
    /// The refresh schedule; `null`: none; absent on an update: kept.
    #[serde(default, deserialize_with = "present")]
    schedule: Option<Option<Schedule>>,
    /// The dashboard's layout ([`project_tiles`]); absent on an update: kept.
    #[serde(default)]
    tiles: Option<Vec<serde_json::Value>>,
    /// The dashboard's parameters ([`project_params`]); absent on an update: kept.
    #[serde(default)]
    parameters: Option<Vec<serde_json::Value>>,
}

/// A field that is there, even as `null` (`Some(None)`), as opposed to absent (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A project's own embed origins, checked: each an origin the control plane's
/// `embed.frame_ancestors` lists (a project narrows the admin's list, never widens it).
fn checked_origins(app: &App, origins: &[String]) -> Result<String, ApiError> {
    if origins.len() > 32 {
        return Err(ApiError::bad_field("embed_origins", "give at most 32 origins"));
    }
    for (i, o) in origins.iter().enumerate() {
        if !app.cfg.embed.frame_ancestors.contains(o) {
            let allowed = if app.cfg.embed.frame_ancestors.is_empty() {
                "none: an admin lists them in control-plane.yaml's embed.frame_ancestors first".to_owned()
            } else {
                app.cfg.embed.frame_ancestors.join(", ")
            };
            return Err(ApiError::bad_field(
                &format!("embed_origins[{i}]"),
                format!("{o:?} is not an origin this control plane lets frame embed pages; allowed: {allowed}"),
            ));
        }
    }
    serde_json::to_string(origins).map_err(ApiError::internal)
}

/// The origins that may frame project `p`'s embed page: its own, or when it has none the
/// control plane's `embed.frame_ancestors`. A stored list that no longer reads, or names
/// an origin the admin has since removed, frames nowhere it should not: only origins still
/// in the control plane's list are kept.
pub fn frame_ancestors(app: &App, p: &ProjectRecord) -> Vec<String> {
    let own: Vec<String> = serde_json::from_str(&p.embed_origins).unwrap_or_default();
    if own.is_empty() {
        app.cfg.embed.frame_ancestors.clone()
    } else {
        own.into_iter().filter(|o| app.cfg.embed.frame_ancestors.contains(o)).collect()
    }
}

pub(super) fn render_kind(render: &serde_json::Value) -> String {
    render.get("kind").and_then(|k| k.as_str()).unwrap_or("unknown").to_owned()
}

pub(super) async fn viewable(app: &App, ctx: &mut Ctx, id: &str) -> Result<(ProjectRecord, ProjectAccess), ApiError> {
    ctx.target = Some(id.to_owned());
    let (p, a) = app.project_access(ctx.caller()?, id).await?;
    if !a.can_view() {
        return Err(forbidden(format!("project {id} is not shared with you")));
    }
    Ok((p, a))
}

async fn view(app: &App, p: &ProjectRecord, a: ProjectAccess) -> Result<serde_json::Value, ApiError> {
    let queries = parse_queries(&p.queries_json)?;
    let queries: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            if a.can_see_logic() {
                let mut v = serde_json::to_value(q).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("index".into(), i.into());
                }
                v
            } else {
                serde_json::json!({ "index": i, "name": q.name, "render_kind": render_kind(&q.render) })
            }
        })
        .collect();
    // The layout is shown to every viewer: its texts are what the editor chose to show.
    let tiles = project_tiles::shown(&p.tiles_json, queries.len());
    let mut v = serde_json::json!({
        "id": p.id, "name": p.name, "owner": p.owner, "access": a.as_str(),
        "created_at": p.created_at, "updated_at": p.updated_at, "queries": queries, "tiles": tiles,
        "parameters": stored_parameters(app, p).await?.1,
    });
    v["schedule"] = schedule_view(p, a);
    if a.can_edit() {
        v["embed_origins"] = serde_json::from_str(&p.embed_origins).unwrap_or(serde_json::Value::Array(Vec::new()));
    }
    if a.can_manage() {
        let grants: Vec<_> = app
            .store
            .project_grants(p.id.clone())
            .await?
            .into_iter()
            .map(|(user, g)| serde_json::json!({ "user": user, "access": g }))
            .collect();
        v["grants"] = grants.into();
    }
    Ok(v)
}

/// What a caller sees of a project's schedule: everyone its words, zone and next run;
/// those who may read the queries also its pattern and customer list.
fn schedule_view(p: &ProjectRecord, a: ProjectAccess) -> serde_json::Value {
    let Some((s, state)) =
        p.schedule.as_ref().and_then(|st| Some((serde_json::from_str::<Schedule>(&st.json).ok()?, st)))
    else {
        return serde_json::Value::Null;
    };
    let mut v = serde_json::json!({
        "description": s.describe(), "timezone": s.timezone, "next_run_at": state.next_run_at,
    });
    if a.can_see_logic() {
        v["cron"] = s.cron.into();
        v["customers"] = s.customers.into();
    }
    v
}

/// The stored state of a body's schedule (`None`: no schedule), checked against the
/// project's queries, due at its first run after now.
fn checked_schedule(
    app: &App,
    s: Option<&Schedule>,
    queries: &[ProjectQuery],
) -> Result<Option<ScheduleState>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    let (_, first) = s.check(queries, app.cfg.schedules.min_interval_secs, app.clock.now())?;
    Ok(Some(app.schedule_state(s, first).map_err(ApiError::internal)?))
}

/// Checks a project body and the caller's data access to every connection it uses.
async fn checked_body(app: &App, caller: &Caller, body: &[u8]) -> Result<ProjectBody, ApiError> {
    let b: ProjectBody = parse_json(body)?;
    if b.name.trim().is_empty() || b.name.len() > 200 || b.name.chars().any(char::is_control) {
        return Err(ApiError::bad_field("name", "must be 1 to 200 printable characters"));
    }
    if b.queries.is_empty() || b.queries.len() > MAX_QUERIES {
        return Err(ApiError::bad_field("queries", format!("give 1 to {MAX_QUERIES} queries")));
    }
    for (i, q) in b.queries.iter().enumerate() {
        let at = |f: &str| format!("queries[{i}].{f}");
        if q.name.trim().is_empty() || q.name.len() > 200 || q.name.chars().any(char::is_control) {
            return Err(ApiError::bad_field(&at("name"), "must be 1 to 200 printable characters"));
        }
        outpost_protocol::job::validate_audience(&q.agent).map_err(|e| ApiError::bad_field(&at("agent"), e))?;
        outpost_protocol::job::validate_name(&q.connection).map_err(|e| ApiError::bad_field(&at("connection"), e))?;
        if q.sql.trim().is_empty() {
            return Err(ApiError::bad_field(&at("sql"), "must not be empty"));
        }
        parse_render(q.render.clone()).map_err(|e| ApiError { message: format!("queries[{i}].{}", e.message), ..e })?;
        if let Some(n) = q.customer_param {
            // Bound positions may extend the params further (checked with the bindings).
            let most = q.params.len() + 1 + q.bind.len();
            if n == 0 || usize::from(n) > most {
                return Err(ApiError::bad_field(
                    &at("customer_param"),
                    format!("must be a parameter position from 1 to {most}"),
                ));
            }
        }
    }
    for q in &b.queries {
        check_connection(app, caller, &q.agent, &q.connection).await?;
    }
    Ok(b)
}

/// The parameters a body leaves the project with (its own, checked; absent: `kept`), and
/// every query's `bind` checked against them.
fn checked_parameters(b: &ProjectBody, kept: &str) -> Result<Vec<Parameter>, ApiError> {
    let params = match &b.parameters {
        Some(v) => project_params::checked(v)?,
        None => project_params::parse_stored(kept),
    };
    for (i, q) in b.queries.iter().enumerate() {
        project_params::check_bind(&format!("queries[{i}].bind"), &q.bind, &params, q.params.len(), q.customer_param)?;
    }
    let kinds: Vec<String> = b.queries.iter().map(|q| render_kind(&q.render)).collect();
    let queries: Vec<(&str, &std::collections::BTreeMap<String, String>)> =
        b.queries.iter().zip(&kinds).map(|(q, k)| (k.as_str(), &q.bind)).collect();
    project_params::check_choices_from(&params, &queries)?;
    Ok(params)
}

/// `GET /v1/projects`.
pub async fn list(app: &App, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?;
    let rows = app.store.projects_for(if caller.is_admin() { None } else { Some(caller.user_id.clone()) }).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (p, g) in rows {
        let a = if caller.is_admin() {
            ProjectAccess::Admin
        } else if p.owner_id == caller.user_id {
            ProjectAccess::Owner
        } else {
            g.map_or(ProjectAccess::None, ProjectAccess::Granted)
        };
        out.push(view(app, &p, a).await?);
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "projects": out })))
}

/// `POST /v1/projects`.
pub async fn create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?.clone();
    let b = checked_body(app, &caller, body).await?;
    let tiles = project_tiles::checked(b.tiles.as_deref().unwrap_or_default(), b.queries.len())?;
    let parameters = checked_parameters(&b, "[]")?;
    let now = app.clock.now();
    let p = ProjectRecord {
        id: access::new_id(),
        name: b.name,
        owner_id: caller.user_id.clone(),
        owner: caller.user.clone(),
        queries_json: serde_json::to_string(&b.queries).map_err(ApiError::internal)?,
        embed_epoch: 0,
        embed_origins: checked_origins(app, b.embed_origins.as_deref().unwrap_or_default())?,
        tiles_json: project_tiles::to_json(&tiles)?,
        parameters_json: project_params::to_json(&parameters)?,
        created_at: now,
        updated_at: now,
        schedule: checked_schedule(app, b.schedule.flatten().as_ref(), &b.queries)?,
    };
    app.store.create_project(p.clone()).await?;
    ctx.target = Some(p.id.clone());
    Ok(json(StatusCode::CREATED, &view(app, &p, ProjectAccess::Owner).await?))
}

/// `GET /v1/projects/{id}`.
pub async fn read(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    let (p, a) = viewable(app, ctx, id).await?;
    Ok(json(StatusCode::OK, &view(app, &p, a).await?))
}

/// `PUT /v1/projects/{id}`.
pub async fn update(app: &App, ctx: &mut Ctx, id: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let (p, a) = viewable(app, ctx, id).await?;
    if !a.can_edit() {
        return Err(forbidden(format!("your access to project {id} ({}) does not allow editing", a.as_str())));
    }
    let caller = ctx.caller()?.clone();
    let b = checked_body(app, &caller, body).await?;
    let parameters_json = project_params::to_json(&checked_parameters(&b, &p.parameters_json)?)?;
    let queries_json = serde_json::to_string(&b.queries).map_err(ApiError::internal)?;
    // Absent tiles keep the layout, as long as it still fits the new queries.
    let mut tiles: Vec<Tile> = match &b.tiles {
        Some(t) => project_tiles::checked(t, b.queries.len())?,
        None => project_tiles::kept(&p.tiles_json, b.queries.len())?,
    };
    // A position whose query is now another one shows none of the jobs from before.
    let old = parse_queries(&p.queries_json)?;
    let names = |qs: &[ProjectQuery]| qs.iter().map(|q| q.name.clone()).collect::<Vec<_>>();
    project_tiles::note_changes(&mut tiles, &p.tiles_json, &names(&old), &names(&b.queries), app.clock.now());
    let tiles_json = project_tiles::to_json(&tiles)?;
    let origins = b.embed_origins.as_deref().map(|o| checked_origins(app, o)).transpose()?;
    let schedule = match &b.schedule {
        Some(s) => Some(checked_schedule(app, s.as_ref(), &b.queries)?),
        None => {
            // Kept: it must still fit the queries (a customer list exactly when one takes it).
            if let Some(kept) = p.schedule.as_ref().and_then(|st| serde_json::from_str::<Schedule>(&st.json).ok()) {
                kept.check_customers(&b.queries).map_err(|e| ApiError {
                    message: format!("{} (the kept schedule; send `schedule` to change it)", e.message),
                    ..e
                })?;
            }
            None
        }
    };
    let now = app.clock.now();
    let stored = (queries_json.clone(), tiles_json.clone(), parameters_json.clone());
    if !app.store.update_project(id.to_owned(), b.name.clone(), stored.0, stored.1, stored.2, now).await? {
        return Err(ApiError::not_found(format!("no project {id:?}")));
    }
    let embed_origins = match origins {
        Some(o) => {
            app.store.set_embed_origins(id.to_owned(), o.clone()).await?;
            o
        }
        None => p.embed_origins.clone(),
    };
    let schedule = match schedule {
        Some(s) => {
            app.store.set_project_schedule(id.to_owned(), s.clone()).await?;
            s
        }
        None => p.schedule.clone(),
    };
    let p = ProjectRecord {
        name: b.name,
        queries_json,
        tiles_json,
        parameters_json,
        updated_at: now,
        embed_origins,
        schedule,
        ..p
    };
    Ok(json(StatusCode::OK, &view(app, &p, a).await?))
}

/// `DELETE /v1/projects/{id}`.
pub async fn delete(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    let (_, a) = viewable(app, ctx, id).await?;
    if !a.can_manage() {
        return Err(forbidden("only the project's owner or an admin may delete it"));
    }
    app.store.delete_project(id.to_owned()).await?;
    Ok(crate::http::no_content())
}

/// `PUT|DELETE /v1/projects/{id}/grants/{user}`.
pub async fn grant(
    app: &App,
    ctx: &mut Ctx,
    id: &str,
    user: &str,
    body: Option<&[u8]>,
) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        access: Grant,
    }
    let (p, a) = viewable(app, ctx, id).await?;
    if !a.can_manage() {
        return Err(forbidden("only the project's owner or an admin may share it"));
    }
    let g = body.map(parse_json::<Req>).transpose()?.map(|r| r.access);
    ctx.detail = Some(serde_json::json!({ "user": user, "access": g }));
    let target = app
        .store
        .user_by_name(user.to_owned())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    if target.id == p.owner_id {
        return Err(ApiError::bad_field("user", "the owner already has every right on the project"));
    }
    if g == Some(Grant::Edit) && target.role == Role::Viewer {
        return Err(ApiError::bad_field(
            "access",
            format!("{user} is a viewer and cannot edit; grant view-logic or view-app"),
        ));
    }
    app.store
        .set_project_grant(id.to_owned(), user.to_owned(), g)
        .await?
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(crate::http::no_content())
}

pub(super) fn check_customer(c: &str) -> Result<(), ApiError> {
    crate::app::schedules::check_customer("customer", c)
}

/// `POST /v1/projects/{id}/run`: dispatches every query with the owner's data access.
pub async fn run(app: &App, ctx: &mut Ctx, id: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[serde(default)]
        customer: Option<String>,
        /// Values of the project's parameters by name; absent ones take their default.
        #[serde(default)]
        filters: Option<serde_json::Value>,
    }
    let r: Req = if body.is_empty() { Req::default() } else { parse_json(body)? };
    let (p, access) = viewable(app, ctx, id).await?;
    let filters = run_filters(app, &p, r.filters.as_ref()).await?;
    let logic = access.can_see_logic();
    if let Some(c) = &r.customer {
        check_customer(c)?;
    }
    let queries = parse_queries(&p.queries_json)?;
    if r.customer.is_none() && queries.iter().any(|q| q.customer_param.is_some()) {
        return Err(ApiError::bad_field(
            "customer",
            "this project's queries take the end customer id; give `customer`",
        ));
    }
    // The project runs with its owner's rights, checked now (not when it was saved).
    let caller = ctx.caller()?;
    let by = RunBy { user_id: caller.user_id.clone(), user: caller.user.clone(), via: caller.via() };
    let jobs: Vec<_> = app
        .run_project(&p, &queries, r.customer.as_deref(), &filters, &by, logic)
        .await?
        .into_iter()
        .map(|(i, id)| serde_json::json!({ "index": i, "name": queries[i].name, "id": id }))
        .collect();
    let filters = filters.to_json();
    ctx.detail = Some(serde_json::json!({ "customer": r.customer, "jobs": jobs.len(), "filters": filters }));
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "project": p.id, "customer": r.customer, "filters": filters, "jobs": jobs }),
    ))
}

/// `GET /v1/projects/{id}/results`: the newest job of each query.
pub async fn results(app: &App, ctx: &mut Ctx, id: &str, q: Option<&str>) -> Result<Response<Body>, ApiError> {
    let (p, access) = viewable(app, ctx, id).await?;
    let customer = query_param(q, "customer")
        .map(|c| crate::http::percent_decode(c).ok_or_else(|| ApiError::bad_field("customer", "bad percent-encoding")))
        .transpose()?;
    if let Some(c) = &customer {
        check_customer(c)?;
    }
    let filters = results_filters(app, &p, q).await?;
    let queries = parse_queries(&p.queries_json)?;
    let mut out = Vec::with_capacity(queries.len());
    for (i, query) in queries.iter().enumerate() {
        let idx = i64::try_from(i).unwrap_or(0);
        let for_customer = query.customer_param.and(customer.clone());
        // The result shown is the newest that succeeded; a newer run that is still going
        // or failed is told beside it (`refresh`), so a failed refresh never hides the
        // previous result.
        let since = project_tiles::since(&p.tiles_json, i);
        let key = project_params::filters_key(&query.bind, &filters);
        let shown =
            project_jobs::latest(app, &p.id, (idx, query), (for_customer.clone(), key.clone()), true, since).await?;
        let newest = project_jobs::latest(app, &p.id, (idx, query), (for_customer, key), false, since).await?;
        let view = |job_id: String| async {
            let rec = app.store.job(job_id, app.clock.now(), false).await?;
            Ok::<_, ApiError>(rec.map(|rec| {
                let mut v = JobView::from(&rec);
                v.set_name(&query.name);
                if !access.can_see_logic() {
                    v.hide_logic();
                }
                serde_json::to_value(v).unwrap_or_default()
            }))
        };
        let job = match shown.clone().or_else(|| newest.clone()) {
            Some(id) => view(id).await?,
            None => None,
        };
        let refresh = match newest.filter(|n| shown.as_ref().is_some_and(|s| s != n)) {
            Some(id) => view(id).await?,
            None => None,
        };
        out.push(serde_json::json!({ "index": i, "name": query.name, "job": job, "refresh": refresh }));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "project": p.id, "customer": customer, "filters": filters.to_json(), "queries": out }),
    ))
}

/// The filters of `GET /v1/projects/{id}/results?filters=<url-encoded JSON object>`:
/// absent ones (or all, without the parameter) their default.
async fn results_filters(app: &App, p: &ProjectRecord, q: Option<&str>) -> Result<project_params::Filters, ApiError> {
    run_filters(app, p, filters_query(q)?.as_ref()).await
}

/// The `filters=<url-encoded JSON object>` of a request's query, unchecked; `None` without it.
pub(super) fn filters_query(q: Option<&str>) -> Result<Option<serde_json::Value>, ApiError> {
    query_param(q, "filters")
        .map(|f| {
            let text = crate::http::percent_decode(&f.replace('+', " "))
                .ok_or_else(|| ApiError::bad_field("filters", "bad percent-encoding"))?;
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                ApiError::bad_field("filters", format!("must be a JSON object of values by parameter name: {e}"))
            })
        })
        .transpose()
}
