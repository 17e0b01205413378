//! The end-to-end tests: the real binaries (`OUTPOST_BIN_DIR`), real mutual TLS on
//! loopback, real PostgreSQL and MariaDB servers, real Chromium, real systemd in a guest.
//!
//! One test binary with a module per area, so the workspace is linked once rather than
//! once per file. Run one area with `cargo test -p outpost-e2e --test e2e foundation::`.

mod access;
mod audit;
mod cache;
mod cloud_hardening;
mod console;
mod dashboard;
mod dashboard_filters;
mod dashboard_job_origin;
mod egress;
mod embed_attacks;
mod embed_page;
mod embed_viewer_filters;
mod enrolment_audit;
mod error_egress;
mod foundation;
mod golden_charts;
mod jobs_meaning;
mod keys;
mod mysql;
mod openapi;
mod packaging;
mod pg_tls;
mod postgres;
mod privileged_mysql;
mod privileged_pg;
mod project_results;
mod project_schedules;
mod provenance;
mod provenance_attacks;
mod proxy;
mod replicas;
mod schema;
mod schema_browser;
mod security;
mod service;
mod sign_in_flood;
mod tls;
mod token_revocation;
mod vault;
