-- Unreadable record batches: a batch the streams worker cannot decompress or check (a corrupt CRC, a codec
-- it cannot decode) is skipped and dead-lettered as one row for its whole offset range, from
-- `source_offset` to `source_offset_last`. Every other dead letter names one message: both are equal.
ALTER TABLE ${database}.dead_letters ADD COLUMN source_offset_last UInt64 DEFAULT source_offset AFTER source_offset;

-- A retraining job that will not run (it waited longer than the spec's `max_wait_s` for labels) is a run
-- with status `skipped`; `error` says why.
ALTER TABLE ${database}.retrain_runs MODIFY COLUMN status Enum8('queued' = 1, 'running' = 2, 'promoted' = 3, 'rejected' = 4, 'failed' = 5, 'skipped' = 6);
