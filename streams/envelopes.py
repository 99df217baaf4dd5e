"""Envelopes: a producer's events batched into ``{"events": [...]}`` messages, one open envelope per (topic,
model), sent when it holds ``max_events`` or ``max_bytes``, or has been open ``linger_s`` (a thread of its own
sends those).

>>> sent = []
>>> envelopes = EnvelopeBuffer(lambda topic, model, value, ids: sent.append((value, ids)), max_events=2,
...                            max_bytes=1 << 20, linger_s=None)
>>> for i in range(3):
...     envelopes.add("predictions", "m", b'{"i":%d}' % i, f"e{i}")
>>> sent
[(b'{"events":[{"i":0},{"i":1}]}', ('e0', 'e1'))]
>>> envelopes.flush(); sent[-1]
(b'{"events":[{"i":2}]}', ('e2',))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Sends one envelope: (topic, model, the message's value, the ids of its events).
SendEnvelope = Callable[[str, str, bytes, tuple[str, ...]], None]


@dataclass
class _Envelope:
    parts: list[bytes] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    size: int = 0
    opened: float = field(default_factory=time.monotonic)


class EnvelopeBuffer:
    """The open envelopes; ``send`` is called with each one that is full, lingered, or flushed."""

    def __init__(
        self,
        send: SendEnvelope,
        *,
        max_events: int,
        max_bytes: int,
        linger_s: float | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._send = send
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._on_error = on_error
        self._open: dict[tuple[str, str], _Envelope] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if linger_s is not None:
            threading.Thread(target=self._linger_loop, name="driftloop-producer-linger", daemon=True).start()

    def add(self, topic: str, model: str, event: bytes, event_id: str) -> None:
        with self._lock:
            envelope = self._open.setdefault((topic, model), _Envelope())
            envelope.parts.append(event)
            envelope.event_ids.append(event_id)
            envelope.size += len(event) + 1
            if len(envelope.parts) >= self.max_events or envelope.size >= self.max_bytes:
                self._send_one((topic, model))

    def flush(self) -> None:
        """Send every open envelope."""
        with self._lock:
            for key in list(self._open):
                self._send_one(key)

    def close(self) -> None:
        """Stop the linger thread (open envelopes stay: :meth:`flush` first)."""
        self._closed.set()

    def _send_one(self, key: tuple[str, str]) -> None:
        envelope = self._open.pop(key, None)
        if envelope and envelope.parts:
            value = b'{"events":[' + b",".join(envelope.parts) + b"]}"
            self._send(key[0], key[1], value, tuple(envelope.event_ids))

    def _linger_loop(self) -> None:
        assert self.linger_s is not None
        while not self._closed.wait(self.linger_s / 2):
            now = time.monotonic()
            with self._lock:
                for key in [k for k, e in self._open.items() if now - e.opened >= self.linger_s]:
                    try:
                        self._send_one(key)
                    except Exception as exc:  # kafka-python refused it at once: reported as a failed delivery
                        if self._on_error is None:
                            raise
                        self._on_error(exc)
