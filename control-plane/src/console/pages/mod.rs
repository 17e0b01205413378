//! The console's pages, by concern; each is a method of [`crate::console::Page`].

mod admin;
mod bindings;
pub(crate) mod dashboard;
pub(crate) mod filters;
pub(crate) mod jobs;
mod project_save;
mod projects;
mod query;
mod schedule;
