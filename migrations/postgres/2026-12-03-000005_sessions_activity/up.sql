-- What the sessions page shows of each signed-in session: a public id for its "end" form
-- (random, neither the cookie's key nor its hash), and when, from which IP address and with
-- which User-Agent it was last used (written at most once a minute per session).
ALTER TABLE sessions ADD COLUMN public_id TEXT;
ALTER TABLE sessions ADD COLUMN last_seen_at TIMESTAMP;
ALTER TABLE sessions ADD COLUMN last_ip TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
UPDATE sessions SET public_id = md5(random()::text || clock_timestamp()::text || id_hash), last_seen_at = created_at WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX sessions_public_id ON sessions (public_id);

-- The security events of each account, append-only, newest read first. Failed sign-ins are
-- counted per account per hour: one row, `hour` set to the hour's start, `count` attempts.
CREATE TABLE activity (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT      NOT NULL,
    detail     TEXT,
    ip         TEXT,
    user_agent TEXT,
    at         TIMESTAMP NOT NULL,
    hour       TIMESTAMP,
    count      INTEGER   NOT NULL DEFAULT 1
);
CREATE INDEX activity_user ON activity (user_id, at);
CREATE INDEX activity_at ON activity (at);
CREATE UNIQUE INDEX activity_counted ON activity (user_id, kind, hour);

-- Browsers that have signed up or signed in to an account: a keyed hash of the browser cookie's
-- random id. A sign-in from a browser not here is told to the account's verified email.
CREATE TABLE known_browsers (
    user_id      BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    browser_hash TEXT      NOT NULL,
    first_seen   TIMESTAMP NOT NULL,
    last_seen    TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, browser_hash)
);

-- Notices queued per account (not codes: they have the send log), for their own hourly bound.
CREATE TABLE notice_log (
    id      BIGSERIAL PRIMARY KEY,
    user_id BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    TEXT      NOT NULL,
    sent_at TIMESTAMP NOT NULL
);
CREATE INDEX notice_log_user ON notice_log (user_id, kind, sent_at);
CREATE INDEX notice_log_sent ON notice_log (sent_at);
