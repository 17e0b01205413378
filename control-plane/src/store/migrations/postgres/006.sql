-- v6: a project's dashboard tiles in order (a JSON list of {"query": n, "w", "h"} and
-- {"text": "...", "w", "h"}; empty: one tile per query, as the API normalises them).
ALTER TABLE projects ADD COLUMN tiles TEXT NOT NULL DEFAULT '[]';
