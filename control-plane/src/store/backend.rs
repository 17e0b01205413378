//! The store a control plane runs on, chosen by `store:` in control-plane.yaml: the
//! embedded SQLite database (one machine) or PostgreSQL (several replicas). Both
//! implement the same narrow traits; this enum forwards each call to the one in use.

use crate::store::dispatch::{impl_access_store, impl_store};
use crate::store::postgres::PgStore;
use crate::store::{SqliteStore, StoreError};

/// The backend in use.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded database in the data dir.
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared by replicas (boxed: the pool handle is large).
    Postgres(Box<PgStore>),
}

impl Backend {
    /// At a clean stop: SQLite's write-ahead log is copied into the database file and
    /// emptied, so that the data dir's `control-plane.db` alone holds every change (a copy
    /// of it is then a whole backup). PostgreSQL: nothing to do.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.checkpoint_alone().await,
            Backend::Postgres(_) => Ok(()),
        }
    }
}

/// Answers a call with the backend in use (the topic is the backends' business).
macro_rules! forward {
    ($self:ident, $topic:ident::$method:ident($($arg:ident),*)) => {
        match $self {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl_store!(Backend, forward);
impl_access_store!(Backend, forward);
