"""Retraining: alert intake and policy, training sets from ClickHouse, the training loop, the champion gate."""
