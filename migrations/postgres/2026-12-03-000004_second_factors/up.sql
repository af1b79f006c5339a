-- Moves whenever the password changes, a second factor is added or removed, or the user ends
-- every other session. A trusted-browser cookie, a half-finished sign-in and a pending
-- authenticator setup carry the value they were made under and are void once it moves.
ALTER TABLE users ADD COLUMN factor_version INTEGER NOT NULL DEFAULT 0;

-- Second factors of an account: one authenticator app (kind 'totp') and, in the next issue,
-- any number of passkeys (kind 'passkey', with their name and credential in `data`).
CREATE TABLE second_factors (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('totp', 'passkey')),
    name         TEXT    NOT NULL DEFAULT '',
    -- 'totp': the secret sealed with XChaCha20-Poly1305 under a key derived from the secret key
    data         TEXT    NOT NULL,
    -- 'totp': the last 30-second step accepted; a code is accepted only with a conditional
    -- UPDATE ... WHERE last_step < :step, so no step is accepted twice or out of order
    last_step    BIGINT  NOT NULL DEFAULT 0,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX second_factors_user ON second_factors (user_id);
CREATE UNIQUE INDEX second_factors_one_totp ON second_factors (user_id) WHERE kind = 'totp';

-- Recovery codes, as keyed hashes; used up by deleting the row (one DELETE wins).
CREATE TABLE recovery_codes (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT   NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX recovery_codes_user_hash ON recovery_codes (user_id, code_hash);
