"""Work in a child process that answers every message: how the worker gets past one interpreter lock.

The Faust agents' process spends its main thread on Faust (fetching, events, acks). What driftloop does with
the messages (decode, write, join, detect) runs in child processes, so that it takes the machine's other
cores instead of taking turns with Faust: ingestion in one (:mod:`streams.ingestion_process`), drift
detection in another (:mod:`streams.drift.process`).

A :class:`ChildProcess` starts its child with ``spawn`` (never a fork of a process running Faust's
threads); the child builds its handler with ``factory(settings)`` and handles the messages sent to it.
Messages travel in *lanes*: each lane is handled in order, one message at a time, and lanes run side by
side (outcomes are not held up behind predictions). A handler may return :class:`AnswerLater` to take
the lane's next message before the answer is ready. Every message is answered with its result, or the
error its handler raised (:class:`ChildError`), and the handler's report (its metrics), which the parent
passes to ``on_report``.

- A message is a :class:`Request`: each kind a frozen dataclass of its own, which the handler matches on
  (no strings to misspell; one it has no branch for comes back as :class:`UnknownRequestError`).
- :meth:`ChildProcess.call` queues a request and returns a future of its answer; a task writes the
  queue to the pipe (pickled in a thread), so the event loop never waits for a busy child. At most
  ``MAX_UNANSWERED`` requests wait for one child (:class:`ChildBusyError` beyond): memory stays bounded.
- A child that exits unasked (killed, out of memory) fails every unanswered message with
  :class:`ChildLostError` at once; the next call starts a new child, and the old one's exit is waited for
  in a thread (never on the event loop). :meth:`ChildProcess.close` is final: the child's exit after it
  stopped is no loss, and a message sent later is refused (:class:`ChildClosedError`), not given to a new child.
- A child exits as soon as the parent's end of its pipe closes: the parent stopped, died, or ran itself
  again after a broker incident. Children are not daemons (the ingestion child starts the detection
  child, which a daemon may not); a parent that exits without :meth:`ChildProcess.close` closes its
  end at exit and waits a little for the child before ending it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from driftloop.infra.errors import DriftloopError
from driftloop.infra.logs import configure_logging
from driftloop.infra.settings import Settings
from driftloop.streams.gc_tuning import collect_less_often
from driftloop.streams.malloc_tuning import keep_freed_memory

log = logging.getLogger("driftloop.child")

#: Unanswered messages one child may have at most (queued, in the pipe, or in its lanes): callers bound their
#: own work (ingestion three pieces in flight, detection eight batches), so reaching it is a bug, refused
#: with ChildBusyError rather than growing memory without end.
MAX_UNANSWERED = 256

#: The capacity of the pipe a child's messages travel down (Linux's default is 64 KiB; 1 MiB is the most an
#: unprivileged process may ask for by default).
PIPE_BYTES = 1 << 20


class Request:
    """A message for a child process. Each kind is a frozen dataclass of its own, subclassing this one:
    the handler matches on the type, and a request that is no handler's fails with :class:`ChildError`."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Stop(Request):
    """Finish what was sent, close the handler and exit (:meth:`ChildProcess.close` sends it)."""


_Message = tuple[str, int, Request]  # lane, request id, request


class ChildHandler(Protocol):
    """What a child process runs: built by the factory inside the child, with its event loop running."""

    async def handle(self, request: Request) -> Any: ...

    def report(self) -> Any: ...

    async def close(self) -> None: ...


class AnswerLater:
    """What a handler returns to answer its message once ``pending`` completes, and let its lane go on now.

    The lane's next message is handled meanwhile (the handler keeps whatever order it needs between them);
    the answer carries ``pending``'s result or error.
    """

    def __init__(self, pending: Awaitable[Any]) -> None:
        self.pending = pending


class ChildError(DriftloopError, RuntimeError):
    """The child's handler raised: its exception type and message (the child logged the traceback)."""


