"""Objects used in a process forked from the one that made them.

Pre-fork servers load the application once and fork their workers from it: gunicorn with ``--preload``,
uWSGI by default (without ``lazy-apps``), Celery's prefork pool, ``multiprocessing``'s fork start. A child
has a copy of the parent's memory but **none of its threads**, and shares its sockets: a Kafka producer
whose sender thread stayed in the parent never sends, a consumer thread that followed a topic is gone, a
lock a parent's thread held is held for ever, and a connection used by both processes mixes their bytes.

An object that holds threads or connections keeps a :class:`ForkWatch`: at each public call it asks
:meth:`ForkWatch.in_new_process`, and the first call in a child (one thread, however many call at once)
starts the object's threads and connections again. What it inherited is left alone, never closed: closing a
shared socket from the child (a ``shutdown``) would cut the parent's connection.

>>> watch = ForkWatch()
>>> watch.in_new_process()
False
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# One lock a process, made in that process: a lock made before a fork may be held there by a thread that did
# not come along. setdefault is atomic, so two threads of a new child take the same one.
_LOCKS: dict[int, threading.Lock] = {}


class ForkWatch:
    """Whether its owner is used in a process other than the one it was started in (see the module docstring)."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def in_new_process(self) -> bool:
        """True when this process is not the one the owner was (last) started in; cheap (one ``getpid``)."""
        return os.getpid() != self._pid

    def restart(self, start: Callable[[], None]) -> None:
        """Run ``start`` once in this process if it is a new one (concurrent callers wait for that one run)."""
        pid = os.getpid()
        if pid == self._pid:
            return
        with _LOCKS.setdefault(pid, threading.Lock()):
            if pid != self._pid:
                start()
                self._pid = pid
