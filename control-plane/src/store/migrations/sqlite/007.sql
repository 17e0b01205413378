-- v7: agent pools (an enrolment token names the pool, an agent belongs to it, a job may
-- be addressed to it; `agent` is then the member holding it, empty while none does).
ALTER TABLE enrol_tokens ADD COLUMN pool TEXT;
ALTER TABLE agents ADD COLUMN pool TEXT;
ALTER TABLE jobs ADD COLUMN pool TEXT;
CREATE INDEX jobs_by_pool_state ON jobs(pool, state, created_at) WHERE pool IS NOT NULL;
