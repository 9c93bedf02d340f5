"""Recognising an event message sent again (a producer's retry, a DAE's resend): the same
source's message id with the same first pulse time. The file writer and the live view drop
it alike, so both count the same events."""

from __future__ import annotations

import collections

REMEMBERED_MESSAGES = 100_000


class RecentMessages:
    def __init__(self, capacity: int = REMEMBERED_MESSAGES) -> None:
        self._capacity = capacity
        self._seen: set[tuple[int, int]] = set()
        self._order: collections.deque[tuple[int, int]] = collections.deque()

    def repeated(self, message_id: int, first_pulse_ns: int) -> bool:
        """True if this message was seen already; otherwise remember it."""
        key = (message_id, first_pulse_ns)
        if key in self._seen:
            return True
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self._capacity:
            self._seen.discard(self._order.popleft())
        return False
