"""The worker's supervisor (streams.supervisor): a worker that asks is started again, its exit code is passed
on, SIGTERM reaches it, and a supervisor killed outright takes it along."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.infra.settings import Settings
from driftloop.streams.supervisor import supervise
from tests.stack_fixtures import REPO, wait_for


def settings_in(home: Path) -> Settings:
    return Settings.from_env({"DRIFTLOOP_HOME": str(home)})


def test_a_worker_that_asks_is_started_again_and_its_exit_code_passed_on(tmp_path: Path) -> None:
    assert supervise("tests.streams.supervised:restarts_once", settings_in(tmp_path)) == 0
    assert (tmp_path / "runs").read_text() == "xx"
    assert supervise("tests.streams.supervised:fails", settings_in(tmp_path)) == 3


def start_supervisor(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "DRIFTLOOP_HOME": str(home)}
    supervisor = subprocess.Popen([sys.executable, "-m", "tests.streams.supervised"], cwd=REPO, env=env)
    pid = wait_for(lambda: (home / "pid").exists() and int((home / "pid").read_text()), what="the worker's pid")
    return supervisor, int(pid)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_sigterm_reaches_the_worker_and_the_supervisor_exits_with_it(tmp_path: Path) -> None:
    supervisor, worker = start_supervisor(tmp_path)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    assert (tmp_path / "stopped").read_text() == "yes" and gone(worker)


def test_a_supervisor_killed_outright_takes_its_worker_along(tmp_path: Path) -> None:
    supervisor, worker = start_supervisor(tmp_path)
    supervisor.kill()
    supervisor.wait(30)
    wait_for(lambda: gone(worker), timeout_s=10, what="the worker to end with its supervisor")
    assert not (tmp_path / "stopped").exists()


def test_a_worker_is_named_as_module_and_function() -> None:
    with pytest.raises(ValueError, match="module:function"):
        supervise("tests.streams.supervised.fails", settings_in(Path("/nonexistent")))


def test_driftloop_worker_leaves_the_workers_libraries_to_its_child(tmp_path: Path) -> None:
    # Faust, River and numpy are loaded in the worker process only: the supervisor above it stays small
    env = {**os.environ, "DRIFTLOOP_HOME": str(tmp_path), "DRIFTLOOP_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    supervisor = subprocess.Popen([sys.executable, "-m", "driftloop.cli.main", "worker"], cwd=REPO, env=env)
    try:
        wait_for(lambda: any(loads_numpy(c) for c in children(supervisor.pid)), what="the worker to load numpy")
        assert not loads_numpy(supervisor.pid)
    finally:
        supervisor.terminate()
        supervisor.wait(30)


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def loads_numpy(pid: int) -> bool:
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:  # a worker that has just ended (it is started again)
        return False
