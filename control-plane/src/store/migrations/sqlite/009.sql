-- v9: when an agent said it was stopping (cleared by its next request).
ALTER TABLE agents ADD COLUMN stopped_at INTEGER;
