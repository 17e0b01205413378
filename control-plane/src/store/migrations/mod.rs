//! The schema of both backends: the numbered SQL files of `sqlite/` and `postgres/`, in
//! the order each backend applies them. SQLite runs each in its own transaction with the
//! version bump (`PRAGMA user_version`); PostgreSQL records each in `outpost_schema`,
//! all under one advisory lock ([`crate::store::postgres`]).

/// Current schema version (PRAGMA user_version).
pub(crate) const SCHEMA_VERSION: i64 = 14;

const SCHEMA_V1: &str = include_str!("sqlite/001.sql");

/// v2: agent revocation.
const SCHEMA_V2: &str = include_str!("sqlite/002.sql");

/// v3: job-signing key rotation (public keys and signed statements only).
const SCHEMA_V3: &str = include_str!("sqlite/003.sql");

/// v4: job cancellation (when a user asked, when the agent was last told).
const SCHEMA_V4: &str = include_str!("sqlite/004.sql");

/// v5: access control (users, groups, shares, sessions, scoped API tokens, projects and
/// grants), the control plane's audit log, and who dispatched each job. Results are
/// sealed from now on: bodies stored in clear by earlier versions are dropped.
const SCHEMA_V5: &str = include_str!("sqlite/005.sql");

/// v6: single sign-on identities (issuer + subject) linked to users.
const SCHEMA_V6: &str = include_str!("sqlite/006.sql");

/// v7: agent pools (an enrolment token names the pool, an agent belongs to it, a job may
/// be addressed to it; `agent` is then the member holding it, empty while none does).
const SCHEMA_V7: &str = include_str!("sqlite/007.sql");

/// v8: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
const SCHEMA_V8: &str = include_str!("sqlite/008.sql");

/// v9: when an agent said it was stopping (cleared by its next request).
const SCHEMA_V9: &str = include_str!("sqlite/009.sql");

/// v10: the origins that may frame a project's embed page.
const SCHEMA_V10: &str = include_str!("sqlite/010.sql");

/// v11: project schedules (the schedule, its next due slot, the slot's progress).
const SCHEMA_V11: &str = include_str!("sqlite/011.sql");

/// v12: a project's dashboard tiles (order, sizes, text tiles).
const SCHEMA_V12: &str = include_str!("sqlite/012.sql");

/// v13: a project's parameters (dashboard filters) and the filters each job ran with.
const SCHEMA_V13: &str = include_str!("sqlite/013.sql");

/// v14: the filter values behind each project job's `filters` key.
const SCHEMA_V14: &str = include_str!("sqlite/014.sql");

/// Every migration, in order: (the version it brings the database to, its SQL).
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, SCHEMA_V8),
    (9, SCHEMA_V9),
    (10, SCHEMA_V10),
    (11, SCHEMA_V11),
    (12, SCHEMA_V12),
    (13, SCHEMA_V13),
    (14, SCHEMA_V14),
];

/// PostgreSQL schema v1: everything the SQLite schema has reached at its v7, in PostgreSQL types.
const PG_SCHEMA_V1: &str = include_str!("postgres/001.sql");

/// PostgreSQL v2: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
const PG_SCHEMA_V2: &str = include_str!("postgres/002.sql");

/// PostgreSQL v3: when an agent said it was stopping (cleared by its next request).
const PG_SCHEMA_V3: &str = include_str!("postgres/003.sql");

/// PostgreSQL v4: the origins that may frame a project's embed page.
const PG_SCHEMA_V4: &str = include_str!("postgres/004.sql");

/// PostgreSQL v5: project schedules (the schedule, its next due slot, the slot's progress).
const PG_SCHEMA_V5: &str = include_str!("postgres/005.sql");

/// PostgreSQL v6: a project's dashboard tiles (order, sizes, text tiles).
const PG_SCHEMA_V6: &str = include_str!("postgres/006.sql");

/// PostgreSQL v7: a project's parameters (dashboard filters) and the filters each job ran with.
const PG_SCHEMA_V7: &str = include_str!("postgres/007.sql");

/// PostgreSQL v8: admission of an agent and use of a signing key under advisory locks
/// instead of shared row locks (no multixact, no write for a poll that leases nothing).
const PG_SCHEMA_V8: &str = include_str!("postgres/008.sql");

/// PostgreSQL v9: the filter values behind each project job's `filters` key.
const PG_SCHEMA_V9: &str = include_str!("postgres/009.sql");

/// PostgreSQL v10: job indexes that hold only the rows their statements look for (open
/// jobs by agent and pool, project jobs, ended jobs): fewer index entries per job write.
const PG_SCHEMA_V10: &str = include_str!("postgres/010.sql");

/// PostgreSQL's migrations in order: (version, SQL). Append only.
pub(crate) const PG_MIGRATIONS: &[(i32, &str)] = &[
    (1, PG_SCHEMA_V1),
    (2, PG_SCHEMA_V2),
    (3, PG_SCHEMA_V3),
    (4, PG_SCHEMA_V4),
    (5, PG_SCHEMA_V5),
    (6, PG_SCHEMA_V6),
    (7, PG_SCHEMA_V7),
    (8, PG_SCHEMA_V8),
    (9, PG_SCHEMA_V9),
    (10, PG_SCHEMA_V10),
];

#[cfg(test)]
mod tests {
    /// The numbered files of `migrations/<backend>/` and the list each backend applies
    /// agree: every file listed once, in order, none left out.
    #[test]
    fn every_migration_file_is_applied_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
        let files = |backend: &str| -> Vec<i64> {
            let mut v: Vec<i64> = std::fs::read_dir(dir.join(backend))
                .expect("migrations dir")
                .map(|e| {
                    e.expect("entry").file_name().to_string_lossy().trim_end_matches(".sql").parse().expect("NNN.sql")
                })
                .collect();
            v.sort_unstable();
            v
        };
        let sqlite: Vec<i64> = super::MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(files("sqlite"), sqlite);
        assert_eq!(sqlite, (1..=super::SCHEMA_VERSION).collect::<Vec<_>>());
        let postgres: Vec<i64> = super::PG_MIGRATIONS.iter().map(|m| i64::from(m.0)).collect();
        assert_eq!(files("postgres"), postgres);
        assert_eq!(postgres, (1..=i64::try_from(postgres.len()).expect("len")).collect::<Vec<_>>());
    }
}
