-- Signing keys (docs/keys.md), version 2. Never edit a migration that has shipped; add one.
-- The current key signs the index; a `next` key is a proposed successor the index announces
-- (`nextKey`); `retired` keys signed before and never will again (their secret is erased).
-- `secret` is the Ed25519 seed (hex), or NULL when it is kept outside the database (a key
-- file or environment variable given to every tower). The seed of the version 1 table
-- `tower_key` moves here when a tower first starts, and is removed from there.
CREATE TABLE signing_keys (
    key_id       TEXT   PRIMARY KEY,
    public_key   TEXT   NOT NULL,
    secret       TEXT,
    state        TEXT   NOT NULL CHECK (state IN ('current', 'next', 'retired')),
    created_at   BIGINT NOT NULL,
    proposed_by  TEXT,
    completed_by TEXT,
    changed_at   BIGINT NOT NULL
);
-- At most one current key and one successor.
CREATE UNIQUE INDEX signing_keys_one_per_state ON signing_keys (state) WHERE state <> 'retired';
