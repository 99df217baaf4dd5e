"""Structured logs, quiet by default: ``DRIFTLOOP_LOG_LEVEL`` (WARNING) and ``DRIFTLOOP_LOG_FORMAT``.

``console`` writes ``time level logger: message key=value ...``; ``json`` writes one object per line.
Pass fields with ``extra={"fields": {...}}``:

>>> import logging
>>> formatter = KeyValueFormatter()
>>> record = logging.makeLogRecord({"name": "driftloop.sink", "levelname": "INFO", "msg": "flushed",
...                                 "fields": {"rows": 2000, "table": "predictions"}, "created": 0})
>>> formatter.format(record)
'1970-01-01T00:00:00Z INFO driftloop.sink: flushed rows=2000 table=predictions'
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", {}) or {})
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "fields"})
    return fields


class KeyValueFormatter(logging.Formatter):
    """One line per record for people: time, level, logger, message, then ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}: {record.getMessage()}"]
        parts += [f"{k}={v}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RepeatLimiter(logging.Filter):
    """Lets one record per (logger, message template) through every ``window_s`` from the loggers under
    ``prefixes``; the next one that passes carries ``suppressed=N``. Kafka clients log a connection error
    several times a second while a broker is away; driftloop's own watch says what is going on.

    >>> limiter = RepeatLimiter(("kafka",), window_s=60)
    >>> records = [logging.makeLogRecord({"name": "kafka.conn", "msg": "cannot connect to %s", "args": ("b",)})
    ...            for _ in range(3)]
    >>> [limiter.filter(r) for r in records]
    [True, False, False]
    """

    def __init__(self, prefixes: tuple[str, ...], *, window_s: float = 30.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        passed_at, suppressed = self._seen.get(key, (0.0, 0))
        if record.created - passed_at < self.window_s:
            self._seen[key] = (passed_at, suppressed + 1)
            return False
        if len(self._seen) > 1000:  # templates are few; this only guards against unbounded growth
            self._seen.clear()
        self._seen[key] = (record.created, 0)
        if suppressed:
            record.suppressed = suppressed
        return True


def slow_task_at_debug(record: logging.LogRecord) -> bool:
    """kafka-python's network thread warns when one of its steps took over 0.1 s, "likely a tight sync loop
    inside a coroutine": in a process whose other threads hold the GIL (a serving client's torch, the demo's
    display), it is the machine being busy, and the warning names nothing to do. Let it through at DEBUG only.

    >>> record = logging.makeLogRecord({"name": "kafka.net.selector", "levelno": logging.WARNING,
    ...     "msg": "Task <Task> ran for 0.288s (>0.100s threshold). It is blocking the event loop"})
    >>> slow_task_at_debug(record)
    False
    """
    if record.levelno != logging.WARNING or "blocking the event loop" not in str(record.msg):
        return True
    return logging.getLogger().isEnabledFor(logging.DEBUG)  # DRIFTLOOP_LOG_LEVEL=DEBUG


def configure_logging(level: str = "WARNING", fmt: str = "console") -> None:
    """Route driftloop's and its libraries' logs to stderr in the chosen format, at the chosen level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(RepeatLimiter(("kafka", "aiokafka")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Kafka clients are chatty at INFO about every connection; keep them a step quieter than ours.
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    logging.getLogger("kafka.net.selector").addFilter(slow_task_at_debug)
    # clickhouse-driver warns with a traceback at every failed connect; what failed is said by driftloop's own
    # error (the CLI's one line, the sink's and the workers' retries)
    logging.getLogger("clickhouse_driver.connection").setLevel(max(logging.getLevelName(level), logging.ERROR))
