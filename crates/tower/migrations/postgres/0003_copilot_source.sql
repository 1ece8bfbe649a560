-- Copilot sources, version 3. Never edit a migration that has shipped; add one.
-- A revision pushed as a copilot document (docs/copilot.md) keeps the document beside the
-- flight it expanded to, as the author posted it (JSON text); NULL for a revision pushed as
-- a flight.
ALTER TABLE revisions ADD COLUMN copilot TEXT;
