//! A project's embed tokens and the embed API they open (`/v1/embed/…`): the results of
//! one end customer, with the dashboard filters the token fixed, those the token lets the
//! viewer change as the viewer set them (`filters=` of the request; see
//! [`crate::app::viewer_runs`] for the runs a change causes), the others' defaults; and no
//! SQL, agents or connections.

use http::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::api::projects::{check_customer, render_kind, viewable};
use crate::api::{self, bearer, forbidden, unauthorized, Ctx};
use crate::app::project_choices;
use crate::app::project_jobs;
use crate::app::project_params;
use crate::app::project_tiles;
use crate::app::projects::parse_queries;
use crate::app::App;
use crate::auth::embed::{self, Claims};
use crate::http::{json, parse_json, ApiError, Body};
use crate::store::access::{AccessStore, ProjectRecord};

/// `POST /v1/projects/{id}/embed-tokens`.
pub async fn embed_token(app: &App, ctx: &mut Ctx, id: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        customer: String,
        #[serde(default)]
        ttl_secs: Option<u64>,
        /// Filters fixed in the token: the embed shows these values, the others' defaults.
        #[serde(default)]
        filters: Option<serde_json::Value>,
        /// Parameters the embed's viewer may change (none fixed in `filters`).
        #[serde(default)]
        viewer_filters: Option<Vec<String>>,
    }
    let r: Req = parse_json(body)?;
    let (p, a) = viewable(app, ctx, id).await?;
    if !a.can_edit() {
        return Err(forbidden("only the owner, an editor of the project or an admin may create embed tokens"));
    }
    check_customer(&r.customer)?;
    let max = app.cfg.embed.max_ttl_secs;
    let ttl = r.ttl_secs.unwrap_or(app.cfg.embed.default_ttl_secs);
    if !(10..=max).contains(&ttl) {
        return Err(ApiError::bad_field("ttl_secs", format!("must be between 10 and {max} (embed.max_ttl_secs)")));
    }
    // Checked now, and fixed in the token as their canonical values.
    let fixed = match &r.filters {
        None | Some(serde_json::Value::Null) => None,
        Some(f) => {
            let all = project_choices::run_filters(app, &p, Some(f)).await?;
            let given = f.as_object().cloned().unwrap_or_default();
            let canonical = all.to_json();
            Some(given.keys().filter_map(|k| canonical.get(k).map(|v| (k.clone(), v.clone()))).collect())
        }
    };
    let viewer = checked_viewer_filters(&p, fixed.as_ref(), r.viewer_filters.as_deref())?;
    let now = app.clock.now();
    let claims = Claims {
        iss: embed::ISSUER.into(),
        aud: embed::AUDIENCE.into(),
        sub: r.customer.clone(),
        prj: p.id.clone(),
        ver: p.embed_epoch,
        iat: now,
        exp: now + i64::try_from(ttl).unwrap_or(900),
        jti: embed::new_jti(),
        flt: fixed,
        vfl: viewer,
    };
    let token = app.embed.sign(&claims);
    ctx.detail = Some(serde_json::json!({ "customer": r.customer, "jti": claims.jti, "expires_at": claims.exp,
                                          "filters": claims.flt, "viewer_filters": claims.vfl }));
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "token": token, "project": p.id, "customer": r.customer, "expires_at": claims.exp,
                             "jti": claims.jti, "filters": claims.flt, "viewer_filters": claims.vfl }),
    ))
}

