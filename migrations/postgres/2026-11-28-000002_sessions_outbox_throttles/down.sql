DROP TABLE throttles;
DROP TABLE send_log;
DROP TABLE outbox;
DROP TABLE sessions;
