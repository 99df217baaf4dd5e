-- Silences: `driftloop alerts silence --model M --for 2h [--kind K]` holds a model's alerts back for a while.
-- A held-back alert is still recorded in drift_alerts (`silenced` = 1); it is not published on the alerts
-- topic, so no subscriber is told and no retraining starts. `kind` '' silences every kind.
ALTER TABLE ${database}.drift_alerts ADD COLUMN silenced UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS ${database}.alert_silences
(
    silence_id  String,
    model       String,
    kind        String,
    starts_at   DateTime('UTC'),
    ends_at     DateTime('UTC'),
    reason      String,
    created_by  String,
    created_at  DateTime('UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model, silence_id);