/// The token request's `viewer_filters`: each a parameter of `p`, once, and not one the
/// token fixes (`fixed`); `None` when it names none.
fn checked_viewer_filters(
    p: &ProjectRecord,
    fixed: Option<&serde_json::Map<String, serde_json::Value>>,
    asked: Option<&[String]>,
) -> Result<Option<Vec<String>>, ApiError> {
    let asked = asked.unwrap_or_default();
    let params = project_params::parse_stored(&p.parameters_json);
    let mut out: Vec<String> = Vec::with_capacity(asked.len());
    for (i, name) in asked.iter().enumerate() {
        let field = format!("viewer_filters[{i}]");
        if !params.iter().any(|x| &x.name == name) {
            let names: Vec<&str> = params.iter().map(|x| x.name.as_str()).collect();
            let known = if names.is_empty() { "it has none".to_owned() } else { names.join(", ") };
            return Err(ApiError::bad_field(
                &field,
                format!("{name:?} is not a parameter of this dashboard ({known})"),
            ));
        }
        if fixed.is_some_and(|f| f.contains_key(name)) {
            return Err(ApiError::bad_field(&field, format!("{name:?} is fixed by the token's filters")));
        }
        if out.contains(name) {
            return Err(ApiError::bad_field(&field, format!("{name:?} is named twice")));
        }
        out.push(name.clone());
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `POST /v1/projects/{id}/embed-tokens/revoke`.
pub async fn embed_revoke(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    let (_, a) = viewable(app, ctx, id).await?;
    if !a.can_manage() {
        return Err(forbidden("only the project's owner or an admin may revoke its embed tokens"));
    }
    let epoch = app
        .store
        .bump_embed_epoch(id.to_owned())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {id:?}")))?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "project": id, "embed_epoch": epoch })))
}

/// Verifies the embed token of a request against its project's current epoch.
pub async fn embed_claims(
    app: &App,
    ctx: &mut Ctx,
    req: &Request<bytes::Bytes>,
) -> Result<(Claims, ProjectRecord), ApiError> {
    let token = bearer(req)?.ok_or_else(|| unauthorized("missing Authorization: Bearer <embed token>"))?;
    ctx.actor = Some(("embed".into(), "embed:invalid".into()));
    let max = i64::try_from(app.cfg.embed.max_ttl_secs).unwrap_or(3600);
    let claims = app.embed.verify(token, app.clock.now(), max).map_err(|e| unauthorized(e.to_string()))?;
    ctx.actor = Some((format!("embed:{}", claims.sub), format!("embed:{}", claims.jti)));
    ctx.target = Some(claims.prj.clone());
    let p = app
        .store
        .project(claims.prj.clone())
        .await?
        .ok_or_else(|| unauthorized("the embed token's project no longer exists"))?;
    if p.embed_epoch != claims.ver {
        return Err(unauthorized("the embed tokens of this project were revoked"));
    }
    Ok((claims, p))
}

/// `GET /v1/embed/project[?filters=…]`.
pub async fn embed_project(app: &App, ctx: &mut Ctx, req: &Request<bytes::Bytes>) -> Result<Response<Body>, ApiError> {
    let (claims, p) = embed_claims(app, ctx, req).await?;
    let viewer = super::projects::filters_query(req.uri().query())?;
    let queries: Vec<_> = parse_queries(&p.queries_json)?
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({ "index": i, "name": q.name, "render_kind": render_kind(&q.render) }))
        .collect();
    let tiles = project_tiles::shown(&p.tiles_json, queries.len());
    let filters = embed_filters(app, &claims, &p, viewer.as_ref()).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "project": { "id": p.id, "name": p.name }, "customer": claims.sub, "expires_at": claims.exp,
                             "queries": queries, "tiles": tiles,
                             "parameters": project_choices::stored_parameters(app, &p).await?.1,
                             "filters": filters.to_json(),
                             "viewer_filters": claims.vfl.clone().unwrap_or_default() }),
    ))
}

/// `POST /v1/embed/run` (`{"filters": {...}}`): runs the dashboard for the token's customer
/// with the viewer's values where it must ([`crate::app::viewer_runs`]).
pub async fn embed_run(
    app: &App,
    ctx: &mut Ctx,
    claims: &(Claims, ProjectRecord),
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[serde(default)]
        filters: Option<serde_json::Value>,
    }
    let r: Req = if body.is_empty() { Req { filters: None } } else { parse_json(body)? };
    let (claims, p) = claims;
    // A token that lets its viewer change nothing runs nothing: what it shows is run by
    // the dashboard's schedule or its editors, as before viewers could change filters.
    if claims.vfl.as_ref().is_none_or(Vec::is_empty) {
        return Err(forbidden(
            "this embed token lets its viewer change no filter, so it runs nothing (the dashboard's schedule or \
             its editors run it)",
        ));
    }
    let filters = embed_filters(app, claims, p, r.filters.as_ref()).await?;
    let runs = app.run_for_viewer(p, &claims.sub, &filters).await?;
    let runs: Vec<serde_json::Value> = runs.iter().enumerate().map(|(i, r)| r.to_json(i)).collect();
    ctx.detail = Some(serde_json::json!({ "filters": filters.to_json(), "runs": runs }));
    let busy = runs.iter().any(|r| r["outcome"] == "busy");
    let status = if busy { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::ACCEPTED };
    Ok(json(status, &serde_json::json!({ "filters": filters.to_json(), "runs": runs })))
}

