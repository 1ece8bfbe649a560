-- Version 6: progress rollups (docs/reports.md#progress), kept in the transaction that stores
-- reports and moves `client_state`, so that progress, the flight page and the flight list
-- read a few hundred rows instead of every report or client. Backfilled here from what is
-- stored. Never edit a migration that has shipped; add one.

-- Clients per flight, version, arm, status and step, by each client's latest report (what
-- `client_state` holds). A client moving from one state to another takes one from the old
-- row and adds one to the new; rows that reach 0 stay (readers skip them). `arm` is '' and
-- `armed` 0 for a client without an arm (an arm named '' has `armed` 1), so that the key
-- has no NULL.
CREATE TABLE progress_states (
    flight  TEXT   NOT NULL,
    version BIGINT NOT NULL,
    arm     TEXT   NOT NULL,
    armed   BIGINT NOT NULL,
    status  TEXT   NOT NULL,
    step    BIGINT NOT NULL,
    clients BIGINT NOT NULL,
    PRIMARY KEY (flight, version, arm, armed, status, step)
);

-- Reports per flight, day (since the epoch, UTC, of the report's `at`) and status, and how
-- many of them were at step 0 (a `running` one at step 0 is an enrolment).
CREATE TABLE progress_days (
    flight  TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    status  TEXT   NOT NULL,
    reports BIGINT NOT NULL,
    starts  BIGINT NOT NULL,
    PRIMARY KEY (flight, day, status)
);

-- Which clients reported on a flight on a day (a new row counts the client once in
-- `progress_day_clients`).
CREATE TABLE progress_day_seen (
    flight TEXT   NOT NULL,
    day    BIGINT NOT NULL,
    client TEXT   NOT NULL,
    PRIMARY KEY (flight, day, client)
);

-- Distinct clients that reported on a flight per day.
CREATE TABLE progress_day_clients (
    flight  TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    clients BIGINT NOT NULL,
    PRIMARY KEY (flight, day)
);

-- A flight's newest reports with a `detail` (the flight page's errors), newest first,
-- without reading its other reports.
CREATE INDEX reports_with_detail ON reports (flight, at DESC, client, seq) WHERE detail IS NOT NULL;

INSERT INTO progress_states (flight, version, arm, armed, status, step, clients)
SELECT flight, version, COALESCE(arm, ''), CASE WHEN arm IS NULL THEN 0 ELSE 1 END, status, step, COUNT(*)
FROM client_state
GROUP BY flight, version, COALESCE(arm, ''), CASE WHEN arm IS NULL THEN 0 ELSE 1 END, status, step;

INSERT INTO progress_days (flight, day, status, reports, starts)
SELECT flight, day, status, COUNT(*), SUM(CASE WHEN step = 0 THEN 1 ELSE 0 END)
FROM reports GROUP BY flight, day, status;

INSERT INTO progress_day_seen (flight, day, client)
SELECT DISTINCT flight, day, client FROM reports;

INSERT INTO progress_day_clients (flight, day, clients)
SELECT flight, day, COUNT(*) FROM progress_day_seen GROUP BY flight, day;

-- Results counted clients per arm from `client_state` with this index; they read
-- `progress_states` now, and nothing else reads `client_state` by arm.
DROP INDEX client_state_by_arm;
