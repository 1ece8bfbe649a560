-- SQLite's migration 7 stores `client_state` and `progress_day_seen` WITHOUT ROWID (one
-- B-tree a row instead of two). PostgreSQL has no such choice to make; this keeps the two
-- engines' migration numbers in step.
SELECT 1;
