-- v10: smaller job indexes (issue 24). Every version of a job row (queued, leased, final)
-- entered all seven indexes of `jobs`: 8-10 WAL records per write, three writes per job.
-- An index now holds only the rows its statements look for:
-- - (agent, state) and (pool, state): the open jobs, which leases, expiries, cancels and
--   revocations ask for (each names the open states);
-- - (project_id, ...): project jobs, which every use names by project;
-- - (finished_at): ended jobs, which retention asks for by end.
-- A job now makes 13 index entries instead of 20 over its life, and the indexes leases
-- search stay as small as the queue. On a large `jobs` table this migration rebuilds four
-- indexes under a lock on `jobs` that every access waits for (see CONTROL-PLANE.md, Upgrade).
DROP INDEX jobs_by_agent_state;
CREATE INDEX jobs_by_agent_state ON jobs(agent, state, created_at) WHERE state IN ('queued', 'leased');
DROP INDEX jobs_by_pool_state;
CREATE INDEX jobs_by_pool_state ON jobs(pool, state, created_at) WHERE pool IS NOT NULL AND state IN ('queued', 'leased');
DROP INDEX jobs_by_project;
CREATE INDEX jobs_by_project ON jobs(project_id, query_index, customer, filters, created_at) WHERE project_id IS NOT NULL;
DROP INDEX jobs_by_end;
CREATE INDEX jobs_by_end ON jobs(finished_at) WHERE finished_at IS NOT NULL;
