//! PostgreSQL's own floor for a job store, measured on the benchmark's server in the same
//! run: the server CPU of one durable single-row `INSERT` transaction, the cheapest write
//! that survives a crash (`synchronous_commit` as the server has it).
//!
//! A job makes at least three such writes on a PostgreSQL store (queued, leased, final),
//! each one a promise: a queued job, a lease and a result all survive a crash of the
//! database. Its two API requests each check their token in the store (a revoked token is
//! refused at the very next request, on every replica): two reads, whose floor is one row
//! read by its primary key. So no PostgreSQL store with those defences, however its
//! statements are written, spends less server CPU per job than three of the writes and
//! two of the reads. `outpost-bench-replicas` prints the bound this puts on PostgreSQL's
//! throughput beside SQLite's when the machine's cores are the limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::PgDatabase;

/// One phase of the floor run: `statements` statements from `connections` connections.
pub struct Phase {
    /// Statements in the measured phase.
    pub statements: usize,
    /// Concurrent connections that sent them.
    pub connections: usize,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// CPU seconds of every `postgres` process in the measured phase.
    pub server_cpu: f64,
}

impl Phase {
    /// Server CPU of one statement, in microseconds.
    pub fn per_statement_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.statements.max(1) as f64
    }
}

/// What the floor run measured.
pub struct Floor {
    /// Durable single-row inserts, each its own transaction.
    pub write: Phase,
    /// Reads of one row by its primary key, each its own (read-only) transaction.
    pub read: Phase,
}

/// A short text and one index: the cheapest durable write there is, not a job's.
const INSERT: &str = "INSERT INTO floor_rows (v) VALUES ($1)";

/// The cheapest read there is: one row by its primary key.
const READ: &str = "SELECT v FROM floor_rows WHERE id = $1";

/// Runs `per_connection` durable single-row inserts on each of `connections` connections
/// at once, then as many reads by primary key, in a database of its own (dropped after),
/// each after a warm-up of 20 per connection. The connections stay open until the
/// server's CPU has been read again: a backend that exits takes its CPU time with it.
pub async fn durable_insert_floor(connections: usize, per_connection: usize) -> Result<Floor> {
    let connections = connections.max(1);
    let db = tokio::task::spawn_blocking(PgDatabase::create).await??;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", db.url))?;
        tokio::spawn(conn);
        clients.push(Arc::new(client));
    }
    clients[0]
        .batch_execute("CREATE TABLE floor_rows (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v TEXT NOT NULL)")
        .await?;
    let run = |sql: &'static str, n: usize| {
        let tasks: Vec<_> = clients
            .iter()
            .map(|c| {
                let c = Arc::clone(c);
                tokio::spawn(async move {
                    let stmt = c.prepare(sql).await?;
                    for id in (1_i64..).take(n) {
                        match sql {
                            INSERT => c.execute(&stmt, &[&"a short row of the floor"]).await.map(drop)?,
                            _ => c.query_opt(&stmt, &[&id]).await.map(drop)?,
                        }
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await??;
            }
            anyhow::Ok(())
        }
    };
    let phase = async |sql: &'static str| -> Result<Phase> {
        run(sql, 20).await?;
        let before = crate::postgres_cpu_secs();
        let start = Instant::now();
        run(sql, per_connection).await?;
        let elapsed = start.elapsed();
        let server_cpu = crate::postgres_cpu_secs() - before;
        Ok(Phase { statements: connections * per_connection, connections, elapsed, server_cpu })
    };
    let write = phase(INSERT).await?;
    let read = phase(READ).await?;
    drop(clients);
    tokio::task::spawn_blocking(move || drop(db)).await?;
    Ok(Floor { write, read })
}
