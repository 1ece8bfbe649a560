-- Recorded events (docs/api.md#events), version 4. Never edit a migration that has shipped; add one.
-- Every event once: (client, seq) makes a resend a no-op. `arm` is '' for a flight without
-- arms (so it can be part of the rollups' keys); `day` is days since the epoch (UTC) of `at`.
CREATE TABLE events (
    client      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    flight      TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    arm         TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    subject     TEXT,
    value       DOUBLE PRECISION,
    at          BIGINT  NOT NULL,
    day         BIGINT  NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (client, seq)
);
-- The export reads a flight's events oldest first, in pages keyed by (at, client, seq).
CREATE INDEX events_by_flight ON events (flight, at, client, seq);

-- Rollups, kept in the transaction that stores the events (only events stored now count).
-- Events per flight, version, arm, topic and day: the per-day chart.
CREATE TABLE event_days (
    flight  TEXT   NOT NULL,
    version BIGINT NOT NULL,
    arm     TEXT   NOT NULL,
    topic   TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    events  BIGINT NOT NULL,
    PRIMARY KEY (flight, version, arm, topic, day)
);
-- Events per flight, arm, topic and client: each client's count.
CREATE TABLE event_clients (
    flight TEXT   NOT NULL,
    arm    TEXT   NOT NULL,
    topic  TEXT   NOT NULL,
    client TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (flight, arm, topic, client)
);
-- Per flight, arm and topic: events, clients with at least one, and the sum of the squares
-- of the per-client counts (a client going from c to c + k adds (c + k)² − c²), which is
-- all the statistics need.
CREATE TABLE event_arms (
    flight             TEXT   NOT NULL,
    arm                TEXT   NOT NULL,
    topic              TEXT   NOT NULL,
    events             BIGINT NOT NULL,
    clients_with_event BIGINT NOT NULL,
    sum_sq             BIGINT NOT NULL,
    PRIMARY KEY (flight, arm, topic)
);

-- Results count the clients enrolled per arm (each client's latest report) for every read:
-- an index the count reads alone, without the table's rows.
CREATE INDEX client_state_by_arm ON client_state (flight, arm);
