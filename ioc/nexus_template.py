"""The nexus_structure (kafka-to-nexus JSON syntax) of an ISIS-layout run file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datastream.geometry import Bank, Geometry
from datastream.streams import LogStream


@dataclass(frozen=True)
class RunMetadata:
    instrument: str
    run_number: int
    title: str
    users: tuple[str, ...]
    rb_number: str


def _attrs(nx_class: str, **extra: str) -> list[dict[str, Any]]:
    return [{"name": "NX_class", "values": nx_class}] + [
        {"name": k, "values": v} for k, v in extra.items()
    ]


def _dataset(name: str, value: Any, dtype: str | None = None, **attrs: str) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "values": value}
    if dtype:
        config["dtype"] = dtype
    node: dict[str, Any] = {"module": "dataset", "config": config}
    if attrs:
        node["attributes"] = [{"name": k, "values": v} for k, v in attrs.items()]
    return node


def _group(name: str, nx_class: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "group", "name": name, "attributes": _attrs(nx_class), "children": children}


# how the file holds its run and SE logs: "mantid", ISIS's (IXrunlog / IXselog groups of
# NXlogs in seconds after the run start, which LoadNexusLogs loads); "kafka-to-nexus", ESS's
# (NXcollection groups of f144-module NXlogs in ns since the epoch, which Mantid skips)
MANTID = "mantid"
KAFKA_TO_NEXUS = "kafka-to-nexus"
LOG_LAYOUTS = (MANTID, KAFKA_TO_NEXUS)
# the schemas isis_log writes; another (tdct, se00) keeps its own module and layout
MANTID_LOG_SCHEMAS = ("f142", "f144")


def _log_module(log: LogStream, module: str) -> dict[str, Any]:
    return {"module": module,
            "config": {"topic": log.stream.topic, "source": log.stream.channel,
                       "dtype": log.dtype,
                       **({"array_size": log.array_size} if log.array_size else {}),
                       **({"value_units": log.units} if log.units else {})}}


def _mantid(log: LogStream) -> bool:
    return log.stream.schema in MANTID_LOG_SCHEMAS


def _logs(logs: list[LogStream], layout: str = KAFKA_TO_NEXUS) -> list[dict[str, Any]]:
    """One NXlog per log, named for it; isis_log's for the Mantid layout."""
    return [_group(log.name, "NXlog", [
        _log_module(log, "isis_log" if layout == MANTID and _mantid(log) else log.stream.schema)])
        for log in logs]


def _se_blocks(logs: list[LogStream]) -> list[dict[str, Any]]:
    """selog's children as ICP writes them, which LoadNexusLogs loads by class: an IXseblock
    per log, its values in the NXlog `value_log`."""
    return [_group(log.name, "IXseblock", [
        _group("value_log", "NXlog", [_log_module(log, "isis_log")])]) if _mantid(log)
        else _logs([log])[0] for log in logs]


def _log_groups(logs: list[LogStream], run_log: list[LogStream], layout: str
                ) -> list[dict[str, Any]]:
    """selog (sample environment) and runlog (DAE counters; only if there are any)."""
    if layout not in LOG_LAYOUTS:
        raise ValueError(f"log layout {layout!r} is not one of {LOG_LAYOUTS}")
    if layout == KAFKA_TO_NEXUS:
        return [_group("selog", "NXcollection", _logs(logs)),
                *([_group("runlog", "NXcollection", _logs(run_log))] if run_log else [])]
    return [_group("selog", "IXselog", _se_blocks(logs)),
            *([_group("runlog", "IXrunlog", _logs(run_log, MANTID))] if run_log else [])]


def _transform(name: str, kind: str, value: float, vector: list[float], units: str,
               depends_on: str) -> dict[str, Any]:
    return _dataset(name, value, "float64", transformation_type=kind, vector=vector,
                    units=units, depends_on=depends_on)


def _placed(path: str, steps: list[tuple[str, str, float, list[float], str]]
            ) -> list[dict[str, Any]]:
    """depends_on and an NXtransformations group for the chain `steps`, the first applied
    last (NeXus order): each step depends on the next, the last on the origin."""
    names = [f"{path}/transformations/{step[0]}" for step in steps] + ["."]
    return [_dataset("depends_on", names[0]),
            _group("transformations", "NXtransformations", [
                _transform(name, kind, value, vector, units, names[i + 1])
                for i, (name, kind, value, vector, units) in enumerate(steps)])]


def _bank(bank: Bank, path: str) -> dict[str, Any]:
    x, y = bank.offsets()
    return _group(bank.name, "NXdetector", [
        _dataset("detector_number", bank.ids.tolist(), "int32"),
        _dataset("x_pixel_offset", x.tolist(), "float64", units="m"),
        _dataset("y_pixel_offset", y.tolist(), "float64", units="m"),
        # out along the beam, then turned to the bank's scattering angle
        *_placed(path, [("distance", "translation", bank.distance_m, [0.0, 0.0, 1.0], "m"),
                        ("rotation", "rotation", bank.two_theta_deg, [0.0, 1.0, 0.0], "deg")]),
        # the DAE's one event stream, in the detector group as in ESS files: each bank
        # takes the events of its own detector numbers
        {"module": "link", "config": {"name": "events",
                                      "source": "/raw_data_1/detector_1_events"}},
    ])


