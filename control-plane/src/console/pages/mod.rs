//! The console's pages, by concern; each is a method of [`crate::console::Page`].

mod admin;
mod jobs;
mod projects;
mod query;
