-- The tower's schema, version 1 (PostgreSQL). Never edit a migration that has shipped; add one.
-- Times are milliseconds since the epoch (BIGINT); JSON is stored as TEXT.

-- The index signing key (Ed25519 seed, hex). Kept in the database so that every tower
-- process on one database signs with the same key.
CREATE TABLE tower_key (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    secret     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- The index's serial: bumped in the same transaction as every change to what the index holds.
CREATE TABLE index_state (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    serial     BIGINT  NOT NULL,
    changed_at BIGINT  NOT NULL
);
INSERT INTO index_state (id, serial, changed_at) VALUES (1, 0, 0);

CREATE TABLE tokens (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE flights (
    studyname      TEXT   PRIMARY KEY,
    state          TEXT   NOT NULL,
    latest_version BIGINT NOT NULL,
    live_version   BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE revisions (
    studyname  TEXT   NOT NULL REFERENCES flights (studyname),
    version    BIGINT NOT NULL,
    spec       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (studyname, version)
);

CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    studyname TEXT,
    version   BIGINT,
    detail    TEXT    NOT NULL
);
CREATE INDEX audit_by_flight ON audit (studyname, id);

-- Every report ever received; (client, seq) makes a resend a no-op.
CREATE TABLE reports (
    client      TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    flight      TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    arm         TEXT,
    status      TEXT   NOT NULL,
    step        BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    detail      TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (client, seq)
);
CREATE INDEX reports_by_flight_day ON reports (flight, day);

-- Each client's latest report per flight (highest seq): what progress counts.
CREATE TABLE client_state (
    flight  TEXT   NOT NULL,
    client  TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    version BIGINT NOT NULL,
    arm     TEXT,
    status  TEXT   NOT NULL,
    step    BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (flight, client)
);