def _geometry(geometry: Geometry | None, events_topic: str
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(in the instrument: NXsource and the banks; in the entry: NXsample and the monitors,
    each monitor with its own event stream, which the DAE sends with its name as source)."""
    if geometry is None:
        return [], []
    inst = "/raw_data_1/instrument"
    source = _group("source", "NXsource", [
        _dataset("name", "moderator"), _dataset("probe", "neutron"),
        _dataset("type", "Spallation Neutron Source"),
        *_placed(f"{inst}/source", [("position", "translation", geometry.source_distance_m,
                                     [0.0, 0.0, -1.0], "m")])])
    sample = _group("sample", "NXsample", [
        _dataset("name", "powder"),
        *_placed("/raw_data_1/sample", [("position", "translation", 0.0, [0.0, 0.0, 1.0],
                                         "m")])])
    monitors = [_group(m.name, "NXmonitor", [
        _dataset("detector_number", m.id, "int32"),
        # spectrum 0: LoadISISNexus2 passes over this event monitor (its histogram is
        # monitor_hist_<i>, which isis_histogram writes)
        _dataset("spectrum_index", [0], "int32"),
        *_placed(f"/raw_data_1/{m.name}", [("position", "translation", m.z_m,
                                            [0.0, 0.0, 1.0], "m")]),
        {"module": "ev44", "config": {"topic": events_topic, "source": m.name}},
    ]) for m in geometry.monitors]
    return [source, *[_bank(b, f"{inst}/{b.name}") for b in geometry.banks]], [sample,
                                                                                 *monitors]


def _isis_modules(events_topic: str, events_source: str, geometry: Geometry | None,
                  monitor_spectra: dict[int, int], detectors: dict[str, Any] | None
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ISIS's run-level data from the events topic's pu00 and ev44 (filewriter.modules.
    isis_frames, isis_histogram): the entry's totals and histograms, and the framelog
    group. The histogram's spectra are the pl72's detector-spectrum map; the geometry's
    pixels when there is none. A monitor's spectrum is the spectra table's (monitor_spectra,
    by detector number), else the module's default, after the pixels'. `detectors`: each
    detector's delay, L2, code, 2θ and user columns (ioc.detector_parameters), which the
    histogram's isis_vms_compat holds beside UDET."""
    stream = {"topic": events_topic, "source": events_source}
    histogram: dict[str, Any] = dict(stream)
    if detectors is not None:
        histogram["detectors"] = detectors
    if geometry is not None:
        ids = geometry.pixel_ids()
        histogram |= {"first_pixel": int(ids.min()), "pixels": int(ids.max() - ids.min() + 1),
                      "monitors": [{"source": m.name, "detector_id": m.id,
                                    "name": f"monitor_hist_{i}"}
                                   | ({"spectrum": monitor_spectra[m.id]}
                                      if m.id in monitor_spectra else {})
                                   for i, m in enumerate(geometry.monitors, start=1)]}
    in_entry = [{"module": "isis_totals", "config": dict(stream)},
                {"module": "isis_histogram", "config": histogram}]
    framelog = _group("framelog", "NXcollection", [{"module": "isis_framelog",
                                                    "config": dict(stream)}])
    return in_entry, framelog


def nexus_structure(meta: RunMetadata, events_topic: str, events_source: str,
                    logs: list[LogStream], run_log: list[LogStream] = (),
                    geometry: Geometry | None = None, log_layout: str = MANTID,
                    monitor_spectra: dict[int, int] | None = None,
                    detectors: dict[str, Any] | None = None) -> dict[str, Any]:
    """`logs` go to selog (sample environment), `run_log` (DAE counters) to runlog, laid out
    as `log_layout` says (LOG_LAYOUTS); `geometry` places the source, sample, detector banks
    and monitors; `monitor_spectra` (monitor detector number -> spectrum, the spectra
    table's) numbers the monitors' histograms; `detectors` (ioc.detector_parameters) is
    the detector table the file's isis_vms_compat holds."""
    in_instrument, in_entry = _geometry(geometry, events_topic)
    isis_modules, framelog = _isis_modules(events_topic, events_source, geometry,
                                           monitor_spectra or {}, detectors)
    # Mantid's LoadISISNexus2 cannot load a file without an NXsample
    sample = [] if geometry is not None else [_group("sample", "NXsample",
                                                     [_dataset("name", "")])]
    users = [
        _group(f"user_{i}", "NXuser", [_dataset("name", name)])
        for i, name in enumerate(meta.users, start=1)
    ]
    entry = _group("raw_data_1", "NXentry", [
        _dataset("title", meta.title),
        _dataset("run_number", meta.run_number, "int32"),
        _dataset("experiment_identifier", meta.rb_number),
        _dataset("definition", "NXtofraw"),
        _dataset("name", meta.instrument),
        {"module": "mdat", "config": {"name": "start_time"}},
        {"module": "mdat", "config": {"name": "end_time"}},
        _group("instrument", "NXinstrument", [_dataset("name", meta.instrument),
                                              *in_instrument]),
        *in_entry,
        *sample,
        _group("detector_1_events", "NXevent_data", [
            {"module": "ev44", "config": {"topic": events_topic, "source": events_source}},
            # LoadEventNexus shifts the times of flight of a bank of this name by a random
            # fraction of a channel unless told they are events already
            _dataset("event_time_offset_shift", "random"),
        ]),
        framelog,
        *isis_modules,
        *_log_groups(list(logs), list(run_log), log_layout),
        *users,
    ])
    return {"children": [entry]}
