"""Prompt delivery: a delivery that never waits skips the race; one that waits races as Faust's did."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from mode import Service

from driftloop.streams.prompt_delivery import deliver_first


async def suspended(event: asyncio.Event) -> None:
    await event.wait()


def test_a_delivery_that_does_not_wait_needs_no_race() -> None:
    async def main() -> None:
        delivered: list[int] = []

        async def deliver() -> str:
            delivered.append(1)
            return "ok"

        async def race(*coros: object) -> object:
            raise AssertionError("raced")

        other = suspended(asyncio.Event())
        result = await deliver_first(deliver(), other, race)
        assert result.results == ["ok"] and not result.stopped and delivered == [1]
        assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED  # closed, not left unawaited

    asyncio.run(main())


def test_a_delivery_that_waits_races_and_finishes_once() -> None:
    async def main() -> None:
        service = Service()
        room = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def deliver() -> str:
            steps.append("before")
            value = await room  # a full buffer
            steps.append(f"after {value}")
            return "delivered"

        asyncio.get_running_loop().call_later(0.05, room.set_result, "room")
        result = await deliver_first(deliver(), suspended(asyncio.Event()), service.wait_first)
        assert result.results == ["delivered"] and steps == ["before", "after room"]

    asyncio.run(main())


def test_a_suspended_flow_interrupts_a_waiting_delivery() -> None:
    async def main() -> None:
        service = Service()
        flow_suspended = asyncio.Event()
        steps: list[str] = []

        async def deliver() -> None:
            try:
                await asyncio.Event().wait()  # a buffer that never gets room
                steps.append("delivered")
            except asyncio.CancelledError:  # cancelled as a task is, not merely closed
                steps.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.05, flow_suspended.set)
        other = suspended(flow_suspended)
        result = await deliver_first(deliver(), other, service.wait_first)
        await asyncio.sleep(0)  # the losing delivery's cancellation runs
        assert result.done == [other] and steps == ["cancelled"]

    asyncio.run(main())


@pytest.mark.parametrize("waits", [False, True])
def test_a_failing_delivery_raises(waits: bool) -> None:
    async def main() -> None:
        service = Service()

        async def deliver() -> None:
            if waits:
                await asyncio.sleep(0.01)
            raise ValueError("no such topic")

        with pytest.raises(ValueError, match="no such topic"):
            await deliver_first(deliver(), suspended(asyncio.Event()), service.wait_first)

    asyncio.run(main())
