-- v8: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
CREATE TABLE audit_heads (
    agent TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    head TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