class ChildLostError(DriftloopError, RuntimeError):
    """The child exited before it answered the message."""


class ChildClosedError(DriftloopError, RuntimeError):
    """The :class:`ChildProcess` was closed (its owner is stopping): it takes no more messages."""


class ChildBusyError(DriftloopError, RuntimeError):
    """``MAX_UNANSWERED`` messages already wait for one child: its caller sends without waiting for answers."""


class UnknownRequestError(DriftloopError, TypeError):
    """A request no branch of the handler takes (a programming error: the parent and child disagree)."""

    def __init__(self, handler: object, request: Request) -> None:
        super().__init__(f"{type(handler).__name__} has no branch for {type(request).__name__}")


class ChildProcess:
    """A child process running ``factory(settings)``'s handler; see the module docstring.

    Nothing starts until the first :meth:`call` or :meth:`start`; :meth:`close` lets the child finish
    the messages it has and stops it.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[Settings], ChildHandler],
        settings: Settings,
        on_report: Callable[[Any], None] = lambda report: None,
    ) -> None:
        self.name = name
        self.factory = factory  # a module-level class or function: the child imports it
        self.settings = settings
        self.on_report = on_report
        self.restarts = 0  # children that exited unasked
        self._closed = False
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._from_child: Connection | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._outgoing: asyncio.Queue[_Message] = asyncio.Queue(MAX_UNANSWERED)
        self._writer: asyncio.Task[None] | None = None
        self._to_child: Connection | None = None
        atexit.register(self._end_at_exit)

    def start(self) -> None:
        """Start the child now (it takes seconds to import) rather than at the first message."""
        if self._process is None:
            self._start()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called: no message is taken any more."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """The running child's process id (None: none runs)."""
        return None if self._process is None else int(self._process.pid)

    def call(self, lane: str, request: Request) -> asyncio.Future[Any]:
        """Queue ``request`` in ``lane``; the future settles with the child's answer."""
        if self._closed:
            raise ChildClosedError(f"{self.name} was closed: its owner is stopping, and no child starts again")
        if self._process is None:
            self._start()
        if len(self._pending) >= MAX_UNANSWERED:
            raise ChildBusyError(
                f"{MAX_UNANSWERED} messages already wait for {self.name}: await the answers before sending more"
            )
        number = next(self._ids)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[number] = done
        self._outgoing.put_nowait((lane, number, request))
        return done

    async def close(self, timeout_s: float = 60.0) -> None:
        """Let the child handle what it was sent, close its handler and exit (ended after ``timeout_s``).

        Final: later calls raise :class:`ChildClosedError` (a timer firing while its owner stops must not
        start a child again), and the child's exit once it has stopped is no loss."""
        if self._process is None:
            self._closed = True
            return
        process = self._process
        try:
            stopped = self.call("", Stop())
            self._closed = True
            await asyncio.wait_for(stopped, timeout_s)
        except (ChildLostError, ChildError, TimeoutError):
            log.warning("child process did not stop in time; ending it", extra={"fields": {"child": self.name}})
        if self._process is process:
            self._forget()
        await asyncio.to_thread(process.join, 5)
        if process.is_alive():
            process.kill()

    # --- internals ---------------------------------------------------------------------------------------

    def _start(self) -> None:
        # the worker's processes share the machine's cores already: a child's numpy multiplies matrices on one
        # thread (OpenBLAS's own threads spin while they wait; two cost the joint signal 1.4 to 2 times the CPU)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        to_child_read, to_child_write = self._context.Pipe(duplex=False)
        _widen(to_child_read)
        from_child_read, from_child_write = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve,
            args=(self.factory, self.settings, to_child_read, from_child_write),
            name=self.name,
            daemon=False,
        )
        process.start()
        to_child_read.close()  # the child's ends: only the child may hold them, or it never sees EOF
        from_child_write.close()
        self._process, self._from_child, self._to_child = process, from_child_read, to_child_write
        self._outgoing = asyncio.Queue(MAX_UNANSWERED)
        self._writer = asyncio.create_task(self._write(self._outgoing, to_child_write), name=f"{self.name}-out")
        asyncio.get_running_loop().add_reader(from_child_read.fileno(), self._on_answer)
        log.info("child process started", extra={"fields": {"child": self.name, "pid": process.pid}})

    async def _write(self, outgoing: asyncio.Queue[_Message], connection: Connection) -> None:
        """Write one child's messages in order (pickled in a thread: a large batch must not stall the loop)."""
        try:
            while True:
                message = await outgoing.get()
                await asyncio.to_thread(_send_pickled, connection, message)
        except (OSError, EOFError):
            self._lost()
        finally:
            connection.close()

    def _on_answer(self) -> None:
        connection = self._from_child
        assert connection is not None
        try:
            while connection.poll():
                request, error, result, report = connection.recv()
                self.on_report(report)
                done = self._pending.pop(request)
                if done.done():  # its caller was cancelled meanwhile
                    continue
                if error is not None:
                    done.set_exception(ChildError(error))
                else:
                    done.set_result(result)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        """The child exited unasked: fail what it held; the next call starts a new one. Its exit is waited
        for (and logged with its code) in a thread: the event loop never waits for a process."""
        process = self._process
        if process is None:
            return
        self._forget()
        unanswered = len(self._pending)
        if self._closed and not unanswered:
            return  # it answered Stop and exited, as asked
        self.restarts += 1
        for done in self._pending.values():
            if not done.done():
                done.set_exception(ChildLostError(f"{self.name} (pid {process.pid}) exited before it answered"))
        self._pending.clear()

        what = "before it stopped" if self._closed else "; the next message starts a new one"

        def report(_: object) -> None:
            log.error(
                f"child process exited{what}",
                extra={"fields": {"child": self.name, "exitcode": process.exitcode, "unanswered": unanswered}},
            )

        asyncio.ensure_future(asyncio.to_thread(process.join, 5)).add_done_callback(report)

    def _forget(self) -> None:
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()  # its finally closes the write end: the child sees EOF
        self._writer = None
        if self._from_child is not None:
            asyncio.get_running_loop().remove_reader(self._from_child.fileno())
            self._from_child.close()
        self._process = self._from_child = self._to_child = None

    def _end_at_exit(self) -> None:
        """At interpreter exit without :meth:`close`: close our end (the child ends on EOF), then wait."""
        process = self._process
        if process is None:
            return
        for connection in (self._to_child, self._from_child):
            if connection is not None:
                connection.close()
        process.join(10)
        if process.is_alive():
            process.kill()


