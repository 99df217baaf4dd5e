-- Unreadable record batches: a batch the streams worker cannot decompress or check (a corrupt CRC, a codec
-- it cannot decode) is skipped and dead-lettered as one row for its whole offset range, from
-- `source_offset` to `source_offset_last`. Every other dead letter names one message: both are equal.
ALTER TABLE ${database}.dead_letters ADD COLUMN source_offset_last UInt64 DEFAULT source_offset AFTER source_offset;
