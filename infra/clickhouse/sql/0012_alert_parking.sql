-- Alerts a webhook subscriber could not deliver: a webhook refused them (a 4xx other than 408 and 429), or stayed
-- unreachable for longer than the subscriber's --park-after. Parked with the reason, so that the subscriber
-- moves on to the next alerts; `driftloop alerts parked` lists them and `driftloop alerts resend` sends them again.
-- `destination` is the webhook by scheme and host, and a short digest of its URL (the URL itself is a secret). A re-sent alert is a new row with
-- status 'resent' and a higher revision: read with FINAL.
CREATE TABLE IF NOT EXISTS ${database}.parked_alerts
(
    subscriber   String,
    alert_id     String,
    destination  String,
    model        String,
    kind         String,
    reason       String,
    alert        String,
    parked_at    DateTime('UTC'),
    status       Enum8('parked' = 1, 'resent' = 2),
    revision     UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (subscriber, alert_id, destination);
