-- Users may have any non-empty subset of username, email and phone.
-- *_key columns hold the case-folded forms that uniqueness is judged on (SQLite's lower()
-- folds only ASCII, so the application computes them).
CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    username     TEXT,
    username_key TEXT,
    email        TEXT,
    email_key    TEXT,
    phone        TEXT,
    password     TEXT    NOT NULL,
    is_active    BOOLEAN NOT NULL DEFAULT 1,
    is_staff     BOOLEAN NOT NULL DEFAULT 0,
    is_superuser BOOLEAN NOT NULL DEFAULT 0,
    date_joined  TIMESTAMP NOT NULL,
    last_login   TIMESTAMP,
    CHECK (username IS NOT NULL OR email IS NOT NULL OR phone IS NOT NULL),
    CHECK ((username IS NULL) = (username_key IS NULL)),
    CHECK ((email IS NULL) = (email_key IS NULL))
);
CREATE UNIQUE INDEX users_username_unique ON users (username_key);
CREATE UNIQUE INDEX users_email_unique ON users (email_key);
CREATE UNIQUE INDEX users_phone_unique ON users (phone);

-- django-flex-user's EmailToken and PhoneToken: one row per address of a user.
CREATE TABLE otp_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL CHECK (channel IN ('email', 'phone')),
    address       TEXT    NOT NULL,
    verified      BOOLEAN NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    timeout_until TIMESTAMP,
    code_hash     TEXT,
    expires_at    TIMESTAMP,
    -- bumped on every change: updates are compare-and-swap on it, so concurrent checks
    -- never lose a failure or spend one code twice
    version       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX otp_tokens_user_channel ON otp_tokens (user_id, channel);
