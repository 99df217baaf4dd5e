-- Broker incidents: a Kafka cluster that came back as a new instance (the embedded broker keeps
-- messages in memory only, so a restart loses what it held). One row per partition the reporting
-- worker had written from: messages at `lost_from_offset` and after, on the old instance, were never
-- read by that worker; the ones produced before the old instance stopped are lost.
CREATE TABLE IF NOT EXISTS ${database}.broker_incidents
(
    detected_at       DateTime('UTC'),
    worker            String,
    bootstrap         String,
    old_cluster_id    String,
    new_cluster_id    String,
    last_contact      DateTime('UTC'),   -- the old instance last answered this worker
    topic             String,
    partition         UInt16,
    lost_from_offset  Int64              -- first offset of the old instance this worker never wrote
)
ENGINE = MergeTree
ORDER BY (detected_at, topic, partition);
