-- Version 5: the per-client event cap (docs/api.md#events) reads a client's counts per
-- flight; the rollup's key starts with the flight, so it needs its own index.
CREATE INDEX event_clients_by_client ON event_clients (client, flight);
