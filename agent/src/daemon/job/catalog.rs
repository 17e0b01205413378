//! A catalog job: the schema browser's tables and columns, read and sent within the
//! connection's egress policy.
//!
//! The catalog is egress like any result. Before it is read the policy must allow the
//! `catalog` kind (checked with every other kind by the caller); what is read is bounded
//! by the job's caps and the policy's `max_points` (one value per column); each column
//! a mask rule covers, by its name or as `schema.table.column`, is marked `masked`;
//! the body then passes the same output check (`max_points`, `max_bytes`) and goes into
//! the audit record (bytes, hash, decisions) as any rendered result. Nothing from a row
//! is read: only names, declared types and the database's row estimates.

use outpost_protocol::catalog::{Catalog, CATALOG_CONTENT_TYPE};
use outpost_protocol::encoding::sha256_hex;
use outpost_protocol::{CatalogSpec, EgressAction, EgressDecision, JobOutcome, RenderSpec, ResultReport, ResultStats};

use crate::audit::{AuditOutcome, AuditRecord};
use crate::connectors::catalog::{read, CatalogCaps};
use crate::connectors::{Connector, QueryError, QueryLimits};
use crate::policy::EgressPolicy;
use crate::provenance::SourceColumn;

/// Runs a verified catalog job on `conn`; fills `rec` as [`super::execute`] does.
pub(super) async fn execute(
    conn: &Connector,
    spec: CatalogSpec,
    policy: &EgressPolicy,
    limits: QueryLimits,
    rec: &mut AuditRecord,
    job_id: &str,
) -> ResultReport {
    let caps = caps(spec, policy);
    let mut decisions = Vec::new();
    let failed = |rec: &mut AuditRecord, code: &str, message: String, decisions: Vec<EgressDecision>| {
        let outcome = if code == "cancelled" { JobOutcome::Cancelled } else { JobOutcome::Failed };
        rec.outcome = if code == "cancelled" { AuditOutcome::Cancelled } else { AuditOutcome::Failed };
        rec.reason = Some(code.to_owned());
        tracing::warn!(reason = code, "Catalog job failed.");
        super::with_decisions(
            ResultReport::refused(job_id, outcome, code, message, ResultStats::default()),
            rec,
            decisions,
        )
    };
    let mut catalog = match read(conn, caps, limits).await {
        Ok(c) => c,
        Err(e) => {
            // The database's words are egress too: scrubbed as a query's would be.
            let out = crate::scrub::outgoing(policy.errors, &e, &crate::scrub::Known::new("", &[]));
            decisions.extend(out.decision);
            let code = if matches!(e, QueryError::Cancelled) { "cancelled" } else { e.code() };
            return failed(rec, code, out.message, decisions);
        }
    };
    mark_masked(policy, &mut catalog);
    if catalog.truncated {
        decisions.push(EgressDecision {
            action: EgressAction::Truncated,
            rule: "catalog".into(),
            detail: format!(
                "the catalog was cut at {} tables or {} columns (the job's caps and this connection's max_points)",
                caps.max_tables, caps.max_columns
            ),
        });
    }
    let body = match serde_json::to_vec(&catalog) {
        Ok(b) => b,
        Err(e) => return failed(rec, "render_failed", e.to_string(), decisions),
    };
    let columns = catalog.column_count();
    let rendered = crate::render::Rendered {
        content_type: CATALOG_CONTENT_TYPE,
        body,
        rows_rendered: catalog.tables.len(),
        truncated: catalog.truncated,
        points: columns,
        decisions: Vec::new(),
    };
    match policy.check_output(&RenderSpec::Catalog(spec), &rendered, catalog.tables.len(), columns) {
        Ok(more) => decisions.extend(more),
        Err(d) => {
            decisions.push(d.clone());
            return failed(rec, "egress_refused", d.detail, decisions);
        }
    }
    let stats = ResultStats { rows_read: columns as u64, truncated: catalog.truncated, ..ResultStats::default() };
    let report = ResultReport::succeeded(job_id, rendered.content_type, &rendered.body, stats);
    rec.rows_read = columns as u64;
    rec.outcome = AuditOutcome::Succeeded;
    rec.bytes_sent = report.stats.bytes;
    rec.body_sha256 = Some(sha256_hex(&rendered.body));
    rec.truncated = catalog.truncated;
    let masked = catalog.tables.iter().flat_map(|t| &t.columns).filter(|c| c.masked).count();
    tracing::info!(
        tables = catalog.tables.len(),
        columns,
        masked,
        bytes = report.stats.bytes,
        "Catalog job succeeded."
    );
    super::with_decisions(report, rec, decisions)
}

