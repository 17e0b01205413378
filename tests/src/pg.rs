//! The PostgreSQL server the tests use (`OUTPOST_TEST_PG_URL`, default the local one),
//! a throw-away schema per test, and the agent.yaml lines of a connection to it.

use anyhow::{Context as _, Result};

/// Where the server is.
pub struct Server {
    /// The URL as given.
    pub url: String,
    /// The parsed URL.
    pub config: tokio_postgres::Config,
}

/// The server from `OUTPOST_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
pub fn server() -> Result<Server> {
    let url = std::env::var("OUTPOST_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let config: tokio_postgres::Config = url.parse().with_context(|| format!("OUTPOST_TEST_PG_URL {url:?}"))?;
    Ok(Server { url, config })
}

impl Server {
    /// Host name or address.
    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        }
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    /// Database name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("test")
    }

    /// User name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// The agent.yaml lines of a connection `name` to this server (TLS off: the local
    /// test server has no certificate), indented for `connections:`, ending in a newline.
    /// The test server's user (`postgres`) is a superuser, which the agent refuses by
    /// default: these lines say `allow_privileged: true`. tests/tests/e2e/privileged_pg.rs
    /// runs the agent as a least-privilege role without it.
    pub fn connection_yaml(&self, name: &str) -> String {
        self.connection_yaml_as(name, self.user(), true)
    }

    /// Like [`Server::connection_yaml`], connecting as `user`, with `allow_privileged:
    /// true` only when `allow_privileged` is set.
    pub fn connection_yaml_as(&self, name: &str, user: &str, allow_privileged: bool) -> String {
        format!(
            "  {name}:\n    kind: postgres\n    host: {}\n    port: {}\n    database: {}\n    user: {user}\n    \
             password_credential: warehouse\n    tls: disable\n{}",
            self.host(),
            self.port(),
            self.database(),
            if allow_privileged { "    allow_privileged: true\n" } else { "" }
        )
    }
}

/// The SELECT-only login role the benchmarks connect the agent as (what a customer
/// runs, docs/DATABASES.md): kept on the server, like the `outpost_bench` schema.
pub const BENCH_READER: &str = "outpost_bench_reader";

/// Creates schema `outpost_bench` and [`BENCH_READER`] if missing, and lets the role read
/// every table in that schema (call it after creating the tables).
pub async fn bench_reader(admin: &tokio_postgres::Client) -> Result<()> {
    let r = BENCH_READER;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS outpost_bench;
             DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{r}') THEN
                 CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
               END IF;
             END $$;
             GRANT USAGE ON SCHEMA outpost_bench TO {r};
             GRANT SELECT ON ALL TABLES IN SCHEMA outpost_bench TO {r};"
        ))
        .await?;
    Ok(())
}

/// An admin session and a fresh schema `name`, dropped by [`Schema::drop_now`].
pub struct Schema {
    /// A superuser session.
    pub admin: tokio_postgres::Client,
    /// The schema's name.
    pub name: String,
}

/// Connects as admin and creates a schema `outpost_<tag>_<random>`; fails, saying how to
/// start the server, when it is not reachable.
pub async fn schema(s: &Server, tag: &str) -> Result<Schema> {
    let (admin, conn) = s.config.connect(tokio_postgres::NoTls).await.with_context(|| {
        format!(
            "PostgreSQL is not reachable at {}: start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set OUTPOST_TEST_PG_URL",
            s.url
        )
    })?;
    tokio::spawn(conn);
    let name = format!("outpost_{tag}_{}", &outpost_protocol::ids::new_nonce()[..12]);
    admin.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
    Ok(Schema { admin, name })
}

impl Schema {
    /// Drops the schema and everything in it.
    pub async fn drop_now(self) -> Result<()> {
        self.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await?;
        Ok(())
    }
}
