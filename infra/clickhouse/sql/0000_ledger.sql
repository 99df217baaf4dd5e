-- The migration ledger: one row per applied migration file (version, name, sha256 of its text).
-- Applied by the migrator before any numbered migration; safe to run any number of times.
CREATE DATABASE IF NOT EXISTS ${database};

CREATE TABLE IF NOT EXISTS ${database}.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version;
