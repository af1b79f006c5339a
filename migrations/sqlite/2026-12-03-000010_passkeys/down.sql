DROP TABLE passkey_challenges;
DROP INDEX second_factors_public_id;
DROP INDEX second_factors_credential_id;
ALTER TABLE second_factors DROP COLUMN public_id;
ALTER TABLE second_factors DROP COLUMN credential_id;
