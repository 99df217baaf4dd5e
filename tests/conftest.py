"""Shared fixtures: one private local stack (broker + ClickHouse on free ports) per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from infra.stack import stack as local_stack
from tests.stack_fixtures import PrivateStack, private_stack_env

# Worker apps that tests run in subprocesses: not test modules (they read their config at import).
collect_ignore = ["streams/echo_app.py"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """The session's private stack, started once, provisioned, and stopped at the end."""
    if shutil.which("clickhouse-server") is None:
        pytest.fail("clickhouse-server is not installed: run `make test` (it installs it) or `make clickhouse`")
    private = PrivateStack(private_stack_env(tmp_path_factory.mktemp("stack-home")))
    local_stack.up(private.settings)
    try:
        yield private
    finally:
        local_stack.down(private.settings)


@pytest.fixture()
def clickhouse(stack: PrivateStack):  # type: ignore[no-untyped-def]
    """A clickhouse-driver client on the session stack's driftloop database."""
    from infra.clickhouse.client import connect

    client = connect(stack.settings.clickhouse)
    yield client
    client.disconnect()
