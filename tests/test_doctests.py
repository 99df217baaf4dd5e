"""Every module's doctests, each module imported by its one name (``driftloop.*``), as users import it."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("cli", "infra", "streams", "retrain", "release", "models", "analytics", "demo")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(f"driftloop.{package}")
        names.append(root.__name__)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, prefix=root.__name__ + ".")]
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
