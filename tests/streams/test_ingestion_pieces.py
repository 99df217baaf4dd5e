"""The worker hands a batch to the ingestion process in pieces of at most ``batch_max_bytes``, a few at a time."""

from __future__ import annotations

import asyncio

import pytest

from driftloop.infra.settings import Settings
from driftloop.streams.child_process import ChildProcess
from driftloop.streams.decode import Incoming
from driftloop.streams.ingestion_process import PIECES_IN_FLIGHT, IngestionProcess, WriteMessages


class Child:
    """Stands in for the ingestion child's answers (what is under test is the parent's side of the pipe)."""

    def __init__(self, fail_piece: int | None = None) -> None:
        self.fail_piece = fail_piece
        self.pieces: list[list[int]] = []
        self.unanswered = 0
        self.most_unanswered = 0

    async def call(self, lane: str, request: WriteMessages) -> None:
        values, _topics, _partitions, offsets = request.packed
        assert lane == request.table == "predictions" and sum(map(len, values)) <= 65536
        self.pieces.append(offsets)
        self.unanswered += 1
        self.most_unanswered = max(self.most_unanswered, self.unanswered)
        await asyncio.sleep(0.01)
        self.unanswered -= 1
        if len(self.pieces) - 1 == self.fail_piece:
            raise RuntimeError("this piece failed")


def ingestion_with(child: Child) -> IngestionProcess:
    process = IngestionProcess(Settings.from_env({"DRIFTLOOP_BATCH_MAX_BYTES": "65536"}))
    process._call = child.call  # type: ignore[method-assign]
    return process


MESSAGES = [Incoming(b"x" * 20_000, "p", 0, offset) for offset in range(40)]  # three a piece


def test_a_batch_goes_over_in_pieces_in_order_with_a_few_unanswered_at_most() -> None:
    child = Child()
    asyncio.run(ingestion_with(child).on_prediction_messages(MESSAGES))
    assert [offset for piece in child.pieces for offset in piece] == list(range(40))
    assert max(map(len, child.pieces)) == 3 and child.most_unanswered == PIECES_IN_FLIGHT


def test_a_failed_piece_fails_the_batch_once_every_piece_is_answered() -> None:
    child = Child(fail_piece=2)
    with pytest.raises(RuntimeError, match="this piece failed"):
        asyncio.run(ingestion_with(child).on_prediction_messages(MESSAGES))
    assert len(child.pieces) == 14 and child.unanswered == 0


def test_submitting_returns_once_handed_on_and_the_next_batch_follows_it() -> None:
    """The worker hands a batch on and takes the next while the child writes it: submitting returns once the
    last piece is sent, before its answer, and the next batch's pieces go after every piece of the one before."""

    async def run() -> tuple[Child, bool]:
        child = Child()
        process = ingestion_with(child)
        first = await process.submit_predictions(MESSAGES[:20])
        answered_when_handed_on = first.done()
        second = await process.submit_predictions(MESSAGES[20:])
        await asyncio.gather(first, second)
        return child, answered_when_handed_on

    child, answered_when_handed_on = asyncio.run(run())
    assert not answered_when_handed_on
    assert [offset for piece in child.pieces for offset in piece] == list(range(40))
    assert child.most_unanswered == PIECES_IN_FLIGHT  # the two batches share the child's room


def test_closing_an_ingestion_that_never_started_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ingestion process, no detector state to hand over: closing (or a revocation) asks no child for it,
    and nothing is taken once closed (a timer firing while the worker stops)."""
    started: list[str] = []

    def start(child: ChildProcess) -> None:
        started.append(child.name)
        raise RuntimeError(f"{child.name} started")

    monkeypatch.setattr(ChildProcess, "_start", start)

    async def run() -> IngestionProcess:
        process = IngestionProcess(Settings())
        await process.hand_over_detectors()
        await process.close()
        await process.sweep(None)
        await process.save_detectors()
        return process

    process = asyncio.run(run())
    assert started == [] and process._child.closed and process.restarts == 0
