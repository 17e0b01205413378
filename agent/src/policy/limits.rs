//! The policy's checks before the query (step 1: may this render kind leave, may a
//! masked column be drawn) and after rendering (step 3: rows, points and bytes against
//! the maxima), and the render limits that follow from them.

use outpost_protocol::{ColumnRole, EgressAction, EgressDecision, RenderSpec};

use super::{refused, EgressPolicy, RenderKind, ALL_KINDS, MAX_CHART_POINTS};

impl EgressPolicy {
    /// Step 1: may a job with this render spec run at all?
    pub fn check_spec(&self, spec: &RenderSpec) -> Result<(), EgressDecision> {
        let kind = ALL_KINDS.into_iter().find(|k| k.name() == spec.kind()).unwrap_or(RenderKind::Table);
        if kind == RenderKind::Table && !self.allow_raw_table {
            return Err(refused(
                "allow_raw_table",
                "raw tables may not leave this network; ask for a chart or a scalar".into(),
            ));
        }
        if !self.allowed_kinds.contains(&kind) {
            let allowed: Vec<&str> = self.allowed_kinds.iter().map(|k| k.name()).collect();
            return Err(refused(
                "allowed_kinds",
                format!("{} results may not leave this network; allowed: {}", kind.name(), allowed.join(", ")),
            ));
        }
        for (column, role) in spec.columns() {
            if matches!(role, ColumnRole::Number | ColumnRole::Axis) {
                if let Some(rule) = self.mask_for(column) {
                    return Err(refused(
                        "mask",
                        format!(
                            "column {column:?} is masked (pattern {:?}); a chart would draw its values to scale",
                            rule.column.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The render limits for a spec: rows shown at most, and the chart point budget.
    /// Tables are cut so that their cells fit `max_points`.
    pub fn render_limits(&self, spec: &RenderSpec, columns: usize, job_max_rows: usize) -> (usize, usize) {
        let rows = match spec {
            RenderSpec::Table(_) => self.max_rows.min(self.max_points / columns.max(1)).max(1),
            _ => self.max_rows,
        };
        (rows.min(job_max_rows), self.chart_points())
    }

    /// The most points a line, area or scatter chart may draw.
    pub fn chart_points(&self) -> usize {
        self.max_points.min(MAX_CHART_POINTS)
    }

    /// Between the query and rendering: a bar or pie chart shows every row one by one,
    /// so one with more rows than may leave is refused (a table is cut instead; line,
    /// area and scatter charts are downsampled).
    pub fn check_rows(&self, spec: &RenderSpec, rows: usize) -> Result<(), EgressDecision> {
        if matches!(spec, RenderSpec::Bar(_) | RenderSpec::Pie(_)) && rows > self.max_rows {
            return Err(refused(
                "max_rows",
                format!("the chart would show {rows} rows one by one; at most {} may leave", self.max_rows),
            ));
        }
        Ok(())
    }

    /// Step 3: checks a rendering against the maxima. `rows_available` is what the
    /// result had; a table shown shorter because of this policy is a `truncated` decision.
    pub fn check_output(
        &self,
        spec: &RenderSpec,
        rendered: &crate::render::Rendered,
        rows_available: usize,
        columns: usize,
    ) -> Result<Vec<EgressDecision>, EgressDecision> {
        let mut decisions = Vec::new();
        if let RenderSpec::Table(t) = spec {
            let asked = t.max_rows.map_or(usize::MAX, |m| m as usize);
            let shown = rendered.rows_rendered;
            if shown < rows_available && shown < asked {
                let rule = if self.max_points / columns.max(1) < self.max_rows { "max_points" } else { "max_rows" };
                decisions.push(EgressDecision {
                    action: EgressAction::Truncated,
                    rule: rule.into(),
                    detail: format!("{shown} of {rows_available} rows may leave ({rule} of this connection's policy)"),
                });
            }
        }
        if rendered.points > self.max_points {
            return Err(refused(
                "max_points",
                format!("the result carries {} values; at most {} may leave", rendered.points, self.max_points),
            ));
        }
        if rendered.body.len() > self.max_bytes {
            return Err(refused(
                "max_bytes",
                format!("the rendered result is {} bytes; at most {} may leave", rendered.body.len(), self.max_bytes),
            ));
        }
        Ok(decisions)
    }
}
