"""nexus_structure JSON (kafka-to-nexus syntax) -> HDF5 groups, static datasets and links,
plus the list of stream modules that will fill the file."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from filewriter.modules.base import DTYPES as _DTYPES

log = logging.getLogger(__name__)

_GROUP_KEYS = {"type", "name", "children", "attributes"}
_MODULE_KEYS = {"module", "config", "attributes"}


class StructureError(ValueError):
    """The nexus_structure cannot be built (the job cannot start)."""


@dataclass(frozen=True)
class StreamSpec:
    group_path: str
    module: str
    topic: str
    source: str
    config: dict[str, Any]


@dataclass(frozen=True)
class MetadataSpec:
    group_path: str
    name: str  # start_time or end_time


@dataclass
class Plan:
    streams: list[StreamSpec] = field(default_factory=list)
    metadata: list[MetadataSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _convert(values: Any, dtype: str | None) -> Any:
    if dtype is not None and dtype not in _DTYPES:
        raise StructureError(f"unknown dtype {dtype!r}")
    np_dtype = _DTYPES.get(dtype) if dtype else None
    if isinstance(values, str) or (dtype in ("string", "str")):
        if isinstance(values, list):
            return np.array([str(v) for v in values], dtype=h5py.string_dtype())
        return str(values)
    if np_dtype:
        return np.asarray(values, dtype=np_dtype)
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        return arr.astype(h5py.string_dtype())
    return arr


def _write_attributes(obj: h5py.HLObject, attributes: Any, where: str) -> None:
    if attributes is None:
        return
    if isinstance(attributes, dict):
        items = [{"name": k, "values": v} for k, v in attributes.items()]
    elif isinstance(attributes, list):
        items = attributes
    else:
        raise StructureError(f"{where}: attributes must be a list or an object")
    for item in items:
        if not isinstance(item, dict) or "name" not in item or "values" not in item:
            raise StructureError(f"{where}: an attribute needs name and values")
        obj.attrs[item["name"]] = _convert(item["values"], item.get("dtype"))


def build(parent: h5py.Group, structure: dict[str, Any], known_modules: set[str]) -> Plan:
    """Create everything static in the structure under parent; return the stream plan."""
    plan = Plan()
    _write_attributes(parent, structure.get("attributes"), "/")
    unknown = set(structure) - {"children", "attributes"}
    if unknown:
        plan.warnings.append(f"/: unknown keys {sorted(unknown)} ignored")
    links: list[tuple[h5py.Group, str, str]] = []
    for child in structure.get("children", []):
        _build_node(parent, child, plan, known_modules, links)
    for group, name, target in links:
        if target not in parent.file:
            raise StructureError(f"link {group.name}/{name} -> {target}: no such object")
        group[name] = h5py.SoftLink(target)
    return plan


def _build_node(parent: h5py.Group, node: Any, plan: Plan, known: set[str],
                links: list[tuple[h5py.Group, str, str]]) -> None:
    where = parent.name
    if not isinstance(node, dict):
        raise StructureError(f"{where}: a child must be an object, not {type(node).__name__}")
    if "module" in node:
        _build_module(parent, node, plan, known, links)
        return
    kind = node.get("type")
    if kind != "group":
        raise StructureError(
            f"{where}: child has neither a module nor type 'group': {node!r}"[:300])
    name = node.get("name")
    if not name or "/" in name:
        raise StructureError(f"{where}: group without a valid name")
    unknown = set(node) - _GROUP_KEYS
    if unknown:
        plan.warnings.append(f"{where}/{name}: unknown keys {sorted(unknown)} ignored")
    group = parent.require_group(name)
    _write_attributes(group, node.get("attributes"), group.name)
    for child in node.get("children", []):
        _build_node(group, child, plan, known, links)


def _build_module(parent: h5py.Group, node: dict[str, Any], plan: Plan, known: set[str],
                  links: list[tuple[h5py.Group, str, str]]) -> None:
    module = node["module"]
    config = node.get("config") or {}
    where = parent.name
    unknown = set(node) - _MODULE_KEYS
    if unknown:
        plan.warnings.append(f"{where}: module {module}: unknown keys {sorted(unknown)} ignored")
    if module == "dataset":
        name = config.get("name")
        if not name or "values" not in config:
            raise StructureError(f"{where}: dataset module needs name and values")
        dset = parent.create_dataset(name, data=_convert(config["values"], config.get("dtype")))
        _write_attributes(dset, node.get("attributes"), dset.name)
    elif module == "link":
        if not config.get("name") or not config.get("source"):
            raise StructureError(f"{where}: link module needs name and source")
        links.append((parent, config["name"], config["source"]))
    elif module == "mdat":
        # {"name": "start_time"}, or the older {"items": ["start_time", "end_time"]} that
        # kafka-to-nexus templates in use still send
        names = config.get("items") if "items" in config else [config.get("name")]
        if not isinstance(names, list) or not names or any(
                n not in ("start_time", "end_time") for n in names):
            raise StructureError(f"{where}: mdat names must be start_time or end_time")
        plan.metadata.extend(MetadataSpec(where, name) for name in dict.fromkeys(names))
    elif module in known:
        topic, source = config.get("topic"), config.get("source")
        if not topic or not source:
            raise StructureError(f"{where}: {module} module needs topic and source")
        parent.attrs["topic"] = topic
        parent.attrs["source"] = source
        parent.attrs["writer_module"] = module
        _write_attributes(parent, node.get("attributes"), where)
        plan.streams.append(StreamSpec(where, module, topic, source, dict(config)))
    else:
        raise StructureError(f"{where}: unknown writer module {module!r}")
