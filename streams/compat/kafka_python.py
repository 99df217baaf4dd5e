"""kafka-python's internals that driftloop relies on (kafka-python 3.0): letting go of a producer that a forked
process inherited.

A ``KafkaProducer`` made before ``os.fork()`` is copied into the child with the records it had not sent yet,
but without its sender thread, which stayed in the parent (``infra.forks``). Nothing in the child will ever
send them, so closing it the public way waits in vain: ``close(timeout=0)`` gives up at once with a
``KafkaTimeoutError``, but before it marks the producer closed, and its ``__del__`` then waits a second more
and fails again wherever the collector happens to run. :func:`let_go` closes it without waiting and, where
the parent's records were pending, marks it closed (``_closed``), so that nothing waits on it again; its
sockets, shared with the parent, are neither shut down nor written to.

Written for kafka-python 3.0 (pinned ``==3.0.*``, :data:`WRITTEN_FOR`); ``tests/streams/test_library_internals.py``
fails when the installed series, or what ``close`` leaves behind, changes.
"""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

#: The library series this module was written for (pinned in pyproject.toml).
WRITTEN_FOR = {"kafka-python": "3.0."}


def let_go(producer: KafkaProducer) -> None:
    """Close ``producer``, inherited from the parent process, without waiting for what it holds to be sent (the
    parent sends it); its atexit handler and ``__del__`` do nothing afterwards."""
    try:
        producer.close(timeout=0)  # unregisters its atexit handler first; without records pending, closes it
    except KafkaTimeoutError:  # the parent's records, which no thread of this process will send
        producer._closed = True
