-- v8: admission of an agent's request and use of a signing key without locking their
-- rows (issue 24). A job statement used to read the agent's row (or the key's row) with
-- FOR KEY SHARE / FOR SHARE so that a revocation, a new enrolment or a key's retirement
-- waited for it. Under load that row is locked by many statements at once, and every
-- shared row lock taken while another is held creates a multixact, writes the row's
-- header to the WAL and gives the statement a transaction id: even a poll that leased
-- nothing was a write and waited for a WAL flush.
--
-- Now each statement takes a shared transaction-level advisory lock instead (held in
-- memory, written nowhere), then reads the row with a fresh snapshot: these functions are
-- VOLATILE, so at READ COMMITTED each query inside them sees everything committed before
-- it began, including a revocation it had to wait for. A revocation, an enrolment and a
-- retirement take the same lock exclusively first (store/postgres/{agents,keys}.rs), so
-- each waits for the statements in flight and they for it, as before.
--
-- Lock spaces (the two-key form, apart from the migrations' one-key lock):
-- (1, hashtext(agent name)) an agent; (2, hashtext(key id)) a job-signing key. A hash
-- collision only makes two names wait for each other.
CREATE FUNCTION outpost_admit_agent(p_agent TEXT, p_cert_issued_at BIGINT, p_now BIGINT)
RETURNS TABLE (pool TEXT, due BOOLEAN) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1, hashtext(p_agent));
    RETURN QUERY
        SELECT a.pool, (a.last_seen IS NULL OR a.last_seen < p_now OR a.stopped_at IS NOT NULL)
        FROM agents a
        WHERE a.name = p_agent AND a.revoked_at IS NULL AND a.enrolled_at <= p_cert_issued_at;
END
$$;

CREATE FUNCTION outpost_key_usable(p_key_id TEXT) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(2, hashtext(p_key_id));
    RETURN EXISTS (SELECT 1 FROM signing_keys WHERE key_id = p_key_id AND status <> 'retired');
END
$$;
