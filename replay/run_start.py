"""The replayed run's pl72 and 6s4t, as run control makes them (ioc.run_control.begin /
_deliver_stop): the template's nexus_structure with the file's geometry and logs, the
metadata JSON (title, users, rb_number, tcb, periods), the detector-spectrum map."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.run_window import ABORT_PREFIX
from datastream.streams import LogStream, Stream
from datastream.time_channels import TimeChannels
from datastream.topics import InstrumentTopics
from ioc.nexus_template import RunMetadata, nexus_structure
from replay.logs import RUN_LOG, LogSeries
from replay.run_file import RunFile


@dataclass(frozen=True)
class RunIdentity:
    instrument: str
    run_number: int
    job_id: str

    @property
    def filename(self) -> str:
        return f"{self.instrument}{self.run_number:08d}.nxs"  # run control's names

    @property
    def run_name(self) -> str:
        return f"{self.run_number:08d}"


def log_streams(logs: list[LogSeries], topics: InstrumentTopics
                ) -> tuple[list[LogStream], list[LogStream]]:
    """(sample-environment logs, run logs) as the template takes them; each log's name is
    its f144 source."""
    se: list[LogStream] = []
    run: list[LogStream] = []
    for series in logs:
        topic = topics.name(series.topic_suffix)
        stream = LogStream(Stream(series.name, "ca", "f144", topic), series.name,
                           series.units, periodic=False, dtype=series.dtype_name,
                           array_size=series.array_size)
        (run if series.topic_suffix == RUN_LOG else se).append(stream)
    return se, run


def structure(run: RunFile, identity: RunIdentity, topics: InstrumentTopics,
              events_source: str) -> dict[str, Any]:
    se, run_log = log_streams(run.logs, topics)
    doc = nexus_structure(RunMetadata(identity.instrument, identity.run_number, run.title,
                                      run.users, run.rb_number),
                          topics.events, events_source, se, run_log, run.geometry)
    # event monitors the geometry does not place still get their events written
    placed = {m.name for m in run.geometry.monitors} if run.geometry else set()
    entry = doc["children"][0]["children"]
    for monitor in run.monitors:
        if monitor.source not in placed:
            entry.append({"type": "group", "name": monitor.source,
                          "attributes": [{"name": "NX_class", "values": "NXmonitor"}],
                          "children": [{"module": "ev44", "config": {
                              "topic": topics.events, "source": monitor.source}}]})
    return doc


def run_start(run: RunFile, identity: RunIdentity, topics: InstrumentTopics,
              events_source: str, start_ms: int, tcb: TimeChannels, broker: str) -> bytes:
    spectra = run.spectrum_map()
    spectrum_map = (DetectorSpectrumMap(spectra[0], spectra[1], len(spectra[1]))
                    if spectra is not None else None)
    metadata = {"title": run.title, "users": list(run.users), "rb_number": run.rb_number,
                "tcb": {"tof_min_ns": tcb.tof_min_ns, "tof_max_ns": tcb.tof_max_ns,
                        "channels": tcb.channels, "logarithmic": tcb.logarithmic},
                "periods": run.periods(), "replayed_from": str(run.path)}
    return serialise_pl72(
        job_id=identity.job_id, filename=identity.filename, start_time=start_ms,
        run_name=identity.run_name,
        nexus_structure=json.dumps(structure(run, identity, topics, events_source)),
        instrument_name=identity.instrument, broker=broker, metadata=json.dumps(metadata),
        control_topic=topics.run_info, detector_spectrum_map=spectrum_map)


def run_stop(identity: RunIdentity, command_id: str, stop_ms: int, abort: bool = False
             ) -> bytes:
    """An abort's command id carries ABORT_PREFIX: the writer then discards the file."""
    return serialise_6s4t(job_id=identity.job_id, run_name=identity.run_name,
                          command_id=(ABORT_PREFIX if abort else "") + command_id,
                          stop_time=stop_ms)
