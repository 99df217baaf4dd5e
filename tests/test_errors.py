"""One root exception: every exception class driftloop defines is a ``DriftloopError`` (what a user can catch)."""

from __future__ import annotations

import importlib
import inspect

from driftloop.infra.errors import DriftloopError
from tests.test_doctests import modules


def test_every_exception_driftloop_defines_is_a_driftloop_error() -> None:
    defined = {
        f"{name}.{cls.__name__}": cls
        for name in modules()
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == name
    }
    assert len(defined) > 10
    assert [name for name, cls in defined.items() if not issubclass(cls, DriftloopError)] == []
