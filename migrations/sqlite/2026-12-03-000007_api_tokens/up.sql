-- The JSON API's FLOWs: a pending reset, code sign-in or second step, the API's equivalent of
-- the record a browser's session keeps. Keyed by the SHA-256 of a random id the client holds
-- (never the id), with the pending state as JSON, the kind it was made for, and when it ends.
-- (Bearer tokens need no table: they are rows of `sessions`.)
CREATE TABLE api_flows (
    id_hash TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX api_flows_expires_at ON api_flows (expires_at);
