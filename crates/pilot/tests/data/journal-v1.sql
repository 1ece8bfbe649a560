-- A journal written by the first pilot (JOURNAL_VERSION 1), frozen: never edit this file.
-- The test loads it, opens it with today's pilot and checks that it upgrades and still runs.
PRAGMA application_id = 1414548044;
PRAGMA user_version = 1;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE flights (
        studyname TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        spec TEXT NOT NULL,
        arm TEXT,
        status TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        status_line TEXT,
        started_at INTEGER,
        ended_at INTEGER,
        cleaned_up INTEGER NOT NULL DEFAULT 0,
        reason TEXT
    );
    CREATE TABLE nodes (
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (flight, path)
    );
    CREATE TABLE effects (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        phase TEXT NOT NULL,
        spec TEXT NOT NULL,
        summary TEXT NOT NULL,
        at INTEGER NOT NULL,
        done_at INTEGER,
        undone_at INTEGER
    );
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        what TEXT NOT NULL,
        detail TEXT
    );
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        type TEXT NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        url TEXT,
        wait INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        answered_at INTEGER
    );
    CREATE TABLE events (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, subject TEXT, at INTEGER NOT NULL);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        report TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
    );

INSERT INTO meta (key, value) VALUES ('personid', 'frozen-person');
INSERT INTO meta (key, value) VALUES ('client', '0f8fad5b-d9cb-469f-a165-70867728950e');
INSERT INTO meta (key, value) VALUES ('last_serial', '7');
INSERT INTO flights (studyname, version, spec, arm, status, step, started_at, cleaned_up) VALUES
  ('frozen', 2, '{"studyname":"frozen","author":"a","description":"d","version":2,"flightplan":[{"action":"feature","id":"frozen.f","value":{"on":true}},{"action":"wait","for":"1d"},{"action":"log","text":"thawed"}]}', NULL, 'running', 1, 1780000000000, 0);
INSERT INTO nodes (flight, path, state) VALUES ('frozen', '0', '{"res":"true","started":1780000000000,"effect":1,"mark":0,"why":"set"}');
INSERT INTO nodes (flight, path, state) VALUES ('frozen', '1', '{"started":1780000000000,"mark":0}');
INSERT INTO effects (id, flight, path, kind, phase, spec, summary, at, done_at) VALUES
  (1, 'frozen', '0', 'feature', 'done', '{"id":"frozen.f","value":{"on":true},"prior":null}', 'set feature `frozen.f`', 1780000000000, 1780000000000);
INSERT INTO timeline (flight, at, kind, what) VALUES ('frozen', 1780000000000, 'status', 'started version 2');
INSERT INTO outbox (flight, report, created_at) VALUES ('frozen', '{"flight":"frozen","version":2,"arm":null,"status":"running","step":0,"at":"2026-05-28T20:26:40.000Z"}', 1780000000000);