/// The filters an embed shows: those its token fixed; those it lets the viewer change
/// (`viewer_filters`) as `viewer` (the request's `filters`) sets them; the others' defaults.
/// A value for any other parameter is refused, naming it.
async fn embed_filters(
    app: &App,
    claims: &Claims,
    p: &ProjectRecord,
    viewer: Option<&serde_json::Value>,
) -> Result<project_params::Filters, ApiError> {
    let fixed = claims.flt.clone().unwrap_or_default();
    let mut given = fixed.clone();
    let viewer = match viewer {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(o)) => o.clone(),
        Some(_) => return Err(ApiError::bad_field("filters", "must be a JSON object of values by parameter name")),
    };
    let allowed = claims.vfl.as_deref().unwrap_or_default();
    for (k, v) in &viewer {
        let field = format!("filters.{k}");
        if fixed.contains_key(k) {
            return Err(ApiError::bad_field(&field, "is fixed by the embed token and cannot be changed"));
        }
        if !allowed.contains(k) {
            let may = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(ApiError::bad_field(
                &field,
                format!("this embed does not let its viewer change it (they may change: {may})"),
            ));
        }
        given.insert(k.clone(), v.clone());
    }
    let token_no_longer_fits = |e: ApiError| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the embed token's filters no longer fit the dashboard's parameters ({})", e.message),
        )
    };
    match project_choices::run_filters(app, p, Some(&serde_json::Value::Object(given))).await {
        Ok(f) => Ok(f),
        Err(e) if viewer.is_empty() => Err(token_no_longer_fits(e)),
        // The viewer's value, unless the token's own no longer fit.
        Err(e) => match project_choices::run_filters(app, p, Some(&serde_json::Value::Object(fixed))).await {
            Ok(_) => Err(e),
            Err(t) => Err(token_no_longer_fits(t)),
        },
    }
}

/// `GET /v1/embed/results/{index}[?filters=…&wait=…]`: the newest result of one query for
/// the token's customer with the embed's filters.
pub async fn embed_result(
    app: &App,
    ctx: &mut Ctx,
    claims: &(Claims, ProjectRecord),
    index: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let wait = super::job_results::wait_param(query)?;
    let viewer = super::projects::filters_query(query)?;
    let (claims, p) = claims;
    let queries = parse_queries(&p.queries_json)?;
    let i: usize = index
        .parse()
        .ok()
        .filter(|i| *i < queries.len())
        .ok_or_else(|| ApiError::not_found(format!("no query {index:?} in this project")))?;
    // A query that takes no customer id has one result for everyone.
    let customer = queries[i].customer_param.map(|_| claims.sub.clone());
    // The newest successful result; before the first one, the newest run (to wait for).
    let idx = i64::try_from(i).unwrap_or(0);
    let since = project_tiles::since(&p.tiles_json, i);
    let filters = embed_filters(app, claims, p, viewer.as_ref()).await?;
    let key = project_params::filters_key(&queries[i].bind, &filters);
    let job_id =
        match project_jobs::latest(app, &p.id, (idx, &queries[i]), (customer.clone(), key.clone()), true, since).await?
        {
            Some(id) => id,
            None => {
                project_jobs::latest(app, &p.id, (idx, &queries[i]), (customer, key), false, since).await?.ok_or_else(
                    || ApiError::not_found("no result yet for this customer; the project has not run for them"),
                )?
            }
        };
    ctx.detail = Some(serde_json::json!({ "job": job_id, "query": i }));
    // An embed viewer never reads SQL, so never a failure's text either.
    api::result(app, &job_id, wait, false).await
}
