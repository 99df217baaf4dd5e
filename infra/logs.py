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


def configure_logging(level: str = "WARNING", fmt: str = "console") -> None:
    """Route driftloop's and its libraries' logs to stderr in the chosen format, at the chosen level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Kafka clients are chatty at INFO about every connection; keep them a step quieter than ours.
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
