"""The streaming half of driftloop: the Faust app and its agents (ingestion, outcome join, detectors, sink)."""

import driftloop.infra  # noqa: F401  (first: it sets how the ClickHouse driver fills its dates)
