"""Shared fixtures: one private local stack (broker + ClickHouse on free ports) per test session."""

from __future__ import annotations

import importlib.abc
import shutil
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest

from driftloop.infra.stack import stack as local_stack
from tests.stack_fixtures import PrivateStack, private_stack_env

# Worker apps that tests run in subprocesses: not test modules (they read their config at import).
collect_ignore = ["streams/echo_app.py"]


class _FoldersAreNotPackages(importlib.abc.MetaPathFinder):
    """The repository's root is on ``sys.path`` in tests (for ``tests.*``), which makes its folders importable
    under their bare names: refuse those, so that a stray ``import streams`` fails here as it would for users."""

    FOLDERS = frozenset({"cli", "infra", "streams", "retrain", "release", "models", "analytics", "demo"})

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name.partition(".")[0] in self.FOLDERS:
            raise ImportError(f"`{name}` is a folder of driftloop's repository: import `driftloop.{name}`")
        return None


sys.meta_path.insert(0, _FoldersAreNotPackages())


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """The session's private stack, started once, provisioned, and stopped at the end."""
    if shutil.which("clickhouse-server") is None:
        pytest.fail("clickhouse-server is not installed: run `make test` (it installs it) or `make clickhouse`")
    private = PrivateStack(private_stack_env(tmp_path_factory.mktemp("stack-home")))
    with local_stack.running(private.settings):
        yield private


@pytest.fixture()
def clickhouse(stack: PrivateStack):  # type: ignore[no-untyped-def]
    """A clickhouse-driver client on the session stack's driftloop database."""
    from driftloop.infra.clickhouse.client import connect

    client = connect(stack.settings.clickhouse)
    yield client
    client.disconnect()
