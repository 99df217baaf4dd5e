"""Controlled release: a new version earns its traffic on live requests (shadow, canary), and is taken back
when it disappoints (a watch after promotion, then rollback)."""
