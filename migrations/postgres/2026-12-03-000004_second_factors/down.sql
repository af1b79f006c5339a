DROP TABLE recovery_codes;
DROP TABLE second_factors;
ALTER TABLE users DROP COLUMN factor_version;
