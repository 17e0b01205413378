//! What a job is called (issue 23, "jobs keep their meaning"): a project job by its
//! project query's name, an ad-hoc job by the first line of its SQL. Computed when a job
//! is read, from what the store already holds (the sealed envelope, the project), so no
//! schema changes and no name can disagree with the SQL it stands for.

use std::collections::HashMap;

use crate::api::projects::ProjectQuery;
use crate::app::App;
use crate::auth::access::Caller;
use crate::http::ApiError;
use crate::store::access::AccessStore;
use crate::store::{JobRecord, Store};

/// The name of a schema browser's catalog job.
pub const CATALOG_JOB_NAME: &str = "Schema catalog";

/// Whether a job as `GET /v1/jobs?sql=true` lists it is a schema browser's catalog job:
/// its name, and no SQL (every other job has some). The console's lists leave these out;
/// the API and the audit logs keep them.
pub fn is_catalog_job(job: &serde_json::Value) -> bool {
    job["name"] == CATALOG_JOB_NAME && job["sql"].as_str().is_some_and(str::is_empty)
}

/// Longest name, in characters, the ellipsis included.
pub const MAX_NAME_CHARS: usize = 80;

/// The name of an ad-hoc job whose SQL is `sql`: its first non-empty line, trimmed; a
/// leading `--` comment counts without its dashes (an empty comment is passed over);
/// whitespace runs become one space; longer than [`MAX_NAME_CHARS`] is cut with `…`.
pub fn from_sql(sql: &str) -> String {
    for line in sql.lines() {
        let mut line = line.trim();
        if let Some(comment) = line.strip_prefix("--") {
            line = comment.trim_start_matches('-').trim();
        }
        if line.is_empty() {
            continue;
        }
        return shorten(line);
    }
    "Untitled query".to_owned()
}

