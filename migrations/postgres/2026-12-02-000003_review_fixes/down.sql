DROP TABLE ip_limits;
ALTER TABLE otp_tokens DROP COLUMN code_purpose;
DROP INDEX IF EXISTS users_username_skeleton_unique;
ALTER TABLE users DROP COLUMN username_skeleton;
ALTER TABLE users DROP COLUMN credential_version;
