//! A project's embed tokens and the embed API they open (`/v1/embed/…`): the results of
//! one end customer, with the dashboard filters the token fixed (the others' defaults;
//! nothing of the request changes them), and no SQL, agents or connections.

use http::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::api::project_jobs;
use crate::api::project_tiles;
use crate::api::projects::{check_customer, render_kind, viewable};
use crate::api::{self, bearer, forbidden, unauthorized, Ctx};
use crate::app::project_params;
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
            let all = super::projects::run_filters(app, &p, Some(f)).await?;
            let given = f.as_object().cloned().unwrap_or_default();
            let canonical = all.to_json();
            Some(given.keys().filter_map(|k| canonical.get(k).map(|v| (k.clone(), v.clone()))).collect())
        }
    };
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
    };
    let token = app.embed.sign(&claims);
    ctx.detail = Some(
        serde_json::json!({ "customer": r.customer, "jti": claims.jti, "expires_at": claims.exp, "filters": claims.flt }),
    );
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "token": token, "project": p.id, "customer": r.customer, "expires_at": claims.exp,
                             "jti": claims.jti, "filters": claims.flt }),
    ))
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

/// `GET /v1/embed/project`.
pub async fn embed_project(app: &App, ctx: &mut Ctx, req: &Request<bytes::Bytes>) -> Result<Response<Body>, ApiError> {
    let (claims, p) = embed_claims(app, ctx, req).await?;
    let queries: Vec<_> = parse_queries(&p.queries_json)?
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({ "index": i, "name": q.name, "render_kind": render_kind(&q.render) }))
        .collect();
    let tiles = project_tiles::shown(&p.tiles_json, queries.len());
    let filters = embed_filters(app, &claims, &p).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "project": { "id": p.id, "name": p.name }, "customer": claims.sub, "expires_at": claims.exp,
                             "queries": queries, "tiles": tiles,
                             "parameters": super::projects::stored_parameters(app, &p).await?.1,
                             "filters": filters.to_json() }),
    ))
}

/// The filters an embed shows: those its token fixed, the others' defaults. Nothing of
/// the request can change them.
async fn embed_filters(app: &App, claims: &Claims, p: &ProjectRecord) -> Result<project_params::Filters, ApiError> {
    let fixed = claims.flt.clone().map(serde_json::Value::Object);
    super::projects::run_filters(app, p, fixed.as_ref()).await.map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the embed token's filters no longer fit the dashboard's parameters ({})", e.message),
        )
    })
}

/// `GET /v1/embed/results/{index}`: the newest result of one query for the token's customer.
pub async fn embed_result(
    app: &App,
    ctx: &mut Ctx,
    claims: &(Claims, ProjectRecord),
    index: &str,
    wait: u64,
) -> Result<Response<Body>, ApiError> {
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
    let filters = embed_filters(app, claims, p).await?;
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
