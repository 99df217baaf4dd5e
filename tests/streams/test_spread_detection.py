"""A model spread over partitions is watched by one set of detectors per partition (docs/scaling.md), each
keeping the model's run length in events: its false alarms per event stay what they were on one partition.
Were each partition's detectors to keep the model's rate in their share of the events instead, four
partitions would raise four times as many (this test fails on twice)."""

from __future__ import annotations

from benchmarks.hot_model import false_alarms


def test_a_model_over_four_partitions_has_the_false_alarms_of_one() -> None:
    # 40,000 stationary events, a warm-up of 500 and a run length of 500 events for the model: some 40 false
    # alarms to count (the detectors err long: about half of the 80 the run length allows). Seen: 44 and 45.
    # With each partition's detectors at a quarter of the run length: 44 and 136.
    one = false_alarms(1, seed=0, events=40_000, run_length=500, warmup=500)
    four = false_alarms(4, seed=0, events=40_000, run_length=500, warmup=500)
    assert one >= 20, one  # enough to compare
    assert 0.5 <= four / one <= 2.0, (one, four)
