-- v4: the origins that may frame a project's embed page (a JSON list; empty: the control
-- plane's embed.frame_ancestors).
ALTER TABLE projects ADD COLUMN embed_origins TEXT NOT NULL DEFAULT '[]';
