"""The streams worker's supervisor: ``driftloop worker`` runs the Faust worker in a child process and starts it
again when the child asks to (:func:`restart`: the broker came back as a new instance without its data, and the
worker must begin again from its committed offsets, ``streams.broker_watch``).

SIGTERM sent to the supervisor is passed on to the worker, which stops cleanly; the supervisor then exits with the
worker's code. Ctrl-C in a terminal reaches both: the supervisor leaves it to the worker. A supervisor killed
outright takes its worker with it (Linux: ``PR_SET_PDEATHSIG``), so a ``kill -9`` leaves no worker behind. A worker
run without a supervisor (``faust -A driftloop.streams.app worker``) exits with :data:`RESTART` instead: its
process manager starts it again.

The supervisor names its worker (``"module:function"``) rather than holding it: only the child imports the worker's
module, so the supervisor stays a small process (some 35 MiB, against 190 with Faust, River and the worker's code
loaded into it for nothing).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import NoReturn, cast

from driftloop.infra.logs import configure_logging
from driftloop.infra.settings import Settings

log = logging.getLogger("driftloop.worker")

#: The exit code of a worker that asks to be started again (EX_TEMPFAIL).
RESTART = 75
#: The streams worker, as :func:`supervise` names it.
STREAMS_WORKER = "driftloop.streams.worker:serve_worker"
_PR_SET_PDEATHSIG = 1


def run_worker(settings: Settings) -> int:
    """Run the streams worker in the foreground until interrupted (SIGINT/SIGTERM stop it cleanly), started
    again whenever it asks to; the worker's exit code."""
    return supervise(STREAMS_WORKER, settings)


def supervise(target: str, settings: Settings) -> int:
    """Run the function ``target`` names (``"module:function"``, taking Settings) in a child process until it
    exits other than with :data:`RESTART`; its exit code (128 + the signal for a worker ended by one).

    Raises ``ValueError`` for a name not of that form; the child fails (exit code 1) where it cannot import it.
    """
    module, _, function = target.partition(":")
    if not module or not function:
        raise ValueError(f"name the worker as 'module:function', not {target!r}")
    context = multiprocessing.get_context("spawn")
    while True:
        child = context.Process(
            target=_run_child, args=(module, function, settings, os.getpid()), name="driftloop-worker", daemon=False
        )
        child.start()
        assert child.pid is not None
        previous_term = signal.signal(signal.SIGTERM, _pass_on(child.pid))
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the worker itself
        try:
            child.join()
        finally:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
        code = child.exitcode
        if code != RESTART:
            return 128 - code if code is not None and code < 0 else int(code or 0)
        log.warning("the worker asked to start again; starting it", extra={"fields": {"pid": child.pid}})


def _pass_on(pid: int) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has just ended
            os.kill(pid, signum)

    return handler


def restart() -> NoReturn:
    """From within the worker: end this process and have the supervisor start a fresh one (nothing is cleaned
    up: the caller has written what it must)."""
    logging.shutdown()
    os._exit(RESTART)


def _run_child(module: str, function: str, settings: Settings, supervisor: int) -> None:
    _end_with(supervisor)
    configure_logging(settings.log_level, settings.log_format)  # a spawned process starts with none
    worker = cast(Callable[[Settings], None], getattr(importlib.import_module(module), function))
    worker(settings)


def _end_with(supervisor: int) -> None:
    """Have the kernel kill this process when its supervisor ends (Linux); elsewhere it outlives a supervisor
    killed with SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        log.debug("PR_SET_PDEATHSIG is not available: the worker outlives a killed supervisor")
    if os.getppid() != supervisor:  # it ended before the line above
        os._exit(1)
