"""streams.child_process: lanes answered in order, errors passed back, a lost child replaced, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from driftloop.infra.settings import Settings
from driftloop.streams import child_process
from driftloop.streams.child_process import (
    AnswerLater,
    ChildBusyError,
    ChildClosedError,
    ChildError,
    ChildLostError,
    ChildProcess,
    Request,
    UnknownRequestError,
)


@dataclass(frozen=True, slots=True)
class Put(Request):
    value: Any


@dataclass(frozen=True, slots=True)
class Fail(Request):
    text: str


@dataclass(frozen=True, slots=True)
class Sleep(Request):
    seconds: float


@dataclass(frozen=True, slots=True)
class Pid(Request):
    pass


@dataclass(frozen=True, slots=True)
class Later(Request):
    outcome: float | str  # seconds to wait and answer, or an error's text to raise


@dataclass(frozen=True, slots=True)
class Getenv(Request):
    name: str


@dataclass(frozen=True, slots=True)
class Writable(Request):
    array: Any


@dataclass(frozen=True, slots=True)
class Nobody(Request):
    """A request EchoHandler has no branch for."""


class EchoHandler:
    """Answers Put with ("put", its value, the values seen so far); Fail raises, Sleep waits, Pid answers the
    child's pid, Getenv its environment's value, Writable whether its array may be written; Later answers its
    seconds (or raises its text) after that many seconds, and lets the lane go on."""

    def __init__(self, settings: Settings) -> None:
        self.seen: list[Any] = []

    async def handle(self, request: Request) -> Any:
        match request:
            case Put(value):
                self.seen.append(value)
                return "put", value, len(self.seen)
            case Fail(text):
                raise ValueError(f"no good: {text}")
            case Sleep(seconds):
                await asyncio.sleep(seconds)
            case Pid():
                return os.getpid()
            case Getenv(name):
                return os.environ.get(name)
            case Writable(array):
                return bool(array.flags.writeable)
            case Later(outcome):
                return AnswerLater(self._after(outcome))
            case _:
                raise UnknownRequestError(self, request)
        return None

    async def _after(self, seconds: float | str) -> float:
        if isinstance(seconds, str):
            await asyncio.sleep(0.2)
            raise ValueError(seconds)
        await asyncio.sleep(seconds)
        return seconds

    def report(self) -> dict[str, int]:
        return {"seen": len(self.seen)}

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def echo_child(on_report: Callable[[Any], None] = lambda report: None) -> AsyncIterator[ChildProcess]:
    """A child process running :class:`EchoHandler`, closed at the end."""
    child = ChildProcess("echo", EchoHandler, Settings(), on_report)
    try:
        yield child
    finally:
        await child.close()


def test_a_lane_is_answered_in_order_and_errors_come_back_as_child_errors() -> None:
    async def run() -> None:
        reports: list[dict[str, int]] = []
        async with echo_child(reports.append) as child:
            answers = [child.call("a", Put(i)) for i in range(50)]
            failed = child.call("a", Fail("x"))
            later = child.call("a", Put(50))
            assert await asyncio.gather(*answers) == [("put", i, i + 1) for i in range(50)]
            with pytest.raises(ChildError, match="ValueError: no good: x"):
                await failed
            assert await later == ("put", 50, 51)  # the child went on after the error
            assert reports[-1] == {"seen": 51}

    asyncio.run(run())


def test_lanes_do_not_wait_for_each_other() -> None:
    async def run() -> None:
        async with echo_child() as child:
            await child.call("warm", Put(0))
            slow = child.call("slow", Sleep(5.0))
            quick = await asyncio.wait_for(child.call("quick", Put(1)), 2.0)
            assert quick[1] == 1 and not slow.done()

    asyncio.run(run())


def test_a_lost_child_fails_what_it_held_and_the_next_call_starts_a_new_one() -> None:
    async def run() -> None:
        async with echo_child() as child:
            first = await child.call("a", Pid())
            held = child.call("a", Sleep(30.0))
            await asyncio.sleep(0.2)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(ChildLostError):
                await asyncio.wait_for(held, 10)
            assert child.restarts == 1
            second = await asyncio.wait_for(child.call("a", Pid()), 30)
            assert second != first

    asyncio.run(run())


def test_close_lets_the_child_finish_what_it_was_sent() -> None:
    async def run() -> None:
        child = ChildProcess("echo", EchoHandler, Settings())
        pid = await child.call("a", Pid())
        queued = [child.call("a", Sleep(0.05)) for _ in range(10)]
        await child.close()
        assert all(q.done() and not q.exception() for q in queued)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone

    asyncio.run(run())


def test_an_answer_given_later_lets_the_lane_go_on_and_comes_when_its_work_is_done() -> None:
    async def run() -> None:
        async with echo_child() as child:
            await child.call("a", Put(0))
            slow = child.call("a", Later(1.0))
            failing = child.call("a", Later("no good"))
            after = await asyncio.wait_for(child.call("a", Put(1)), 0.8)  # not held up behind the two
            assert after == ("put", 1, 2) and not slow.done()
            with pytest.raises(ChildError, match="ValueError: no good"):
                await failing
            assert await slow == 1.0

    asyncio.run(run())


def test_close_waits_for_answers_given_later() -> None:
    async def run() -> None:
        child = ChildProcess("echo", EchoHandler, Settings())
        await child.call("a", Put(0))
        pending = [child.call("a", Later(0.3)) for _ in range(3)]
        await child.close()
        assert [p.result() for p in pending] == [0.3, 0.3, 0.3]

    asyncio.run(run())


def test_a_request_the_handler_has_no_branch_for_comes_back_as_a_child_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request no branch takes is refused by name, and the child goes on; a caller that sends without
    waiting for answers is refused at ``MAX_UNANSWERED`` instead of filling memory."""

    async def run() -> None:
        async with echo_child() as child:
            with pytest.raises(ChildError, match="UnknownRequestError: EchoHandler has no branch for Nobody"):
                await child.call("a", Nobody())
            assert await child.call("a", Put(1)) == ("put", 1, 1)
            monkeypatch.setattr(child_process, "MAX_UNANSWERED", 5)
            held = [child.call("a", Sleep(0.2)) for _ in range(5)]
            with pytest.raises(ChildBusyError, match="5 messages already wait for echo"):
                child.call("a", Put(2))
            await asyncio.gather(*held)
            assert await child.call("a", Put(2)) == ("put", 2, 2)  # answered: room again

    asyncio.run(run())


