"""Model and feature names are data, never SQL: hostile names are refused or stored verbatim, tables intact."""

from __future__ import annotations

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.streams.decode import Incoming, decode_predictions
from driftloop.streams.sink import ClickHouseSink
from tests.reliability.hostile import SQL
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration

EVENT = '{{"model": {model}, "request_id": "r1", "ts": 1790000000, "features": {features}, "prediction": 1}}'


def _tables(stack: PrivateStack) -> set[str]:
    client = connect(stack.settings.clickhouse)
    try:
        return {name for (name,) in client.execute("SHOW TABLES")}
    finally:
        client.disconnect()


@pytest.mark.parametrize("name", SQL)
def test_a_model_named_like_sql_is_refused_with_a_reason(name: str) -> None:
    message = EVENT.format(model=_json(name), features='{"x": 1}').encode()
    decoded = decode_predictions([Incoming(message, "predictions", 0, 0)])
    assert len(decoded.rows) == 0
    assert '"model"' in decoded.dead[0].reason and "must match" in decoded.dead[0].reason


def test_features_named_like_sql_are_stored_verbatim(stack: PrivateStack) -> None:
    before = _tables(stack)
    features = "{" + ", ".join(f"{_json(name)}: {i}" for i, name in enumerate(SQL)) + ', "c": "\'); DROP TABLE x; --"}'
    message = EVENT.format(model='"injection-check"', features=features).encode()
    decoded = decode_predictions([Incoming(message, "predictions", 0, 0)])
    assert not decoded.dead
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        sink.write_blocking(decoded.rows)
    finally:
        sink.close()
    client = connect(stack.settings.clickhouse)
    try:
        rows = client.execute(
            "SELECT num.name, cat.value FROM predictions FINAL WHERE model = %(m)s", {"m": "injection-check"}
        )
    finally:
        client.disconnect()
    assert rows == [(list(SQL), ["'); DROP TABLE x; --"])]
    assert _tables(stack) == before  # nothing dropped, nothing created


@pytest.mark.parametrize("verb", [("models", "show"), ("report", "--model")])
def test_cli_lookups_with_a_hostile_model_name_are_parameterised(stack: PrivateStack, verb: tuple[str, str]) -> None:
    before = _tables(stack)
    result = stack.run_cli(*verb, "x'); DROP TABLE model_versions; --")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr  # a clear error, not a crash
    assert _tables(stack) == before


def _json(text: str) -> str:
    import json

    return json.dumps(text)
