-- v4: job cancellation (when a user asked, when the agent was last told).
ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;
ALTER TABLE jobs ADD COLUMN cancel_sent_at INTEGER;
