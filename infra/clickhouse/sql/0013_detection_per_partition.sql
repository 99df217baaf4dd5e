-- Detection per Kafka partition (docs/scaling.md): a busy model's events may be spread over partitions, each
-- watched by the worker that owns it, so detector state is kept per (model, partition). State saved before
-- this migration keeps partition -1 (the whole model): it seeds each partition's detectors.
--
-- `REORDER TABLE db.t BY expr` is the migrator's own statement (infra/clickhouse/migrations.py): it copies the
-- table into one sorted by `expr` (the key a Replacing table replaces rows by), checks that every row is
-- there, and swaps the two; a table sorted so already is left alone. Stop the workers while it upgrades.
ALTER TABLE ${database}.detector_state ADD COLUMN partition Int32 DEFAULT -1 AFTER model;
REORDER TABLE ${database}.detector_state BY (model, partition);

-- Detector statistics say which partition's detectors they are (-1: saved before this migration).
ALTER TABLE ${database}.detector_stats ADD COLUMN partition Int32 DEFAULT -1;
