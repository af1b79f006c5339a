-- Bumped whenever the account's password or identifiers change, or a reset completes. Pending
-- and proven resets carry the value they were made under and are void once it moves; completing
-- a reset is a compare-and-swap on it, so a proof is spent exactly once.
ALTER TABLE users ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;
-- The UTS #39 confusable skeleton of the case-folded username: no two usernames may share one
-- (`admın` cannot sit beside `admin`). Computed by the application; rows from before this
-- migration are filled in at start-up (a clash among old rows is left empty and logged).
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_skeleton_unique ON users (username_skeleton);

-- What the live code of a token was sent for: 'verify' or 'reset' (and the sign-in codes to
-- come). A code only does what it was sent for.
ALTER TABLE otp_tokens ADD COLUMN code_purpose TEXT;

-- The per-IP limit on POSTs, shared by every instance: one GCRA row per client (an IPv4
-- address or an IPv6 /64), keyed by a keyed hash. `tat` is the theoretical arrival time.
CREATE TABLE ip_limits (
    key TEXT PRIMARY KEY NOT NULL,
    tat TIMESTAMP NOT NULL
);
CREATE INDEX ip_limits_tat ON ip_limits (tat);
