//! The SQLite backend of [`AccessStore`](crate::store::access::AccessStore), one topic a
//! file, each call answered as `store::dispatch` lists: users, their single sign-on
//! identities, groups and shares in [`users`]; sessions and API tokens in
//! [`credentials`]; projects in [`projects`], their schedules in [`schedules`]; the audit log in [`audit`]; retention's
//! purge in [`retention`].

use crate::store::dispatch::{by_topic, impl_access_store};
use crate::store::SqliteStore;

mod audit;
mod credentials;
mod projects;
mod retention;
mod schedules;
mod users;

impl_access_store!(SqliteStore, by_topic);
