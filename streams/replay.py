"""What a producer sends again when its broker turns out to have come back empty.

The embedded broker keeps messages in memory only, and right after a restart it even acknowledges
messages for topics it does not have yet, then drops them (measured on this Tansu build). A producer
cannot tell from an acknowledgement alone; it can tell that the cluster id changed. So the SDK keeps
what the broker acknowledged in the last ``max_age_s`` (at most ``max_bytes``) in a :class:`ReplayRing`,
and sends it all again when the id changes: events the old instance held but no worker had read yet,
and events the new instance dropped, arrive after all. Duplicates cost nothing: ClickHouse results
count each ``event_id`` once.

>>> ring = ReplayRing(max_bytes=10, max_age_s=60)
>>> for i in range(4):
...     ring.add(Sent("t", b"k", b"abcd", (f"e{i}",), at=100.0 + i))
>>> [s.event_ids for s in ring.take()]  # 10 bytes hold two 4-byte messages: the oldest went first
[('e2',), ('e3',)]
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    """One message as it was sent, and when the broker acknowledged it."""

    topic: str
    key: bytes
    value: bytes
    event_ids: tuple[str, ...]
    at: float
    attempt: int = 0  # sends before this one that the broker failed


class ReplayRing:
    """The messages acknowledged in the last ``max_age_s`` seconds, at most ``max_bytes`` of values."""

    def __init__(self, *, max_bytes: int, max_age_s: float) -> None:
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._sent: deque[Sent] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, sent: Sent) -> None:
        with self._lock:
            self._sent.append(sent)
            self._bytes += len(sent.value)
            oldest = sent.at - self.max_age_s
            while self._sent and (self._bytes > self.max_bytes or self._sent[0].at < oldest):
                self._bytes -= len(self._sent.popleft().value)

    def take(self) -> list[Sent]:
        """Everything held, oldest first; the ring is empty afterwards."""
        with self._lock:
            taken, self._sent, self._bytes = list(self._sent), deque(), 0
        return taken

    def __len__(self) -> int:
        return len(self._sent)
