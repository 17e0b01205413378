-- v5: project schedules. `schedule` is the project's schedule (JSON: cron, timezone,
-- customers; NULL: none), `next_run_at` its next due slot (unix seconds), and
-- `schedule_done` how many of the due slot's jobs are already dispatched (a slot whose
-- jobs exceed an agent's share goes out over several ticks). A replica claims a slot by
-- compare-and-set on (next_run_at, schedule_done), so each slot runs once.
ALTER TABLE projects ADD COLUMN schedule TEXT;
ALTER TABLE projects ADD COLUMN next_run_at BIGINT;
ALTER TABLE projects ADD COLUMN schedule_done BIGINT NOT NULL DEFAULT 0;
CREATE INDEX projects_due ON projects(next_run_at) WHERE next_run_at IS NOT NULL;
