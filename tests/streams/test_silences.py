"""Silences: a model's alerts held back for a while, still recorded (unit parts; the worker's part is in
``test_drift_pipeline``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from driftloop.infra.contract import Alert
from driftloop.streams.drift.silences import Silence, SilenceError, mark_silenced, new_silence, parse_duration

ALERT = Alert.example()  # model fraud, kind data


def test_durations_read_as_people_write_them() -> None:
    assert parse_duration("2h") == 7200 and parse_duration("1d 30m") == 88_200 and parse_duration("0.5h") == 1800
    assert parse_duration("2w") == 14 * 86_400
    for wrong in ("", "2", "two hours", "2h-1m", "h"):
        with pytest.raises(SilenceError, match="2h, 90m"):
            parse_duration(wrong)


def test_a_silence_covers_its_model_its_kind_and_its_time_only() -> None:
    silence = Silence("s", "fraud", "data", starts_at=100.0, ends_at=200.0)
    every_kind = replace(silence, kind="")
    assert silence.covers(ALERT, 150.0) and every_kind.covers(replace(ALERT, kind="performance"), 150.0)
    assert not silence.covers(replace(ALERT, kind="performance"), 150.0)
    assert not silence.covers(replace(ALERT, model="credit"), 150.0)
    assert not silence.covers(ALERT, 99.0) and not silence.covers(ALERT, 200.0)
    marked = mark_silenced([ALERT, replace(ALERT, model="credit")], [silence], 150.0)
    assert [a.silenced for a in marked] == [True, False]
    assert marked[0].to_row()[-1] == 1 and Alert.from_json(marked[0].to_json()).silenced


def test_a_silence_is_asked_for_rightly() -> None:
    with pytest.raises(SilenceError, match="unknown alert kind"):
        new_silence("fraud", 60, kind="latency")
    with pytest.raises(SilenceError, match="positive duration"):
        new_silence("fraud", 0)
    # before: a traceback out of clickhouse-driver (ends_at past a DateTime), and a silence for a name no
    # event can carry
    with pytest.raises(SilenceError, match=r"ends by 2106-02-07.*ask for at most \d+ days"):
        new_silence("fraud", parse_duration("99999d"))
    with pytest.raises(SilenceError, match="'bad name!' is no model name"):
        new_silence("bad name!", 60)
    silence = new_silence("fraud", 7200, kind="performance", reason="migration")
    assert silence.ends_at - silence.starts_at == 7200 and silence.to_json()["kind"] == "performance"