def _send_pickled(connection: Connection, message: _Message) -> None:
    """Send ``message`` as three or more pipe messages: how many buffers follow, the pickle, the buffers.

    Large arrays (numpy's) travel out of band, as buffers of their own: copied once into the pipe instead
    of into the pickle first (which is also, oddly, slow for the strings pickled after them)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    connection.send_bytes(len(buffers).to_bytes(4, "little"))
    connection.send_bytes(data)
    for buffer in buffers:
        connection.send_bytes(buffer.raw())


def _receive_pickled(connection: Connection) -> _Message:
    """A message :func:`_send_pickled` sent (its arrays are read-only: they share the received bytes)."""
    count = int.from_bytes(_receive_bytes(connection), "little")
    data = _receive_bytes(connection)
    buffers = [memoryview(_receive_bytes(connection)).toreadonly() for _ in range(count)]
    return pickle.loads(data, buffers=buffers)  # type: ignore[no-any-return]


def _receive_bytes(connection: Connection) -> bytearray:
    """What one ``connection.send_bytes`` sent, read straight into one buffer of its size.

    ``Connection.recv_bytes`` reads a pipe a chunk at a time into a ``BytesIO`` and copies it out: a piece of
    24 MiB cost the receiving process 44 ms of CPU that way, 9 ms this way (with :func:`_widen`'s pipes).
    The framing is multiprocessing's: a signed 4-byte big-endian length, or -1 and an 8-byte one."""
    (size,) = struct.unpack("!i", _read_exactly(connection.fileno(), 4))
    if size == -1:
        (size,) = struct.unpack("!Q", _read_exactly(connection.fileno(), 8))
    return _read_exactly(connection.fileno(), size)


def _read_exactly(fd: int, size: int) -> bytearray:
    """``size`` bytes from ``fd``; EOFError when it ends first."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        read = os.readv(fd, [view[got:]])
        if not read:
            raise EOFError("the pipe closed" + (" inside a message" if got else ""))
        got += read
    return buffer


def _widen(connection: Connection) -> None:
    """Give the pipe of ``connection`` a capacity of :data:`PIPE_BYTES` (Linux; where the system refuses,
    the pipe keeps its own): a batch then crosses in 16 times fewer writes and reads."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


# --- the child -------------------------------------------------------------------------------------------


def serve(
    factory: Callable[[Settings], ChildHandler], settings: Settings, inbox: Connection, outbox: Connection
) -> None:
    """A child's main: handle messages until the parent asks it to stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    configure_logging(settings.log_level, settings.log_format)
    collect_less_often()
    keep_freed_memory()
    asyncio.run(_serve(factory, settings, inbox, outbox))


async def _serve(
    factory: Callable[[Settings], ChildHandler], settings: Settings, inbox: Connection, outbox: Connection
) -> None:
    handler = factory(settings)
    loop = asyncio.get_running_loop()
    lanes: dict[str, asyncio.Queue[_Message]] = {}
    workers: list[asyncio.Task[None]] = []
    later: set[asyncio.Future[None]] = set()  # answers that wait for a handler's pending work
    ended = asyncio.Event()
    stop_request: list[int] = []

    def answer(request: int, error: str | None, result: Any) -> None:
        try:
            outbox.send((request, error, result, handler.report()))
        except OSError:
            ended.set()  # the parent went away

    async def settle(kind: str, number: int, work: Awaitable[Any]) -> None:
        error, result = None, None
        try:
            result = await work
        except Exception as exc:
            log.exception("child failed on a message", extra={"fields": {"message": kind}})
            error = f"{type(exc).__name__}: {exc}"
        if isinstance(result, AnswerLater):
            pending = asyncio.ensure_future(settle(kind, number, result.pending))
            later.add(pending)
            pending.add_done_callback(later.discard)
            return
        answer(number, error, result)

    async def run_lane(queue: asyncio.Queue[_Message]) -> None:
        while True:
            _, number, request = await queue.get()
            await settle(type(request).__name__, number, handler.handle(request))
            queue.task_done()

    def dispatch(message: _Message | None) -> None:
        if message is None:  # the parent's end closed
            ended.set()
        elif isinstance(message[2], Stop):
            stop_request.append(message[1])
            ended.set()
        else:
            if message[0] not in lanes:
                lanes[message[0]] = asyncio.Queue()
                workers.append(asyncio.create_task(run_lane(lanes[message[0]])))
            lanes[message[0]].put_nowait(message)

    def receive() -> None:  # a thread: the parent's writes never wait for a message to be handled
        while True:
            try:
                message = _receive_pickled(inbox)
            except (EOFError, OSError):
                loop.call_soon_threadsafe(dispatch, None)
                return
            loop.call_soon_threadsafe(dispatch, message)

    threading.Thread(target=receive, name="driftloop-child-inbox", daemon=True).start()
    await ended.wait()
    if stop_request:  # asked to stop: finish what was sent first
        for queue in lanes.values():
            await queue.join()
        while later:
            await asyncio.wait(set(later))
    for worker in [*workers, *later]:
        worker.cancel()
    try:
        await handler.close()
    finally:
        if stop_request:
            answer(stop_request[0], None, None)
