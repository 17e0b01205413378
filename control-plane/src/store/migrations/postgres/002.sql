-- v2: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
CREATE TABLE audit_heads (
    agent TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    head TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
