//! A job's rows, from the database or the result cache, into its renderer's sink.
//!
//! The sink is the same whichever way the rows come: a line, area or scatter chart takes
//! them one at a time into its downsampler ([`ChartSink`]: the egress policy's column
//! checks run when the columns arrive); every other kind collects the capped result
//! (tables, bars, pies and scalars are drawn from the whole result; masks are applied
//! to it before rendering). A cache hit replays the entry into that sink on a blocking
//! thread; a miss tees the query's rows into it and into the cache's writer. Nothing
//! here holds the whole result for a chart.

use outpost_protocol::wire::DeliveredJob;

use super::Ctx;
use crate::audit::{AuditRecord, CacheRecord};
use crate::cache::entry::Replay;
use crate::cache::fill::Tee;
use crate::cache::Lookup;
use crate::config::AgentConfig;
use crate::connectors::{Collect, Connector, QueryError, QueryLimits, RowSink};

/// Why a streamed chart could not be drawn once its rows were in; the job fails with
/// `render_failed` and this text.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChartError {
    /// The renderer refused the rows.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// The query never announced its columns, so no chart was started.
    #[error("the query returned no columns")]
    NoColumns,
}

/// Rows streamed into a downsampled line, area or scatter chart.
pub(super) struct ChartSink {
    policy: crate::policy::EgressPolicy,
    render: outpost_protocol::RenderSpec,
    provenance: Option<crate::provenance::ResultProvenance>,
    kind: crate::render::XyKind,
    spec: outpost_protocol::XySpec,
    max_points: usize,
    chart: Option<crate::render::XyChart>,
    columns: Option<Vec<String>>,
    rows: usize,
}

impl ChartSink {
    /// A sink for this job when it is an x–y chart.
    fn for_job(spec: &outpost_protocol::JobSpec, policy: &crate::policy::EgressPolicy) -> Option<Self> {
        use outpost_protocol::RenderSpec;
        let (kind, xy) = match &spec.render {
            RenderSpec::Line(s) => (crate::render::XyKind::Line, s),
            RenderSpec::Area(s) => (crate::render::XyKind::Area, s),
            RenderSpec::Scatter(s) => (crate::render::XyKind::Scatter, s),
            _ => return None,
        };
        Some(Self {
            policy: policy.clone(),
            render: spec.render.clone(),
            provenance: None,
            kind,
            spec: xy.clone(),
            max_points: policy.chart_points(),
            chart: None,
            columns: None,
            rows: 0,
        })
    }

    pub(super) fn finish(&mut self, truncated: bool) -> Result<crate::render::Rendered, ChartError> {
        match self.chart.take() {
            Some(chart) => Ok(chart.finish(truncated)?),
            None => Err(ChartError::NoColumns),
        }
    }

    fn stop(e: &crate::render::RenderError) -> QueryError {
        QueryError::Sink(e.to_string())
    }
}

impl RowSink for ChartSink {
    fn provenance(&mut self, provenance: crate::provenance::ResultProvenance) -> Result<(), QueryError> {
        self.provenance = Some(provenance);
        Ok(())
    }

    fn columns(&mut self, columns: &[String]) -> Result<(), QueryError> {
        // Every column a line, area or scatter chart draws is drawn to scale: none may
        // derive from a masked column, whatever the query calls it.
        let masks = self.policy.column_masks(columns, self.provenance.as_ref()).map_err(QueryError::Refused)?;
        self.policy.check_drawn(&self.render, columns, &masks).map_err(QueryError::Refused)?;
        match crate::render::XyChart::new(self.kind, &self.spec, columns, self.max_points) {
            Ok(chart) => {
                self.chart = Some(chart);
                self.columns = Some(columns.to_vec());
                Ok(())
            }
            Err(e) => Err(Self::stop(&e)),
        }
    }

    fn row(&mut self, row: Vec<crate::resultset::Value>, index: usize) -> Result<(), QueryError> {
        self.row_ref(&row, index)
    }

