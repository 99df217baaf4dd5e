-- Retention: the event tables in weekly partitions (Monday to Sunday, UTC), so that rows older than a table's
-- retention (DRIFTLOOP_RETENTION_DAYS, infra/clickhouse/retention.py) go a whole week at a time: by dropping
-- partitions on ClickHouse 18.16, which has no TTL, and by the table's TTL where the server has one. Monthly
-- partitions would keep up to a month too much; daily ones would make too many parts.
--
-- `REPARTITION TABLE db.t BY expr` is the migrator's own statement (infra/clickhouse/migrations.py): it copies
-- the table into one partitioned by `expr`, checks that every row is there, and swaps the two; a table
-- partitioned so already is left alone. Stop the workers while an existing database upgrades.
REPARTITION TABLE ${database}.predictions BY toMonday(ts);
REPARTITION TABLE ${database}.outcomes BY toMonday(ts);
REPARTITION TABLE ${database}.labeled BY toMonday(ts);
REPARTITION TABLE ${database}.prediction_requests BY toMonday(ts);
REPARTITION TABLE ${database}.detector_stats BY toMonday(ts);
REPARTITION TABLE ${database}.dead_letters BY toMonday(received_at);

-- The request index's view, made again against the tables as they are now.
DROP TABLE IF EXISTS ${database}.prediction_requests_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.prediction_requests_mv
TO ${database}.prediction_requests
AS SELECT model, request_id, event_id, ts, ts_ms FROM ${database}.predictions;
