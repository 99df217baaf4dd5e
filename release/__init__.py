"""Controlled release: a new version earns its traffic on live requests (shadow, canary), and is taken back
when it disappoints (a watch after promotion, then rollback)."""

import driftloop.infra  # noqa: F401  (first: it sets how the ClickHouse driver fills its dates)
