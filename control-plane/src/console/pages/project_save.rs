//! The query page's save area: "Save as new project", "Add to project" (a project the
//! user may edit) and, when the page was opened from a dashboard tile's "Edit"
//! (`/console/query?project=ID&index=N`), "Save to project", which replaces that query.
//! The two project buttons are dashboard.js's: it reads the project, changes its queries
//! and sends one `PUT` (the layout is kept; an added query gets a tile at the end).
//! "Save to project" comes with the query's Filters ([`super::bindings`]) when the
//! project has parameters.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::RouteId;
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::Page;
use crate::http::{query_param, ApiError};

/// A project query opened for editing from its tile.
pub(crate) struct TileQuery {
    /// The project's id.
    pub project: String,
    /// The project's name.
    pub project_name: String,
    /// The query's index.
    pub index: usize,
    /// The query as `GET /v1/projects/{id}` shows it (with its SQL).
    pub query: Value,
    /// Whether the caller may change the project (owner, `edit`, admin).
    pub editable: bool,
    /// The project's parameters (dashboard filters), as the API shows them.
    pub parameters: Value,
}

fn decoded(q: Option<&str>, key: &str) -> String {
    query_param(q, key).and_then(|v| crate::http::percent_decode(&v.replace('+', " "))).unwrap_or_default()
}

impl Page<'_> {
    /// `?project=ID&index=N`: that query, read through the API (which shows its SQL only
    /// to those who may see it); `None` without `index`.
    pub(super) async fn tile_query(&self, q: Option<&str>) -> Result<Option<TileQuery>, ApiError> {
        let (project, index) = (decoded(q, "project"), decoded(q, "index"));
        if project.is_empty() || index.is_empty() {
            return Ok(None);
        }
        let p = self.get(RouteId::ProjectsRead, &[&project], None).await?;
        let queries = p["queries"].as_array().cloned().unwrap_or_default();
        let index: usize = index.parse().ok().filter(|i| *i < queries.len()).ok_or_else(|| {
            ApiError::bad_field("index", format!("this project has queries 0 to {}", queries.len().saturating_sub(1)))
        })?;
        let query = queries[index].clone();
        if !query["sql"].is_string() {
            return Err(crate::api::forbidden(
                "your access to this project does not show its SQL, so it cannot be edited",
            ));
        }
        Ok(Some(TileQuery {
            project,
            project_name: p["name"].as_str().unwrap_or_default().to_owned(),
            index,
            query,
            editable: matches!(p["access"].as_str(), Some("owner" | "admin" | "edit")),
            parameters: p["parameters"].clone(),
        }))
    }

    /// The save area of the query form.
    pub(super) async fn save_area(&self, tile: Option<&TileQuery>, q: Option<&str>) -> String {
        let mut b = String::from("<fieldset class=\"save-area\"><legend>Save</legend>");
        let query_name = tile.and_then(|t| t.query["name"].as_str()).unwrap_or_default().to_owned();
        // A view-logic collaborator may start from the query, not save it back.
        let tile = tile.filter(|t| t.editable && self.can(Scope::ProjectsWrite));
        if let Some(t) = tile {
            let sql = t.query["sql"].as_str().unwrap_or_default();
            b.push_str(&super::bindings::fieldset(&t.parameters, sql, &t.query["bind"]));
            let _ = write!(
                b,
                "<div class=\"row\"><button type=\"button\" class=\"primary\" data-project-replace=\"{}\" data-index=\"{}\">\
                 Save to project</button><span class=\"hint\">replaces “{}” in “{}”; its tile keeps its place and size</span></div>",
                e(&t.project),
                t.index,
                e(&query_name),
                e(&t.project_name)
            );
        }
        let _ = write!(
            b,
            "<div class=\"row\"><label>Project name <input name=\"_project\" data-optional></label>\
             <label>Query name <input name=\"_query_name\" value=\"{}\" data-optional></label>\
             <button type=\"submit\" data-api=\"POST /v1/projects\" data-wrap=\"project\" data-then=\"go:/console/projects/{{id}}\">\
             Save as new project</button></div>",
            e(&query_name)
        );
        if self.can(Scope::ProjectsWrite) {
            b.push_str(&self.add_to_project(&decoded(q, "project")).await);
        }
        b.push_str("<output role=\"alert\" data-save-output></output></fieldset>");
        if tile.is_some() || b.contains("data-project-add") {
            b.push_str("<script src=\"/console/assets/dashboard.js\" defer></script>");
        }
        b
    }

    /// "Add to project": the projects the user may edit, `chosen` selected.
    async fn add_to_project(&self, chosen: &str) -> String {
        let Ok(v) = self.get(RouteId::ProjectsList, &[], None).await else { return String::new() };
        let mut options = String::new();
        for p in v["projects"].as_array().into_iter().flatten() {
            if !matches!(p["access"].as_str(), Some("owner" | "admin" | "edit")) {
                continue;
            }
            let id = p["id"].as_str().unwrap_or_default();
            let sel = if id == chosen { " selected" } else { "" };
            let _ = write!(
                options,
                "<option value=\"{}\"{sel}>{}</option>",
                e(id),
                e(p["name"].as_str().unwrap_or_default())
            );
        }
        if options.is_empty() {
            return String::new();
        }
        format!(
            "<div class=\"row\"><label>Project <select name=\"_add_project\" data-project-select>{options}</select></label>\
             <button type=\"button\" data-project-add>Add to project</button>\
             <span class=\"hint\">as a new tile at the end of its dashboard</span></div>"
        )
    }
}
