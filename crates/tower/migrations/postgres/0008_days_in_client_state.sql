-- Version 8: the days a client reported on a flight, kept in its `client_state` row
-- (`store/seen.rs`; docs/reports.md#progress): `seen_day`, the newest day, and `seen_days`,
-- bit i set if the client reported on day `seen_day - i` (64 days; the bits as a signed
-- 64-bit integer). Storing a report batch then moves one row per client and flight instead
-- of also inserting one into `progress_day_seen`, which keeps only the days before a
-- client's window. Backfilled from `progress_day_seen`, whose rows stay (those within a
-- window agree with its bits). Never edit a migration that has shipped; add one.
ALTER TABLE client_state
    ADD COLUMN seen_day BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN seen_days BIGINT NOT NULL DEFAULT 0;

UPDATE client_state SET seen_day = w.day, seen_days = w.bits
FROM (
    SELECT s.flight, s.client, m.day, bit_or(1::BIGINT << (m.day - s.day)::INTEGER) AS bits
    FROM progress_day_seen s
    JOIN (SELECT flight, client, MAX(day) AS day FROM progress_day_seen GROUP BY flight, client) m
      ON m.flight = s.flight AND m.client = s.client
    WHERE s.day > m.day - 64
    GROUP BY s.flight, s.client, m.day
) w
WHERE client_state.flight = w.flight AND client_state.client = w.client;

-- A tower of an older version still running on this database would insert clients with an
-- empty window and never mark a day, so every day it counted would be counted again: with no
-- default, its inserts fail instead (a 500 its pilots retry; docs/api.md, upgrading towers).
ALTER TABLE client_state
    ALTER COLUMN seen_day DROP DEFAULT,
    ALTER COLUMN seen_days DROP DEFAULT;
