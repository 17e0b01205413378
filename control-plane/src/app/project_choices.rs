//! The current choices of a dashboard's `choice` parameters filled by a query
//! (`choices_from`, [`crate::app::project_params::ChoicesFrom`]): the distinct values of
//! the column in the newest successful result of that query, read (and unsealed) as
//! `GET /v1/projects/{id}/results` finds it and `GET /v1/jobs/{id}/result` opens it.

use crate::app::project_jobs;
use crate::app::project_params::{self, Current, Kind, Parameter};
use crate::app::project_tiles;
use crate::app::projects::parse_queries;
use crate::app::App;
use crate::http::ApiError;
use crate::store::access::ProjectRecord;
use crate::store::{JobState, Store};

/// The current choices of each `choices_from` parameter of `p`.
pub async fn current(app: &App, p: &ProjectRecord, params: &[Parameter]) -> Result<Current, ApiError> {
    let mut out = Current::new();
    if !params.iter().any(|x| matches!(&x.kind, Kind::Choice { choices_from: Some(_), .. })) {
        return Ok(out);
    }
    let queries = parse_queries(&p.queries_json)?;
    // The source query's result with the other parameters at their defaults.
    let defaults = project_params::resolve(params, None, app.today())?;
    for x in params {
        let Kind::Choice { choices_from: Some(from), .. } = &x.kind else { continue };
        let Some(q) = queries.get(from.query) else {
            out.insert(x.name.clone(), None);
            continue;
        };
        let idx = i64::try_from(from.query).unwrap_or(0);
        let key = project_params::filters_key(&q.bind, &defaults);
        let since = project_tiles::since(&p.tiles_json, from.query);
        let job = project_jobs::latest(app, &p.id, (idx, q), (None, key), true, since).await?;
        let mut values = None;
        if let Some(id) = job {
            if let Some(rec) = app.store.job(id.clone(), app.clock.now(), true).await? {
                let body = rec.body.as_ref().filter(|_| rec.state == JobState::Succeeded);
                if let Some(bytes) = body.and_then(|sealed| app.results.open(&id, sealed)) {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    values = Some(project_params::distinct_values(&v, &from.column));
                }
            }
        }
        out.insert(x.name.clone(), values);
    }
    Ok(out)
}

/// The project's parameters, and as shown: those filled by a query with their current
/// choices ([`current`]).
pub async fn stored_parameters(app: &App, p: &ProjectRecord) -> Result<(Vec<Parameter>, serde_json::Value), ApiError> {
    let params = project_params::parse_stored(&p.parameters_json);
    let current = current(app, p, &params).await?;
    let shown = project_params::shown(&params, &current);
    Ok((params, shown))
}

/// The values of a run of `p` with `given` (the `filters` object): checked, absent ones
/// their default; a choice filled by a query checked against its current choices.
pub async fn run_filters(
    app: &App,
    p: &ProjectRecord,
    given: Option<&serde_json::Value>,
) -> Result<project_params::Filters, ApiError> {
    let params = project_params::parse_stored(&p.parameters_json);
    let mut filters = project_params::resolve(&params, given, app.today())?;
    let current = current(app, p, &params).await?;
    project_params::apply_current_choices(&params, &mut filters, given, &current)?;
    Ok(filters)
}
