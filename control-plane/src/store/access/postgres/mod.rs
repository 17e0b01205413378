//! [`AccessStore`](crate::store::access::AccessStore) on PostgreSQL: the same behaviour as the SQLite implementation in
//! `access::sqlite`, for several replicas sharing one database.
//!
//! - Every method that the SQLite backend runs as several statements is one transaction
//!   here. Where SQLite relies on serialising writers (a check, then a change), the
//!   rows the check reads are locked first, so READ COMMITTED replicas cannot interleave.
//! - Text is ordered with `COLLATE "C"` (byte order, like SQLite's `BINARY`), so lists
//!   come back in the same order whatever the database's default collation is.
//! - Password and token hashes are bound as parameters, never logged or put in errors.
//!
//! One topic a file, each call answered as `store::dispatch` lists: users, their single
//! sign-on identities, groups and shares in [`users`]; sessions and API tokens in
//! [`credentials`]; projects in [`projects`], their schedules in [`schedules`]; the audit log in [`audit`]; retention's
//! purge in [`retention`].

use crate::store::dispatch::{by_topic, impl_access_store};
use crate::store::postgres::PgStore;

mod audit;
pub(crate) use audit::AuditWriter;
mod credentials;
mod projects;
pub(crate) mod retention;
mod schedules;
mod users;

impl_access_store!(PgStore, by_topic);