    /// The chart reads its x, y, y2 and series columns only.
    fn reads(&self) -> Option<Vec<bool>> {
        let columns = self.columns.as_ref()?;
        let wanted = |c: &String| {
            *c == self.spec.x
                || self.spec.y.contains(c)
                || self.spec.y2.contains(c)
                || self.spec.series.as_ref() == Some(c)
        };
        Some(columns.iter().map(wanted).collect())
    }

    fn row_ref(&mut self, row: &[crate::resultset::Value], index: usize) -> Result<(), QueryError> {
        self.rows += 1;
        let pushed = match self.chart.as_mut() {
            Some(chart) => chart.push(row, index),
            None => return Err(QueryError::Sink("rows before columns".into())),
        };
        pushed.map_err(|e| Self::stop(&e))
    }
}

/// Where a job's rows go: its chart's downsampler, or the whole capped result.
pub(super) enum RenderSink {
    /// Line, area, scatter.
    Chart(Box<ChartSink>),
    /// Every other kind.
    Rows(Collect),
}

impl RenderSink {
    pub(super) fn for_job(spec: &outpost_protocol::JobSpec, policy: &crate::policy::EgressPolicy) -> Self {
        match ChartSink::for_job(spec, policy) {
            Some(chart) => Self::Chart(Box::new(chart)),
            None => Self::Rows(Collect::default()),
        }
    }

    /// Rows handed to the sink.
    pub(super) fn rows(&self) -> usize {
        match self {
            Self::Chart(c) => c.rows,
            Self::Rows(c) => c.0.rows.len(),
        }
    }

    fn sink(&mut self) -> &mut dyn RowSink {
        match self {
            Self::Chart(c) => c.as_mut(),
            Self::Rows(c) => c,
        }
    }
}

impl RowSink for RenderSink {
    fn provenance(&mut self, provenance: crate::provenance::ResultProvenance) -> Result<(), QueryError> {
        self.sink().provenance(provenance)
    }

    fn columns(&mut self, columns: &[String]) -> Result<(), QueryError> {
        self.sink().columns(columns)
    }

    fn row(&mut self, row: Vec<crate::resultset::Value>, index: usize) -> Result<(), QueryError> {
        self.sink().row(row, index)
    }

    fn reads(&self) -> Option<Vec<bool>> {
        match self {
            Self::Chart(c) => c.reads(),
            Self::Rows(c) => c.reads(),
        }
    }

    fn row_ref(&mut self, row: &[crate::resultset::Value], index: usize) -> Result<(), QueryError> {
        self.sink().row_ref(row, index)
    }
}

/// How the rows came (the audit record's `cache` says whether from the cache).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fetched {
    /// The row cap cut the result.
    pub truncated: bool,
}

async fn audit_entry(ctx: &Ctx, job: &DeliveredJob, connection: &str, verdict: &'static str, reason: String) {
    let record = CacheRecord {
        event: "cache",
        ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        verdict,
        job_id: job.job_id.clone(),
        connection: connection.to_owned(),
        reason,
    };
    if let Err(e) = ctx.audit.record(&record).await {
        tracing::error!(error = %e, verdict, "Audit record of a cache entry not written.");
    }
}

