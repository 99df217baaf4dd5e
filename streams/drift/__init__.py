"""Drift detection: signals from batches, detectors on River's interface, the alert policy, the monitor."""
