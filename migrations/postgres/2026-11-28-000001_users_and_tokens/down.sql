DROP TABLE otp_tokens;
DROP TABLE users;
