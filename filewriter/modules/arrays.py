"""Whole arrays per message -> one row each, with the message time: hs00 / hs01 histograms
(ISIS monitor histograms, dropped by kafka-to-nexus in 2024) and da00 data arrays.

Shapes and types come from the stream config, because a SWMR file takes no new dataset once
writing has begun. Like logs, the last message before the start is kept (a histogram or array
is a state) and nothing after the stop."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
from streaming_data_types.dataarray_da00 import deserialise_da00
from streaming_data_types.histogram_hs00 import deserialise_hs00
from streaming_data_types.histogram_hs01 import deserialise_hs01

from datastream.schemas import MalformedMessage, deserialised
from filewriter.modules.base import (
    DTYPES,
    MAX_CHUNK_ROWS,
    NS_EPOCH_OFFSET,
    Decoded,
    WriterModule,
    append,
    appendable,
    checked_time,
    config_int,
    row_values,
)
from filewriter.timing import LogGate, Window


def _numeric_dtype(spec: dict[str, Any], key_names: tuple[str, ...], default: str) -> np.dtype:
    name = next((spec[k] for k in key_names if spec.get(k)), default)
    if DTYPES.get(name) is None:
        raise ValueError(f"{name!r} is not a numeric dtype")
    return np.dtype(DTYPES[name])


def decode_hs00(payload: bytes) -> Decoded:
    hist = deserialised("hs00", deserialise_hs00, payload)
    return Decoded("hs00", hist["source"], hist)


def decode_hs01(payload: bytes) -> Decoded:
    hist = deserialised("hs01", deserialise_hs01, payload)
    return Decoded("hs01", hist["source"], hist)


def decode_da00(payload: bytes) -> Decoded:
    msg = deserialised("da00", deserialise_da00, payload)
    return Decoded("da00", msg.source_name, msg)


class _Rows(WriterModule):
    """Named datasets of fixed row shape plus `time`, filled one message at a time."""

    def _setup(self, shapes: dict[str, tuple[tuple[int, ...], np.dtype, str]]) -> None:
        chunk = config_int(self.config, "chunk_size", 64, 1, MAX_CHUNK_ROWS)
        self._gate = LogGate()
        self._datasets: dict[str, h5py.Dataset] = {}
        for name, (shape, dtype, units) in shapes.items():
            self._datasets[name] = appendable(self.group, name, dtype, shape, chunk_rows=chunk)
            if units:
                self._datasets[name].attrs["units"] = units
        self._time = appendable(self.group, "time", np.uint64, chunk_rows=chunk, units="ns",
                                offset=NS_EPOCH_OFFSET)
        self._pending: list[tuple[int, dict[str, np.ndarray]]] = []
        self.counts = {"wrong_shape": 0, "out_of_order": 0}

    def _offer(self, t_ns: int, rows: dict[str, np.ndarray], window: Window) -> None:
        t_ns = checked_time(t_ns, "array message")
        for name, row in rows.items():
            if row.shape != self._datasets[name].shape[1:]:
                self.counts["wrong_shape"] += 1
                return
            if row.dtype.kind not in "biuf":
                # checked now: a row that fails the cast at flush would take the rows
                # buffered with it
                raise MalformedMessage(f"{name}: {row.dtype} values are not numbers")
        self._pending.extend(self._gate.offer(t_ns, (t_ns, rows), window))

    def flush(self) -> None:
        if not self._pending:
            return
        append(self._time, np.array([t for t, _ in self._pending], dtype=np.uint64))
        for name, dset in self._datasets.items():
            append(dset, np.stack([rows[name] if name in rows else np.zeros(dset.shape[1:])
                                   for _, rows in self._pending]).astype(dset.dtype))
        self._pending.clear()

    def close(self) -> None:
        self._pending.extend(self._gate.flush_pending())
        self.flush()
        self.counts["out_of_order"] = self._gate.out_of_order


class HistogramWriter(_Rows):
    """hs00 / hs01. Config (kafka-to-nexus's hs00 keys): `data_type`, `error_type`,
    `edge_type`, and `shape`: one {"size", "label", "unit", "edges"?} per dimension. Writes
    `histograms` (one row per message), `errors` for floating-point data, `time`, and each
    dimension's bin edges under its label (from the config, else from the first message)."""

    accepts = frozenset({"hs00", "hs01"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        dims = config.get("shape")
        if not isinstance(dims, list) or not dims or not all(
                isinstance(d, dict) and int(d.get("size", 0)) > 0 for d in dims):
            raise ValueError("hs00/hs01 module needs shape: a list of {size, label, unit}")
        sizes = tuple(int(d["size"]) for d in dims)
        row_values(sizes, "hs00/hs01 shape")
        self._labels = [str(d.get("label") or f"dim_{i}") for i, d in enumerate(dims)]
        data_dtype = _numeric_dtype(config, ("data_type", "dtype"), "double")
        shapes = {"histograms": (sizes, data_dtype, "")}
        # NeXus readers take `errors` as the signal's uncertainties, which integer counts
        # cannot carry (scipp refuses them); for counts they are sqrt(counts) anyway
        self._with_errors = data_dtype.kind == "f"
        if self._with_errors:
            shapes["errors"] = (sizes, _numeric_dtype(config, ("error_type",), "double"), "")
        self._setup(shapes)
        edge_dtype = _numeric_dtype(config, ("edge_type",), "double")
        self._edges: dict[str, h5py.Dataset] = {}
        self._edges_known = True
        for label, dim, size in zip(self._labels, dims, sizes, strict=True):
            dset = group.create_dataset(label, shape=(size + 1,), dtype=edge_dtype)
            if dim.get("unit"):
                dset.attrs["units"] = str(dim["unit"])
            if dim.get("edges") is not None:
                dset[...] = np.asarray(dim["edges"], dtype=edge_dtype)
            else:
                self._edges_known = False
            self._edges[label] = dset
        group.attrs["signal"] = "histograms"
        group.attrs["axes"] = ["time", *self._labels]

    def write(self, message: Decoded, window: Window) -> None:
        hist = message.data
        data = np.asarray(hist["data"])
        rows = {"histograms": data}
        if self._with_errors and len(hist["errors"]):
            rows["errors"] = np.asarray(hist["errors"])
        checked_time(hist["timestamp"], "histogram")
        if not self._edges_known and window.contains(hist["timestamp"]):
            for label, dim in zip(self._labels, hist["dim_metadata"], strict=False):
                edges = np.asarray(dim["bin_boundaries"])
                if edges.shape == self._edges[label].shape:
                    self._edges[label][...] = edges
            self._edges_known = True
        self._offer(int(hist["timestamp"]), rows, window)


class DataArrayWriter(_Rows):
    """da00. Config: `variables`: one {"name", "data_type" or "dtype", "shape", "unit"} per
    variable to write; the first is the signal. Variables not listed are ignored (counted)."""

    accepts = frozenset({"da00"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        variables = config.get("variables")
        if not isinstance(variables, list) or not variables or not all(
                isinstance(v, dict) and v.get("name") for v in variables):
            raise ValueError("da00 module needs variables: a list of {name, dtype, shape}")
        shapes = {str(v["name"]): (tuple(int(n) for n in v.get("shape") or ()),
                                   _numeric_dtype(v, ("data_type", "dtype"), "double"),
                                   str(v.get("unit") or ""))
                  for v in variables}
        for name, (shape, _, _) in shapes.items():
            row_values(shape, f"da00 variable {name}")
        self._setup(shapes)
        self.counts["unlisted_variables"] = 0
        group.attrs["signal"] = str(variables[0]["name"])

    def write(self, message: Decoded, window: Window) -> None:
        rows = {}
        for var in message.data.data:
            if var.name in self._datasets:
                data = np.asarray(var.data)
                try:
                    rows[var.name] = data.reshape(var.shape or np.shape(data))
                except (ValueError, TypeError) as exc:
                    raise MalformedMessage(f"da00 {var.name}: shape {var.shape} does not fit "
                                           f"{data.size} values") from exc
            else:
                self.counts["unlisted_variables"] += 1
        self._offer(int(message.data.timestamp_ns), rows, window)
