"""Imports point down: the layers written in ``.importlinter`` hold (``make lint`` checks them too)."""

from __future__ import annotations

import subprocess
import sys

from tests.stack_fixtures import REPO


def test_imports_point_down() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout
