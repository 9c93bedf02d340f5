"""The nexus_structure (kafka-to-nexus JSON syntax) of an ISIS-layout run file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def _logs(logs: list[LogStream]) -> list[dict[str, Any]]:
    return [
        _group(log.name, "NXlog", [{
            "module": log.stream.schema,
            "config": {"topic": log.stream.topic, "source": log.stream.channel,
                       "dtype": log.dtype,
                       **({"array_size": log.array_size} if log.array_size else {}),
                       **({"value_units": log.units} if log.units else {})},
        }])
        for log in logs
    ]


def nexus_structure(meta: RunMetadata, events_topic: str, events_source: str,
                    logs: list[LogStream], run_log: list[LogStream] = ()) -> dict[str, Any]:
    """`logs` go to selog (sample environment), `run_log` (DAE counters) to runlog."""
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
        _group("instrument", "NXinstrument", [_dataset("name", meta.instrument)]),
        _group("detector_1_events", "NXevent_data", [
            {"module": "ev44", "config": {"topic": events_topic, "source": events_source}},
        ]),
        _group("selog", "NXcollection", _logs(logs)),
        *([_group("runlog", "NXcollection", _logs(list(run_log)))] if run_log else []),
        *users,
    ])
    return {"children": [entry]}
