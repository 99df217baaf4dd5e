"""The streaming half of driftloop: the Faust app and its agents (ingestion, outcome join, detectors, sink)."""
