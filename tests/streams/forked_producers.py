"""Producers in processes that end as servers end them, run by ``tests/streams/test_producer.py``.

``python -m tests.streams.forked_producers exit MODEL EVENTS``: a producer emits ``EVENTS`` outcomes into an
envelope that lingers for a minute, and the process exits without closing it (``sys.exit``).

``python -m tests.streams.forked_producers fork MODEL CHILDREN EVENTS``: a pre-fork server's life in one
process: a producer made and used in the parent (an application loaded once, gunicorn ``--preload`` or Celery's
prefork pool), events sent and the process forked at once, so that the children inherit what the parent had not
sent yet; each child emits ``EVENTS`` outcomes and flushes, emits ten more and leaves as a worker does, without
closing it (``sys.exit``: atexit handlers and collection run); then a ``multiprocessing`` worker forked from it
emits ten and returns (it ends with ``os._exit``). Prints one JSON line a child: its index, how it ended, its
seconds."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

from driftloop.streams.producer import EventProducer


def _say(line: dict[str, object]) -> None:
    """One JSON line in one ``write`` (atomic on a pipe under ``PIPE_BUF``): children writing at once through
    ``print`` could interleave a line's text and its newline."""
    os.write(sys.stdout.fileno(), (json.dumps(line) + "\n").encode())


def exit_unclosed(model: str, events: int) -> None:
    producer = EventProducer(max_events=10_000, linger_s=60)
    for i in range(events):
        producer.emit_outcome(model, request_id=f"r{i}", label=1)
    sys.exit(0)


def _emit_and_return(producer: EventProducer, model: str) -> None:
    for i in range(10):
        producer.emit_outcome(model, request_id=f"worker-{i}", label=0)


def fork(model: str, children: int, events: int) -> None:
    # envelopes of 50: the parent's one envelope goes to kafka-python's buffer at once, pending at the fork; the
    # children's last events wait in an open envelope (a minute's linger) when they exit
    producer = EventProducer(max_events=50, linger_s=60)
    for i in range(50):
        producer.emit_outcome(model, request_id=f"parent-{i}", label=1)
    pids = []
    for k in range(children):
        pid = os.fork()
        if pid == 0:
            started = time.monotonic()
            for i in range(events):
                producer.emit_outcome(model, request_id=f"child{k}-{i}", label=0)
            try:
                producer.flush(30)
                ended = "flushed"
            except Exception as exc:  # reported to the test, which says what it was
                ended = f"{type(exc).__name__}: {exc}"
            _say({"child": k, "ended": ended, "s": round(time.monotonic() - started, 2)})
            for i in range(10):
                producer.emit_outcome(model, request_id=f"child{k}-late-{i}", label=0)
            sys.exit(0)  # without close(): the late events are sent at the exit
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    worker = multiprocessing.get_context("fork").Process(target=_emit_and_return, args=(producer, model))
    worker.start()  # a multiprocessing worker: it ends with os._exit, after multiprocessing's finalizers
    worker.join(60)
    codes.append(worker.exitcode)
    producer.close(30)
    _say({"parent": "closed", "children_exit_codes": codes})


if __name__ == "__main__":
    if sys.argv[1] == "exit":
        exit_unclosed(sys.argv[2], int(sys.argv[3]))
    else:
        fork(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
