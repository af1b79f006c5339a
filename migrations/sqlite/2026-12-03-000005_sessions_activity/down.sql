DROP TABLE notice_log;
DROP TABLE known_browsers;
DROP TABLE activity;
DROP INDEX sessions_public_id;
ALTER TABLE sessions DROP COLUMN user_agent;
ALTER TABLE sessions DROP COLUMN last_ip;
ALTER TABLE sessions DROP COLUMN last_seen_at;
ALTER TABLE sessions DROP COLUMN public_id;
