"""driftloop's log set-up: what reaches stderr from the libraries beneath it."""

from __future__ import annotations

import logging

import pytest

from driftloop.infra.logs import configure_logging

SLOW_TASK = (
    "Task <kafka.net.selector.Task object at 0x7f19a4b99990> ran for 0.288s (>0.100s threshold). It is blocking "
    "the event loop -- likely a tight sync loop inside a coroutine. Other pollers will time out."
)


@pytest.fixture(autouse=True)
def _restore_logging():  # type: ignore[no-untyped-def]
    root, selector = logging.getLogger(), logging.getLogger("kafka.net.selector")
    handlers, level, filters = root.handlers[:], root.level, selector.filters[:]
    yield
    root.handlers[:], selector.filters[:] = handlers, filters
    root.setLevel(level)


def test_kafka_pythons_slow_task_warning_shows_at_debug_only(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo printed it whenever the machine was busy (the network thread waiting for the GIL); every other
    warning of kafka-python's still shows."""
    configure_logging("WARNING")
    selector = logging.getLogger("kafka.net.selector")
    selector.warning(SLOW_TASK)
    selector.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "t")
    err = capsys.readouterr().err
    assert "blocking the event loop" not in err and "left RUNNING after step" in err
    configure_logging("DEBUG")
    selector.warning(SLOW_TASK)
    assert "blocking the event loop" in capsys.readouterr().err
