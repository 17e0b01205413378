//! The test databases of the store's tests and of the end-to-end tests (`tests/`, through
//! the `test-support` feature): a fresh SQLite file or a fresh PostgreSQL database per
//! test, and [`on_both_backends!`], which runs each contract scenario on both. A
//! PostgreSQL database is dropped when its test ends, also when the scenario panics.

#[cfg(test)]
use std::future::Future;

use crate::store::postgres::{PgOptions, PgStore};
#[cfg(test)]
use crate::store::SqliteStore;

/// The server's URL from `OUTPOST_TEST_PG_URL` (default: the local server).
pub fn base_url() -> String {
    std::env::var("OUTPOST_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn with_db(url: &str, db: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let base = head.rsplit_once('/').map_or(head, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A new, empty database on the test server (`{prefix}_<random>`), not yet migrated.
pub struct EmptyDb {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
}

impl EmptyDb {
    /// Creates the database; the error says how to start the server.
    pub async fn create(prefix: &str) -> Result<Self, String> {
        let admin = base_url();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.map_err(|e| {
            format!(
                "PostgreSQL is not reachable at {admin} ({e}); set OUTPOST_TEST_PG_URL or start it: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        })?;
        tokio::spawn(conn);
        let name = format!("{prefix}_{}", outpost_protocol::encoding::hex(&outpost_protocol::ids::random_bytes::<6>()));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| format!("cannot create a test database on {admin}: {e}"))?;
        Ok(Self { url: with_db(&admin, &name), name })
    }

    /// Drops the database (closing its other sessions); a failure is ignored, as the
    /// database is the test's own.
    pub async fn drop(self) {
        if let Ok((client, conn)) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
        }
    }
}

/// A new database on the test server with the store opened (migrated) on it.
pub struct TestDb {
    /// The store.
    pub store: PgStore,
    db: EmptyDb,
}

impl TestDb {
    /// Creates the database and opens a store on it.
    pub async fn new() -> Self {
        let db = EmptyDb::create("outpost_unit").await.unwrap_or_else(|e| panic!("{e}"));
        let opts = PgOptions { url: db.url.clone(), password_file: None, ca_file: None, max_connections: 8 };
        let store = PgStore::open(&opts).await.expect("open the PostgreSQL store");
        Self { store, db }
    }

    /// Drops the database.
    pub async fn drop(self) {
        self.store.close();
        self.db.drop().await;
    }
}

#[cfg(test)]
/// Runs `scenario` on a store in a new SQLite file (removed with its directory).
pub async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(SqliteStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
    scenario(store).await;
}

#[cfg(test)]
/// Runs `scenario` on a store in a new PostgreSQL database, which is dropped even when
/// the scenario fails (its panic is raised again afterwards).
pub async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::new().await;
    let result = tokio::spawn(scenario(db.store.clone())).await;
    db.drop().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[cfg(test)]
/// Prepares nothing: the seed of scenarios that start from an empty store.
pub async fn no_seed<S>(_: &S) {}

#[cfg(test)]
/// Each scenario `async fn name<S>(store: &S)` of the module it is called in becomes
/// two tests, `name::sqlite` and `name::postgres`, run by [`on_sqlite`] and
/// [`on_postgres`], so both backends are held to the same behaviour. With `seed: path;`
/// first, `path(&store)` (a path from the crate root) prepares each store before the
/// scenario.
macro_rules! on_both_backends {
    (seed: $seed:path; $($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                $crate::store::testdb::on_sqlite(|store| async move {
                    $seed(&store).await;
                    super::$case(&store).await;
                })
                .await;
            }

            #[tokio::test]
            async fn postgres() {
                $crate::store::testdb::on_postgres(|store| async move {
                    $seed(&store).await;
                    super::$case(&store).await;
                })
                .await;
            }
        }
    )*};
    ($($case:ident),* $(,)?) => {
        $crate::store::testdb::on_both_backends!(seed: $crate::store::testdb::no_seed; $($case),*);
    };
}

#[cfg(test)]
pub(crate) use on_both_backends;