/// `text` with whitespace and control characters collapsed to single spaces, cut to
/// [`MAX_NAME_CHARS`] characters with an ellipsis.
pub fn shorten(text: &str) -> String {
    let words: Vec<&str> =
        text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
    let one = words.join(" ");
    if one.chars().count() <= MAX_NAME_CHARS {
        return one;
    }
    let mut cut: String = one.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// What a job list looks up once: per project, whether the caller may see its logic and
/// its queries' names (`None` when the project is gone); per user id, the user's name.
#[derive(Debug, Default)]
pub struct ProjectCache {
    projects: HashMap<String, (bool, Option<Vec<String>>)>,
    users: HashMap<String, Option<String>>,
}

impl ProjectCache {
    /// Nothing looked up yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The name of user `id` (who dispatched a job), looked up once; `None` when unknown.
pub async fn user_name(app: &App, id: &str, seen: &mut ProjectCache) -> Result<Option<String>, ApiError> {
    if let Some(found) = seen.users.get(id) {
        return Ok(found.clone());
    }
    let name = app.store.user_by_id(id.to_owned()).await?.map(|u| u.name);
    seen.users.insert(id.to_owned(), name.clone());
    Ok(name)
}

/// Whether `caller` may see project `pid`'s logic, and its query names, looked up once.
pub async fn project_facts(
    app: &App,
    caller: &Caller,
    pid: &str,
    seen: &mut ProjectCache,
) -> Result<(bool, Option<Vec<String>>), ApiError> {
    if let Some(found) = seen.projects.get(pid) {
        return Ok(found.clone());
    }
    let facts = match app.project_access(caller, pid).await {
        Ok((p, access)) => {
            let names = serde_json::from_str::<Vec<ProjectQuery>>(&p.queries_json)
                .ok()
                .map(|qs| qs.into_iter().map(|q| q.name).collect());
            (caller.is_admin() || access.can_see_logic(), names)
        }
        // A deleted project: only an admin still sees its jobs' logic.
        Err(e) if e.status == http::StatusCode::NOT_FOUND => (caller.is_admin(), None),
        Err(e) => return Err(e),
    };
    seen.projects.insert(pid.to_owned(), facts.clone());
    Ok(facts)
}

/// The name of job `rec` as `caller` may see it: the project query's name; else, for one
/// who may read its SQL, the SQL's first line; else `Query N`. With it, the job's SQL when
/// `caller` may read it and `want_sql`.
pub async fn for_job(
    app: &App,
    caller: &Caller,
    rec: &JobRecord,
    seen: &mut ProjectCache,
    want_sql: bool,
) -> Result<(String, Option<String>), ApiError> {
    let mut name = None;
    let may_read_sql = match &rec.origin.project_id {
        Some(pid) => {
            let (logic, names) = project_facts(app, caller, pid, seen).await?;
            let idx = rec.origin.query_index.and_then(|i| usize::try_from(i).ok());
            name = idx.and_then(|i| names.as_ref()?.get(i)).map(|n| shorten(n));
            if name.is_none() && !logic {
                name = Some(format!("Query {}", idx.map_or(0, |i| i + 1)));
            }
            logic
        }
        None => caller.is_admin() || rec.origin.owner.as_deref() == Some(caller.user_id.as_str()),
    };
    if let (Some(n), false) = (&name, may_read_sql && want_sql) {
        return Ok((n.clone(), None));
    }
    if !may_read_sql {
        return Ok((fallback(&rec.id), None));
    }
    let sql = match app.store.job_envelope(rec.id.clone()).await? {
        None => None,
        Some(stored) => match crate::store::queue::open_spec(&app.results, &rec.id, &stored) {
            // The schema browser's catalog job has no SQL to name it by.
            Ok(spec) if matches!(spec.render, outpost_protocol::RenderSpec::Catalog(_)) => {
                name = name.or_else(|| Some(CATALOG_JOB_NAME.to_owned()));
                Some(spec.sql)
            }
            Ok(spec) => Some(spec.sql),
            Err(problem) => {
                tracing::warn!(job_id = %rec.id, problem, "A job's stored envelope cannot be read; it is listed without its SQL.");
                None
            }
        },
    };
    let name = name.or_else(|| sql.as_deref().map(from_sql)).unwrap_or_else(|| fallback(&rec.id));
    Ok((name, sql.filter(|_| want_sql)))
}

/// `Job 1a2b3c4d`: the name of a job whose SQL cannot be read.
fn fallback(id: &str) -> String {
    format!("Job {}", id.chars().take(8).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_the_first_line_or_its_comment() {
        assert_eq!(from_sql("\n  \nSELECT region, SUM(x)\nFROM orders"), "SELECT region, SUM(x)");
        assert_eq!(from_sql("-- Revenue by region\nSELECT 1"), "Revenue by region");
        assert_eq!(from_sql("---- Revenue ----\nSELECT 1"), "Revenue ----");
        assert_eq!(from_sql("--\n  --   \nSELECT 1"), "SELECT 1");
        assert_eq!(from_sql("SELECT\t1,\r\n 2"), "SELECT 1,");
        assert_eq!(from_sql("   "), "Untitled query");
        assert_eq!(fallback("0123456789abcdef"), "Job 01234567");
        assert!(is_catalog_job(&serde_json::json!({ "name": "Schema catalog", "sql": "" })));
        assert!(!is_catalog_job(&serde_json::json!({ "name": "Schema catalog", "sql": "SELECT 1" })));
        assert!(!is_catalog_job(&serde_json::json!({ "name": "Schema catalog" })), "SQL not readable: not known");
    }

    #[test]
    fn a_long_name_is_cut_with_an_ellipsis() {
        let long = format!("SELECT {}", "é".repeat(200));
        let n = from_sql(&long);
        assert_eq!(n.chars().count(), MAX_NAME_CHARS);
        assert!(n.ends_with('…') && n.starts_with("SELECT éé"));
        // No trailing space before the ellipsis.
        let spaced = format!("{} tail", "a".repeat(MAX_NAME_CHARS - 2));
        assert_eq!(shorten(&spaced), format!("{}…", "a".repeat(MAX_NAME_CHARS - 2)));
        assert_eq!(shorten(&"x".repeat(MAX_NAME_CHARS)), "x".repeat(MAX_NAME_CHARS));
    }
}
