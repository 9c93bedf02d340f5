"""What a job knows of its run beyond the nexus_structure, for the modules that write ISIS's
run-level data (frames, totals, histograms): the start, the pl72's metadata (its TCB) and
its detector-spectrum map."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from datastream.run_metadata import parse_metadata, periods, time_channels
from datastream.time_channels import TimeChannels


def iso_time(ns: int) -> str:
    """ISO 8601 in UTC to the millisecond: 29 characters, so past the 19 LoadISISNexus2 cuts,
    and a run start (whole ms from the pl72) exactly."""
    return dt.datetime.fromtimestamp(ns // 1_000_000 / 1e3, dt.UTC).isoformat(
        timespec="milliseconds")


@dataclass(frozen=True)
class RunContext:
    start_ns: int
    instrument: str = ""
    metadata: dict[str, object] = field(default_factory=dict, compare=False)
    # (spectrum numbers, detector ids), one pair per detector; None: the pl72 had none
    spectrum_map: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, start_ns: int, instrument: str, metadata: str,
           spectrum_map: tuple[np.ndarray, np.ndarray] | None) -> RunContext:
        return cls(start_ns, instrument, parse_metadata(metadata), spectrum_map)

    @property
    def channels(self) -> TimeChannels | None:
        return time_channels(self.metadata)

    @property
    def periods(self) -> int:
        """The DAE's number of periods, as run control says in the pl72 (1 if it does not):
        a period no frame came in still has its row in the file."""
        return periods(self.metadata) or 1

    @property
    def start_iso(self) -> str:
        return iso_time(self.start_ns)

    @property
    def rb_number(self) -> int:
        """The RB number as ICP's IRPB holds it; 0 when it is not a number."""
        rb = str(self.metadata.get("rb_number", "")).strip()
        return int(rb) if rb.isascii() and rb.isdigit() and len(rb) < 10 else 0
