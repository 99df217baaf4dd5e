"""Handing a fetched message to its stream without four asyncio tasks, when the stream's buffer has room.

Faust's consumer (faust-streaming 0.15, ``Consumer._drain_messages``) delivers every fetched message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: mode's ``wait_first`` wraps the
delivery, the flow's event and the service's ``stopped`` and ``crashed`` events in four tasks, waits for
the first, and cancels the rest. The race matters while a delivery waits (a full stream buffer, a paused
flow) and a rebalance suspends the flow; yet almost every delivery finishes without waiting at all, and
those four tasks a message were the largest part of a Faust process's time with one event a message.

:func:`deliver_first` runs the delivery until it first has to wait. Finished by then, it won the race
before anything else could (nothing else ran meanwhile): its result is returned with no task made.
Otherwise the rest of it races as before, resumed where it stopped (:class:`_Resumed`), so a rebalance
still interrupts a delivery that waits.

>>> import asyncio
>>> async def deliver() -> str:
...     return "delivered"
>>> async def never() -> None:
...     await asyncio.Event().wait()
>>> async def race(*coros):
...     raise AssertionError("a delivery that does not wait needs no race")
>>> asyncio.run(deliver_first(deliver(), never(), race)).results
['delivered']
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from mode.services import WaitResults


async def deliver_first(
    delivery: Coroutine[Any, Any, Any],
    other: Awaitable[Any],
    race: Callable[..., Awaitable[WaitResults]],
) -> WaitResults:
    """``race(delivery, other)`` (mode's ``Service.wait_first``), unless ``delivery`` finishes without waiting."""
    try:
        waiting_on = delivery.send(None)
    except StopIteration as done:
        _close(other)
        return WaitResults([delivery], [done.value], False)
    except BaseException:
        _close(other)
        raise
    return await race(_resume(delivery, waiting_on), other)


def _close(awaitable: Awaitable[Any]) -> None:
    if asyncio.iscoroutine(awaitable):
        awaitable.close()  # never started: closed, so that Python does not warn it was never awaited


async def _resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _Resumed(coroutine, waiting_on)


class _Resumed:
    """A started coroutine, awaitable again from where it stopped: it first waits on ``waiting_on`` (what it
    yielded to the event loop), then goes on, with results, exceptions and closing passed through to it as
    ``await`` passes them (PEP 380)."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting_on = self.coroutine, self.waiting_on
        while True:
            try:
                value = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coroutine.send(value)
                except StopIteration as done:
                    return done.value
