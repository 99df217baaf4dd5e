"""The decoder judges generated hostile messages as intended (hypothesis; shrinks a failure to its core)."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings

from driftloop.streams.decode import Incoming, decode_predictions
from tests.reliability.hostile import Message, hostile_message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_message("fuzz", itertools.count()))
def test_every_generated_message_is_decoded_or_dead_lettered_as_intended(message: Message) -> None:
    decoded = decode_predictions([Incoming(message.value, "predictions", 0, 7)])
    if message.good:
        assert not decoded.dead, (message.kind, [d.reason for d in decoded.dead])
        assert sorted(decoded.rows.columns["request_id"]) == sorted(message.request_ids)
    else:
        assert len(decoded.rows) == 0, message.kind
        assert decoded.dead and all(d.reason for d in decoded.dead), message.kind
        # a whole message keeps its original bytes; an envelope's bad event keeps that event's
        assert all(d.original == message.value[: len(d.original)] for d in decoded.dead if d.index == -1)