/// The job's caps, lowered by the policy: one value leaves per column.
fn caps(spec: CatalogSpec, policy: &EgressPolicy) -> CatalogCaps {
    let to = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    CatalogCaps { max_tables: to(spec.max_tables), max_columns: to(spec.max_columns).min(policy.max_points) }
}

/// Marks each column a mask rule covers: by its name (a rule without a table part) or
/// as the table column `schema.table.column`, as a query's provenance would find it.
pub(crate) fn mark_masked(policy: &EgressPolicy, catalog: &mut Catalog) {
    for t in &mut catalog.tables {
        for c in &mut t.columns {
            let source = SourceColumn { schema: t.schema.clone(), table: t.name.clone(), column: c.name.clone() };
            c.masked = policy.mask_for(&c.name).is_some() || policy.mask_for_source(&source).is_some();
        }
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::catalog::{CatalogColumn, CatalogTable, TableKind};

    use super::*;
    use crate::policy::EgressSection;

    fn policy(yaml: &str) -> EgressPolicy {
        let section: EgressSection = serde_json::from_str(yaml).expect("policy");
        EgressPolicy::resolve(&section, None)
    }

    fn catalog() -> Catalog {
        let col = |n: &str| CatalogColumn { name: n.into(), data_type: "text".into(), nullable: true, masked: false };
        let table = |s: &str, n: &str, cols: &[&str]| CatalogTable {
            schema: s.into(),
            name: n.into(),
            kind: TableKind::Table,
            row_estimate: None,
            columns: cols.iter().map(|c| col(c)).collect(),
        };
        Catalog {
            tables: vec![table("public", "customers", &["id", "email", "ssn"]), table("hr", "staff", &["ssn", "name"])],
            truncated: false,
        }
    }

    fn masked(c: &Catalog) -> Vec<String> {
        c.tables
            .iter()
            .flat_map(|t| {
                t.columns.iter().filter(|c| c.masked).map(move |c| format!("{}.{}.{}", t.schema, t.name, c.name))
            })
            .collect()
    }

    #[test]
    fn columns_a_mask_rule_covers_are_marked_by_name_or_by_table_column() {
        let mut c = catalog();
        mark_masked(&policy(r#"{"mask":[{"column":"email"},{"column":"hr.staff.ssn"}]}"#), &mut c);
        assert_eq!(masked(&c), vec!["public.customers.email", "hr.staff.ssn"]);
        let mut c = catalog();
        mark_masked(&policy(r#"{"mask":[{"column":"*.ssn"}]}"#), &mut c);
        assert_eq!(masked(&c), vec!["public.customers.ssn", "hr.staff.ssn"]);
        let mut c = catalog();
        mark_masked(&policy("{}"), &mut c);
        assert!(masked(&c).is_empty());
    }

    #[test]
    fn the_policy_max_points_lowers_the_column_cap() {
        let spec = CatalogSpec { max_tables: 10, max_columns: 5000 };
        assert_eq!(caps(spec, &policy(r#"{"max_points":100}"#)), CatalogCaps { max_tables: 10, max_columns: 100 });
        assert_eq!(caps(spec, &policy("{}")).max_columns, 5000);
    }

    #[test]
    fn a_policy_that_lists_kinds_without_catalog_keeps_the_catalog_in() {
        let spec = RenderSpec::Catalog(CatalogSpec { max_tables: 1, max_columns: 1 });
        let d = policy(r#"{"allowed_kinds":["bar"]}"#).check_spec(&spec).expect_err("refused");
        assert_eq!(d.rule, "allowed_kinds");
        assert!(d.detail.starts_with("catalog results may not leave"), "{}", d.detail);
        assert!(policy("{}").check_spec(&spec).is_ok());
        assert!(policy(r#"{"allow_raw_table":false}"#).check_spec(&spec).is_ok(), "a catalog is not a raw table");
    }
}
