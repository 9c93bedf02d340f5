"""Which run the live view shows, from the run control's commands on <INST>_runInfo: a pl72
of a DAE run (its run name is the run number, digits only) starts a new one, the 6s4t of
that job sets its stop. Pure: messages in, decisions out.

Run control puts the run's title and the DAE's time channels (TCB) in the pl72's metadata
JSON: `{"title": str, ..., "tcb": {"tof_min_ns": float, "tof_max_ns": float, "channels": int,
"logarithmic": bool}}`, so the live view bins each run as the DAE was set for it, and the
pl72's `detector_spectrum_map`, which the DAE's spectra follow (liveview.spectrum_map checks
it: a malformed map never stops the run being followed), and its `nexus_structure`, whose
isis_histogram config numbers the beam monitors' spectra (liveview.monitor_spectra)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.run_metadata import parse_metadata, time_channels
from datastream.schemas import schema_id
from datastream.time_channels import TimeChannels

NS_PER_MS = 1_000_000
# a run's start and stop are ns in an int64 everywhere past here (numpy, Kafka's offsets for
# times): a later time is a malformed command, not a run
MAX_TIME_MS = (2**63 - 1) // NS_PER_MS


@dataclass(frozen=True)
class RunStarted:
    job_id: str
    run_name: str
    start_ns: int
    stop_ns: int | None
    title: str = ""
    channels: TimeChannels | None = None  # the DAE's TCB for the run, when run control says
    # the pl72's detector_spectrum_map as sent, unchecked (None: an older run start)
    spectrum_map: Any = field(default=None, compare=False)
    # the pl72's nexus_structure as sent, unchecked: its isis_histogram config numbers the
    # monitors' spectra (liveview.monitor_spectra reads it once the run is followed)
    nexus_structure: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RunStopped:
    job_id: str
    stop_ns: int


def decide(payload: bytes, current_job: str) -> RunStarted | RunStopped | None:
    """What a runInfo message means for the live view (None: nothing). Raises on a
    malformed start or stop (the caller counts and skips it)."""
    sid = schema_id(payload)
    if sid == "pl72":
        start = deserialise_pl72(payload)
        # a write job, not a DAE run (a calibration file); ASCII: "٣" is a digit too
        if not (start.run_name.isascii() and start.run_name.isdigit()):
            return None
        _check_time("start", start.start_time)
        if start.stop_time:
            _check_time("stop", start.stop_time)
        return RunStarted(start.job_id, start.run_name, start.start_time * NS_PER_MS,
                          start.stop_time * NS_PER_MS if start.stop_time else None,
                          _title(start.metadata), _channels(start.metadata),
                          start.detector_spectrum_map, start.nexus_structure)
    if sid == "6s4t":
        stop = deserialise_6s4t(payload)
        if stop.job_id != current_job or not stop.stop_time:
            return None
        _check_time("stop", stop.stop_time)
        return RunStopped(stop.job_id, stop.stop_time * NS_PER_MS)
    return None


def _check_time(name: str, ms: int) -> None:
    if not 0 <= ms <= MAX_TIME_MS:
        raise ValueError(f"a run {name} time of {ms} ms is past 2262")


def _title(metadata: str | None) -> str:
    """The run's title from the pl72's metadata JSON (run control puts it there)."""
    title = parse_metadata(metadata).get("title", "")
    return title if isinstance(title, str) else ""


def _channels(metadata: str | None) -> TimeChannels | None:
    """The run's time channels; None if absent or malformed: the run is still followed,
    binned with the channels the live view has."""
    return time_channels(parse_metadata(metadata))
