-- v13: dashboard parameters (a JSON list of {"name", "label", "kind", …}; shown as
-- filters), and the filters each project job ran with (the sha256, hex, of the canonical
-- JSON of the values its query binds; NULL when it binds none, as every job before).
ALTER TABLE projects ADD COLUMN parameters TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN filters TEXT;
DROP INDEX jobs_by_project;
CREATE INDEX jobs_by_project ON jobs(project_id, query_index, customer, filters, created_at);
