-- Passkeys (WebAuthn) are rows of `second_factors` with kind 'passkey': their name, and in `data`
-- the credential as webauthn-rs keeps it (the public key, the sign counter, the backup flags and
-- the user handle: nothing secret). `credential_id` (base64url) finds the row of a discoverable
-- sign-in and keeps a credential on one account only; `public_id` is what the pages show and
-- the remove form posts (random, so it tells nothing of other accounts' rows).
ALTER TABLE second_factors ADD COLUMN credential_id TEXT;
ALTER TABLE second_factors ADD COLUMN public_id TEXT;
CREATE UNIQUE INDEX second_factors_credential_id ON second_factors (credential_id);
CREATE UNIQUE INDEX second_factors_public_id ON second_factors (public_id);

-- A WebAuthn ceremony between its two calls: the challenge and state webauthn-rs hands over
-- (JSON), keyed by the SHA-256 of a random id the browser holds, for the kind it was made for
-- ('register', 'sign_in', 'second_step') and the account it is bound to. Used once (the finish
-- deletes the row and goes on only when its DELETE removed it) and only until `expires_at`.
CREATE TABLE passkey_challenges (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('register', 'sign_in', 'second_step')),
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX passkey_challenges_expires_at ON passkey_challenges (expires_at);
