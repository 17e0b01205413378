//! Masking (steps 2a to 2c of the policy): which result columns are masked, from their
//! names or the table columns they derive from, and replacing their values by `***` or
//! a keyed hash.

use outpost_protocol::{ColumnRole, EgressAction, EgressDecision, RenderSpec};

use super::{refused, truncate, ColumnMask, EgressPolicy, MaskRule, MaskWith, MaskedPredicates, Unprovable};
use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::{ResultSet, Value};

impl EgressPolicy {
    /// Step 2a: which result columns are masked, and how: by name, or because their
    /// values derive from a masked table column (`provenance`, from the database's own
    /// metadata), whatever the query calls them. A column whose source is unknown, in
    /// a query that reads a masked column, is refused (`mask_unprovable`) or masked.
    pub fn column_masks(
        &self,
        columns: &[String],
        provenance: Option<&ResultProvenance>,
    ) -> Result<Vec<Option<ColumnMask>>, EgressDecision> {
        if self.mask.is_empty() {
            return Ok(vec![None; columns.len()]);
        }
        if self.masked_predicates == MaskedPredicates::Refuse {
            self.check_predicates(provenance)?;
        }
        let reads_masked = match provenance.and_then(|p| p.reads.as_ref()) {
            Some(reads) => reads.iter().find_map(|src| self.mask_for_source(src).map(|r| (src, r))),
            None => None,
        };
        let reads_unknown = provenance.is_none_or(|p| p.reads.is_none());
        let mut out = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            if let Some(rule) = self.mask_for(name) {
                out.push(Some(ColumnMask { with: rule.with, why: format!("name matches {:?}", rule.column.as_str()) }));
                continue;
            }
            let column = provenance.and_then(|p| p.columns.get(i));
            match column {
                Some(Provenance::Columns { sources }) => {
                    let hit = sources.iter().find_map(|src| self.mask_for_source(src).map(|r| (src, r)));
                    out.push(hit.map(|(src, rule)| ColumnMask { with: rule.with, why: format!("from {src}") }));
                }
                Some(Provenance::Unknown { why }) if reads_masked.is_none() && !reads_unknown => out.push(None),
                unknown => {
                    let why = match unknown {
                        Some(Provenance::Unknown { why }) => why.clone(),
                        _ => "the connector could not trace it".to_owned(),
                    };
                    let reads = match reads_masked {
                        Some((src, _)) => format!("the query reads masked column {src}"),
                        None => "the agent cannot tell which columns the query reads".to_owned(),
                    };
                    if self.unprovable == Unprovable::Refuse {
                        return Err(refused(
                            "mask_unprovable",
                            format!(
                                "the source of column {name:?} cannot be established ({why}) and {reads}; \
                                 name the column directly, or set egress.unprovable: mask"
                            ),
                        ));
                    }
                    out.push(Some(ColumnMask { with: MaskWith::Stars, why: "source unprovable".into() }));
                }
            }
        }
        Ok(out)
    }

    /// With `masked_predicates: refuse`: refuses (`mask_in_predicate`) a statement that
    /// reads a masked column in a condition, or whose conditions cannot be read while it
    /// reads (or may read) a masked column.
    pub fn check_predicates(&self, provenance: Option<&ResultProvenance>) -> Result<(), EgressDecision> {
        let refuse = |why: String| {
            Err(refused(
                "mask_in_predicate",
                format!(
                    "{why}; with egress.masked_predicates: refuse a masked column may only be returned (and masked), \
                     not filtered, joined, grouped or sorted on"
                ),
            ))
        };
        let Some(p) = provenance else {
            return refuse("the connector could not tell which columns the query reads".into());
        };
        let Some(conditions) = p.conditions.as_ref() else {
            return refuse("the agent cannot read this database's query conditions".into());
        };
        let reads_masked = p.reads.as_ref().and_then(|r| r.iter().find(|s| self.mask_for_source(s).is_some()));
        for c in conditions {
            match c {
                Provenance::Columns { sources } => {
                    if let Some(src) = sources.iter().find(|s| self.mask_for_source(s).is_some()) {
                        return refuse(format!("the query reads masked column {src} in a condition"));
                    }
                }
                Provenance::Unknown { why } => match (p.reads.as_ref(), reads_masked) {
                    (Some(_), None) => {}
                    (_, Some(src)) => {
                        return refuse(format!(
                            "a condition cannot be traced ({why}) and the query reads masked column {src}"
                        ))
                    }
                    (None, None) => {
                        return refuse(format!(
                        "a condition cannot be traced ({why}) and the agent cannot tell which columns the query reads"
                    ))
                    }
                },
            }
        }
        Ok(())
    }

    /// The rule covering the table column `source`, if any.
    pub fn mask_for_source(&self, source: &SourceColumn) -> Option<&MaskRule> {
        self.mask.iter().find(|r| r.column.matches_source(source))
    }

    /// Step 2b: a column drawn to scale (a chart's values or axis) may not be masked,
    /// since drawing would reveal it.
    pub fn check_drawn(
        &self,
        spec: &RenderSpec,
        columns: &[String],
        masks: &[Option<ColumnMask>],
    ) -> Result<(), EgressDecision> {
        // Line, area and scatter charts are drawn from rows as they stream, unmasked, so
        // their series column (a label) may not be masked either.
        let streamed = matches!(spec, RenderSpec::Line(_) | RenderSpec::Area(_) | RenderSpec::Scatter(_));
        for (column, role) in spec.columns() {
            let shown =
                matches!(role, ColumnRole::Number | ColumnRole::Axis) || (streamed && role == ColumnRole::Label);
            if !shown {
                continue;
            }
            let found = columns.iter().position(|c| c == column).and_then(|i| masks.get(i)).and_then(Option::as_ref);
            if let Some(mask) = found {
                return Err(refused(
                    "mask",
                    if role == ColumnRole::Label {
                        format!(
                            "column {column:?} is masked ({}); a line, area or scatter chart would name its series by its values",
                            mask.why
                        )
                    } else {
                        format!("column {column:?} is masked ({}); a chart would draw its values to scale", mask.why)
                    },
                ));
            }
        }
        Ok(())
    }

    /// Step 2c: replaces the values of masked columns. `key` is the keyed-hash key
    /// (needed when a `hash` rule applies). The decision says which columns and how.
    pub fn mask(&self, rs: &mut ResultSet, key: Option<&[u8; 32]>) -> Result<Option<EgressDecision>, EgressDecision> {
        let masks = self.column_masks(&rs.columns, rs.provenance.as_ref())?;
        self.apply_masks(rs, &masks, key)
    }

    /// Replaces the values of the columns `masks` names.
    pub fn apply_masks(
        &self,
        rs: &mut ResultSet,
        masks: &[Option<ColumnMask>],
        key: Option<&[u8; 32]>,
    ) -> Result<Option<EgressDecision>, EgressDecision> {
        let masked: Vec<(usize, &ColumnMask)> =
            masks.iter().enumerate().filter_map(|(i, m)| m.as_ref().map(|m| (i, m))).collect();
        if masked.is_empty() {
            return Ok(None);
        }
        let hmac_key = match (masked.iter().any(|(_, m)| m.with == MaskWith::Hash), key) {
            (true, Some(k)) => Some(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k)),
            (true, None) => return Err(refused("mask", "the keyed-hash key is not available (vault not open)".into())),
            (false, _) => None,
        };
        for row in &mut rs.rows {
            for &(i, m) in &masked {
                let Some(v) = row.get_mut(i) else { continue };
                if matches!(v, Value::Null) {
                    continue;
                }
                *v = Value::Text(match (m.with, &hmac_key) {
                    (MaskWith::Hash, Some(k)) => hash_text(k, &crate::render::value_text(v)),
                    _ => "***".to_owned(),
                });
            }
        }
        let how: Vec<String> = masked
            .iter()
            .map(|(i, m)| {
                let with = if m.with == MaskWith::Hash { "keyed hash" } else { "***" };
                let name = rs.columns.get(*i).map_or("?", String::as_str);
                if m.why.starts_with("name matches") {
                    format!("{name} ({with})")
                } else {
                    format!("{name} ({with}, {})", m.why)
                }
            })
            .collect();
        Ok(Some(EgressDecision {
            action: EgressAction::Masked,
            rule: "mask".into(),
            detail: truncate(format!("masked columns: {}", how.join(", "))),
        }))
    }
}

/// `h:` and the first 16 hex digits of HMAC-SHA256(key, text).
fn hash_text(key: &aws_lc_rs::hmac::Key, text: &str) -> String {
    let tag = aws_lc_rs::hmac::sign(key, text.as_bytes());
    format!("h:{}", outpost_protocol::encoding::hex(&tag.as_ref()[..8]))
}