/// Runs the query into a sink from `make`, or replays it from the cache when the job's
/// max-age, capped by the connection's policy, allows. A miss stores the result
/// (encrypted) while the rows go to the sink, and only when the query ends well; a
/// damaged entry is deleted, audited, and the query runs into a fresh sink; so does an
/// entry of an earlier agent's format. The sink comes back in every case (its row count
/// is the job's `rows_read`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn cached_query(
    ctx: &Ctx,
    cfg: &AgentConfig,
    job: &DeliveredJob,
    spec: &outpost_protocol::JobSpec,
    conn: &Connector,
    limits: QueryLimits,
    rec: &mut AuditRecord,
    make: &(dyn Fn() -> RenderSink + Sync),
) -> (RenderSink, Result<Fetched, QueryError>) {
    let max_age = spec.cache.max_age_secs.min(cfg.cache_cap(&spec.connection));
    let mut sink = make();
    let Some(cache) = ctx.cache.clone().filter(|_| max_age > 0) else {
        rec.cache = Some("off");
        let queried = conn.query_into(spec.sql.clone(), spec.params.clone(), limits, &mut sink).await;
        return (sink, queried.map(|truncated| Fetched { truncated }));
    };
    // Everything that changes the rows read: the database, the SQL, the parameters and
    // the row cap.
    let identity = format!("{}\0{}\0max_rows={}", spec.connection, conn.identity(), limits.max_rows);
    let params = serde_json::to_string(&spec.params).unwrap_or_default();
    let entry = crate::cache::entry_hash(&identity, &spec.sql, &params);
    let looked = {
        let (cache, now) = (cache.clone(), ctx.clock.now());
        tokio::task::spawn_blocking(move || cache.open_entry(entry, max_age, now)).await
    };
    rec.cache = Some("miss");
    let damaged = |reason: &str| {
        tracing::warn!(%reason, "A cache entry did not authenticate; deleted it and running the query.");
    };
    match looked {
        // An entry written before the agent traced column sources has none: the masks
        // need them, so the query runs again (and the entry is replaced).
        Ok(Ok(Lookup::Hit(found))) if found.header().provenance.is_some() || !limits.provenance => {
            let cancel = limits.cancel.clone();
            let replayed = tokio::task::spawn_blocking(move || {
                let r = found.replay(&mut sink, &|| cancel.is_cancelled());
                (sink, r)
            })
            .await;
            match replayed {
                Ok((s, Ok(trailer))) => {
                    rec.cache = Some("hit");
                    return (s, Ok(Fetched { truncated: trailer.truncated }));
                }
                Ok((s, Err(Replay::Sink(e)))) => {
                    rec.cache = Some("hit");
                    return (s, Err(e));
                }
                Ok((_, Err(Replay::Damaged(reason)))) => {
                    rec.cache = Some("damaged");
                    damaged(&reason);
                    audit_entry(ctx, job, &spec.connection, "damaged", reason).await;
                }
                Err(e) => tracing::warn!(error = %e, "Cache replay task failed; running the query."),
            }
            // Whatever reached the renderer from the entry is discarded.
            sink = make();
        }
        Ok(Ok(Lookup::Hit(_) | Lookup::Miss)) => {}
        Ok(Ok(Lookup::Damaged(reason))) => {
            rec.cache = Some("damaged");
            damaged(&reason);
            audit_entry(ctx, job, &spec.connection, "damaged", reason).await;
        }
        Ok(Ok(Lookup::Outdated(why))) => {
            tracing::info!(%why, "Deleted a cache entry of an earlier agent's format; running the query.");
            let reason = format!("{why}; deleted, the query runs and its result is stored in the current format");
            audit_entry(ctx, job, &spec.connection, "outdated", reason).await;
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "Cache lookup failed; running the query."),
        Err(e) => tracing::warn!(error = %e, "Cache lookup task failed; running the query."),
    }
    let mut filler = cache.filler(entry, &spec.connection, ctx.clock.now());
    let queried = {
        let mut tee = Tee { inner: &mut sink, filler: &mut filler };
        conn.query_into(spec.sql.clone(), spec.params.clone(), limits, &mut tee).await
    };
    match queried {
        Ok(truncated) => {
            match filler.commit(truncated).await {
                Ok(bytes) => tracing::debug!(bytes, "Result cached (encrypted)."),
                Err(e) => tracing::warn!(error = %e, "Result not cached."),
            }
            (sink, Ok(Fetched { truncated }))
        }
        // Dropping the filler gives the entry up: nothing of this result is stored.
        Err(e) => (sink, Err(e)),
    }
}
