-- v14: the values behind each project job's `filters` key (the canonical JSON of the
-- values its query binds, by parameter name), so a job's page can say what it ran with;
-- `was_default`: those values were the project's defaults when a run used them (such a
-- filter set is never dropped by `results.keep_variants_per_tile`). Rows no job refers
-- to any more go with retention.
CREATE TABLE project_filter_sets (
    project_id TEXT NOT NULL,
    filters TEXT NOT NULL,
    filter_values TEXT NOT NULL,
    was_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, filters)
);
