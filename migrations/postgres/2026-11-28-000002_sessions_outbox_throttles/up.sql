-- Server-side sessions. The cookie carries the session key; only its SHA-256 rests here, so a
-- copy of the database cannot be turned into signed-in cookies.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    -- the idle deadline, moved forward on use; never past created_at + the absolute timeout
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Messages waiting for delivery. A request only writes a row here, in the transaction of the
-- change that causes it; a worker delivers it. The text is blanked once it is sent, replaced
-- by a newer code, or expired.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'phone')),
    recipient       TEXT NOT NULL,
    subject         TEXT,
    body_text       TEXT,
    body_html       TEXT,
    -- the token whose code this carries (NULL for notices)
    token_id        BIGINT,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'replaced', 'expired')),
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- a worker that claimed the row holds it until then (another may take it after a crash)
    lease_until     TIMESTAMP,
    version         INTEGER NOT NULL DEFAULT 0,
    finished_at     TIMESTAMP,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_token ON outbox (token_id);

-- Codes sent, per address (a keyed hash of the normalized address), for the resend cooldown,
-- the daily cap and the deployment's hourly SMS limit. Kept whether or not the address still
-- belongs to anyone, so removing and re-adding an address resets nothing.
CREATE TABLE send_log (
    id          BIGSERIAL PRIMARY KEY,
    address_key TEXT NOT NULL,
    channel     TEXT NOT NULL,
    sent_at     TIMESTAMP NOT NULL
);
CREATE INDEX send_log_address ON send_log (address_key, sent_at);
CREATE INDEX send_log_channel ON send_log (channel, sent_at);

-- Backoff for attempts that have no token row: sign-in per identifier (known or not), and
-- password-reset codes for accounts that do not exist. Keyed by a keyed hash of purpose and
-- normalized identifier.
CREATE TABLE throttles (
    key        TEXT PRIMARY KEY NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    until      TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    version    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX throttles_updated ON throttles (updated_at);
