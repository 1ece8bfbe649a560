-- `client_state` and `progress_day_seen` are only ever reached by their primary key (or a
-- prefix of it). As rowid tables each row went into two B-trees, the table and its key's
-- index; WITHOUT ROWID it goes into one, keyed as it is looked up — one insert a row fewer
-- for every report batch the tower stores (docs: ARCHITECTURE.md, `ingest`). Rows are
-- copied in key order, so the new B-trees are filled from one end.
CREATE TABLE client_state_by_key (
    flight  TEXT   NOT NULL,
    client  TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    version BIGINT NOT NULL,
    arm     TEXT,
    status  TEXT   NOT NULL,
    step    BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (flight, client)
) WITHOUT ROWID;
INSERT INTO client_state_by_key (flight, client, seq, version, arm, status, step, at)
SELECT flight, client, seq, version, arm, status, step, at FROM client_state
ORDER BY flight, client;
DROP TABLE client_state;
ALTER TABLE client_state_by_key RENAME TO client_state;

CREATE TABLE progress_day_seen_by_key (
    flight TEXT   NOT NULL,
    day    BIGINT NOT NULL,
    client TEXT   NOT NULL,
    PRIMARY KEY (flight, day, client)
) WITHOUT ROWID;
INSERT INTO progress_day_seen_by_key (flight, day, client)
SELECT flight, day, client FROM progress_day_seen
ORDER BY flight, day, client;
DROP TABLE progress_day_seen;
ALTER TABLE progress_day_seen_by_key RENAME TO progress_day_seen;
