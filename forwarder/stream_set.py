"""Which streams are forwarded, by who asked for them: the config file, the config topic, the
IBEX block list and the DAE run log each own their own set. A stream is forwarded while any
owner holds it, once, so two owners naming the same PV never double its messages."""

from __future__ import annotations

import threading

from datastream.streams import Stream


class StreamSet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: dict[str, dict[Stream, bool]] = {}

    def set(self, owner: str, streams: dict[Stream, bool]) -> bool:
        """Replace what `owner` holds (stream -> periodic); True if that changed anything."""
        with self._lock:
            before = self._owned.get(owner, {})
            self._owned[owner] = dict(streams)
            return before != streams

    def owned(self, owner: str) -> dict[Stream, bool]:
        with self._lock:
            return dict(self._owned.get(owner, {}))

    def merged(self) -> dict[Stream, bool]:
        """Every stream once; periodic if any owner wants it periodic."""
        result: dict[Stream, bool] = {}
        with self._lock:
            for streams in self._owned.values():
                for stream, periodic in streams.items():
                    result[stream] = result.get(stream, False) or periodic
        return result
