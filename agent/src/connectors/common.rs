//! What the connectors do alike, written once: the pool's permits (PostgreSQL and
//! MySQL/MariaDB), the parameter count check, the refusal of statements that return no
//! rows, and handing rows to a [`RowSink`] up to the row cap plus one.

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{QueryError, RowSink};
use crate::resultset::Value;

/// One permit per pooled session: a query holds one from checkout to checkin, so at most
/// `pool_size` queries run at once.
#[derive(Debug)]
pub(crate) struct Permits(Semaphore);

impl Permits {
    /// Permits for `pool_size` sessions (at least one).
    pub(crate) fn new(pool_size: usize) -> Self {
        Self(Semaphore::new(pool_size.max(1)))
    }

    /// Waits for a permit.
    pub(crate) async fn take(&self) -> Result<SemaphorePermit<'_>, QueryError> {
        self.0.acquire().await.map_err(|e| QueryError::Task(e.to_string()))
    }

    /// Waits for a permit, or stops with [`QueryError::Cancelled`] when `cancel` fires first.
    pub(crate) async fn take_or_cancel(&self, cancel: &CancellationToken) -> Result<SemaphorePermit<'_>, QueryError> {
        tokio::select! {
            p = self.take() => p,
            () = cancel.cancelled() => Err(QueryError::Cancelled),
        }
    }
}

/// Refuses a statement whose parameter count is not the job's: the error names the first
/// parameter that is missing or extra.
pub(crate) fn check_param_count(given: usize, needed: usize) -> Result<(), QueryError> {
    if given == needed {
        return Ok(());
    }
    Err(QueryError::Param {
        index: given.min(needed) + 1,
        reason: format!("the statement takes {needed} parameter(s), the job gives {given}"),
    })
}

/// The refusal of a statement that returns no rows (only queries run); `refused` lists
/// examples of such statements on this database.
pub(crate) fn returns_no_rows(refused: &str) -> QueryError {
    QueryError::NotReadOnly {
        reason: format!("only a query that returns rows may run; this statement returns none ({refused})"),
    }
}

/// Hands one row to `sink`, then waits for its room for the next ([`RowSink::room`]).
pub(crate) async fn hand_on(sink: &mut dyn RowSink, row: Vec<Value>, index: usize) -> Result<(), QueryError> {
    sink.row(row, index)?;
    if let Some(room) = sink.room() {
        room.await;
    }
    Ok(())
}

/// Rows going to a sink up to the row cap. The connector reads one row more than the cap:
/// that row is not handed on, it only says the result was cut.
pub(crate) struct CappedRows<'s> {
    sink: &'s mut dyn RowSink,
    max_rows: usize,
    read: usize,
    truncated: bool,
}

impl<'s> CappedRows<'s> {
    /// Rows for `sink`, at most `max_rows`.
    pub(crate) fn new(sink: &'s mut dyn RowSink, max_rows: usize) -> Self {
        Self { sink, max_rows, read: 0, truncated: false }
    }

    /// Asked before a row read is decoded: whether the cap is reached, so that this row is
    /// the one too many and the result is truncated.
    pub(crate) fn full(&mut self) -> bool {
        if self.read == self.max_rows {
            self.truncated = true;
        }
        self.truncated
    }

    /// Hands on the next row.
    pub(crate) async fn push(&mut self, row: Vec<Value>) -> Result<(), QueryError> {
        hand_on(&mut *self.sink, row, self.read).await?;
        self.read += 1;
        Ok(())
    }

    /// Rows handed on so far.
    pub(crate) fn read(&self) -> usize {
        self.read
    }

    /// Whether the cap cut the result.
    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::Collect;

    #[test]
    fn a_parameter_count_mismatch_names_the_first_missing_or_extra_one() {
        assert!(check_param_count(2, 2).is_ok());
        let err = check_param_count(1, 3).expect_err("missing");
        assert!(matches!(err, QueryError::Param { index: 2, .. }), "{err}");
        assert_eq!(err.to_string(), "parameter $2: the statement takes 3 parameter(s), the job gives 1");
        let err = check_param_count(2, 0).expect_err("extra");
        assert!(matches!(err, QueryError::Param { index: 1, .. }), "{err}");
    }

    #[tokio::test]
    async fn rows_past_the_cap_are_not_handed_on_and_mark_the_result_truncated() {
        let mut all = Collect::default();
        let mut rows = CappedRows::new(&mut all, 2);
        for i in 0..3 {
            if rows.full() {
                break;
            }
            rows.push(vec![Value::Int(i)]).await.expect("push");
        }
        assert_eq!((rows.read(), rows.truncated()), (2, true));
        assert_eq!(all.0.rows, vec![vec![Value::Int(0)], vec![Value::Int(1)]]);
    }

    #[tokio::test]
    async fn a_cancelled_job_stops_waiting_for_a_permit() {
        let permits = Permits::new(1);
        let held = permits.take().await.expect("first");
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(matches!(permits.take_or_cancel(&cancel).await, Err(QueryError::Cancelled)));
        drop(held);
        assert!(permits.take_or_cancel(&CancellationToken::new()).await.is_ok());
    }
}
