//! The jobs of a project query that are its results.
//!
//! Jobs are kept under their query's position in the project. When the query at a
//! position becomes another one (a query removed, the later ones moving up; or replaced
//! under another name), the jobs kept there ran the query that was there before: the
//! project's layout notes when the position changed hands (`since`,
//! [`crate::app::project_tiles`]) and older jobs are not this query's results, so its tile
//! says "Not run yet" until it runs rather than show another query's numbers. A query
//! edited under its own name keeps its previous result until a refresh replaces it (and a
//! failed refresh is said beside it).

use crate::app::projects::ProjectQuery;
use crate::app::App;
use crate::http::ApiError;
use crate::store::access::AccessStore;
use crate::store::Store;

/// Whether job `id` ran `q` as the project holds it now (its SQL on its connection), as
/// its signed spec says.
async fn ran(app: &App, id: &str, q: &ProjectQuery) -> Result<bool, ApiError> {
    let Some(stored) = app.store.job_envelope(id.to_owned()).await? else { return Ok(false) };
    Ok(crate::store::queue::open_spec(&app.results, id, &stored)
        .is_ok_and(|spec| spec.sql == q.sql && spec.connection == q.connection))
}

/// The newest job of query `index` (`q`) of project `project` for `customer` and run
/// with `filters` (the key [`crate::app::project_params::filters_key`] gives; with
/// `succeeded_only`, the newest that succeeded), unless it is from before `since`: created
/// earlier, or in that very second (times are in seconds) and running other SQL.
pub async fn latest(
    app: &App,
    project: &str,
    (index, q): (i64, &ProjectQuery),
    (customer, filters): (Option<String>, Option<String>),
    succeeded_only: bool,
    since: Option<i64>,
) -> Result<Option<String>, ApiError> {
    let Some(id) = app.store.latest_project_job(project.to_owned(), index, customer, filters, succeeded_only).await?
    else {
        return Ok(None);
    };
    let Some(since) = since else { return Ok(Some(id)) };
    let Some(rec) = app.store.job(id.clone(), app.clock.now(), false).await? else { return Ok(None) };
    let current = rec.created_at > since || (rec.created_at == since && ran(app, &id, q).await?);
    Ok(current.then_some(id))
}