def test_close_is_quiet_and_final(caplog: pytest.LogCaptureFixture) -> None:
    """A child that exits because it was asked to is no lost child (no error, no restart), and a closed
    ChildProcess refuses new messages instead of starting a child again while its owner stops."""

    async def run(held: bool) -> None:
        child = ChildProcess("echo", EchoHandler, Settings())
        pid = await child.call("a", Pid())
        closing = asyncio.ensure_future(child.close())
        if held:  # the parent busy while the child answers Stop and exits: it reads both at once
            for _ in range(20):
                await asyncio.sleep(0)  # Stop handed to the writer's thread
            time.sleep(3.0)
        await closing
        await asyncio.sleep(0.3)  # the exit's report, were it taken for a loss, is logged from a thread
        assert child.restarts == 0
        with pytest.raises(ChildClosedError, match="echo was closed"):
            child.call("a", Pid())
        assert child.pid is None  # no new child
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    with caplog.at_level("WARNING", logger="driftloop.child"):
        for held in (False, True):
            asyncio.run(run(held))
    assert not caplog.records, [record.getMessage() for record in caplog.records]


def test_a_message_crosses_the_pipe_whole_at_any_size() -> None:
    """What ``send_bytes`` sends (multiprocessing's framing) is read back byte for byte by the child's reader,
    at sizes on either side of the pipe's capacity; a pipe that closes inside a message is an EOFError."""
    read_end, write_end = multiprocessing.Pipe(duplex=False)
    child_process._widen(read_end)
    assert fcntl.fcntl(read_end.fileno(), fcntl.F_GETPIPE_SZ) == child_process.PIPE_BYTES
    rng = np.random.default_rng(3)
    sizes = [0, 1, 16_384, 16_385, child_process.PIPE_BYTES + 7, 5 * child_process.PIPE_BYTES]
    messages = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]

    def send() -> None:
        for message in messages:
            write_end.send_bytes(message)
        os.write(write_end.fileno(), (100).to_bytes(4, "big") + b"cut short")
        write_end.close()

    sender = threading.Thread(target=send)
    sender.start()
    assert [bytes(child_process._receive_bytes(read_end)) for _ in messages] == messages
    with pytest.raises(EOFError, match="inside a message"):
        child_process._receive_bytes(read_end)
    sender.join()
    with pytest.raises(EOFError):
        child_process._receive_bytes(read_end)


def test_arrays_and_messages_travel_to_the_child_as_sent() -> None:
    """A request with arrays out of band (larger than the pipe) and many small values reaches the handler
    equal to what was sent, its arrays read-only."""

    async def run() -> None:
        rng = np.random.default_rng(4)
        matrix = rng.normal(size=(300_000, 5))
        values = [rng.bytes(int(n)) for n in rng.integers(0, 400, 20_000)]
        async with echo_child() as child:
            kind, echoed, _ = await child.call("a", Put((matrix, values)))
            assert kind == "put" and echoed[1] == values
            np.testing.assert_array_equal(echoed[0], matrix)
            assert await child.call("a", Writable(matrix)) is False  # it shares the bytes read

    asyncio.run(run())


def test_a_child_multiplies_matrices_on_one_thread_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenBLAS starts with one thread in a child (the worker's processes share the cores already), unless the
    environment says how many."""

    async def threads() -> str | None:
        async with echo_child() as child:
            return await child.call("a", Getenv("OPENBLAS_NUM_THREADS"))  # type: ignore[no-any-return]

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert asyncio.run(threads()) == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert asyncio.run(threads()) == "3"
